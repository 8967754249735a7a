#include "core/uapi.h"

#include <array>
#include <cctype>

namespace vfio::uapi {
namespace {

constexpr std::array<std::string_view, kStateCount> kNames = {
    "ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"};
constexpr std::array<std::string_view, kStateCount> kShortNames = {"ERROR", "S",  "R",  "SC",
                                                                   "RS",    "RP", "PC", "PCP"};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != static_cast<unsigned char>(b[i]))
      return false;
  }
  return true;
}

}  // namespace

std::string_view state_name(State s) {
  auto i = static_cast<std::uint32_t>(s);
  return i < kStateCount ? kNames[i] : "UNKNOWN";
}

std::string_view state_short_name(State s) {
  auto i = static_cast<std::uint32_t>(s);
  return i < kStateCount ? kShortNames[i] : "?";
}

std::optional<State> parse_state(std::string_view name) {
  for (std::uint32_t i = 0; i < kStateCount; ++i) {
    if (equal_ignoring_case(name, kNames[i]) || equal_ignoring_case(name, kShortNames[i]))
      return static_cast<State>(i);
  }
  return std::nullopt;
}

}  // namespace vfio::uapi
