#include "core/units.h"

#include <cerrno>
#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace vfio {
namespace {

std::unexpected<Error> usage(std::string message) {
  return fail(EINVAL, std::move(message));
}

}  // namespace

Result<std::uint64_t> parse_uint(std::string_view text) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) {
    return usage(fmt::format("'{}' is too large (at most {})", text,
                             std::numeric_limits<std::uint64_t>::max()));
  }
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return usage(fmt::format("'{}' is not a non-negative integer", text));
  }
  return v;
}

Result<std::uint64_t> parse_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string_view unit = text.substr(digits);
  if (unit.ends_with("iB") || unit.ends_with("ib"))
    unit.remove_suffix(2);
  else if (unit.size() == 2 && (unit[1] == 'B' || unit[1] == 'b'))
    unit.remove_suffix(1);
  int shift = -1;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "k")
    shift = 10;
  else if (unit == "M" || unit == "m")
    shift = 20;
  else if (unit == "G" || unit == "g")
    shift = 30;
  else if (unit == "T" || unit == "t")
    shift = 40;
  if (shift < 0 || digits == 0) {
    return usage(fmt::format("'{}' is not a size (examples: 4096, 64K, 256M, 1G)", text));
  }
  // All digits: parse_uint fails only on overflow.
  auto number = parse_uint(text.substr(0, digits));
  if (!number || *number > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return usage(fmt::format("size '{}' is too large", text));
  }
  return *number << shift;
}

Result<std::uint64_t> parse_size(std::string_view text, std::uint64_t max, std::string_view what) {
  auto size = parse_size(text);
  if (!size) return usage(fmt::format("{}: {}", what, size.error().message));
  if (*size > max) {
    return usage(fmt::format("{}: {} is above the maximum of {}", what, text, format_size(max)));
  }
  return size;
}

std::string format_size(std::uint64_t bytes) {
  constexpr std::string_view kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return fmt::format("{} B", bytes);
  if (value == static_cast<double>(static_cast<std::uint64_t>(value)))
    return fmt::format("{} {}", static_cast<std::uint64_t>(value), kUnits[unit]);
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

}  // namespace vfio
