#include "core/untrusted_text.h"

#include <fmt/format.h>

namespace vfio {
namespace {

bool continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xc0) == 0x80;
}

void append_escaped(std::string& out, std::string_view bytes) {
  for (char c : bytes) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  std::size_t n;
  char32_t cp;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
    cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    cp = b0 & 0x0f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;  // a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF (F5..FF)
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if (!continuation(s[i])) return 0;
    cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3f);
  }
  const bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  const bool surrogate = cp >= 0xd800 && cp <= 0xdfff;
  if (overlong || surrogate || cp > 0x10ffff) return 0;
  return n;
}

std::string printable(std::string_view s) {
  return printable_prefix(s, s.size());
}

std::string printable_prefix(std::string_view s, std::size_t max_bytes) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::string_view rest = s.substr(i);
    std::size_t n = utf8_sequence_length(rest);
    if (i + std::max<std::size_t>(n, 1) > max_bytes) break;
    const auto b0 = static_cast<unsigned char>(rest[0]);
    const bool control = (n == 1 && (b0 < 0x20 || b0 == 0x7f)) ||
                         (n == 2 && b0 == 0xc2 && static_cast<unsigned char>(rest[1]) < 0xa0);
    if (n == 0 || control) {
      n = std::max<std::size_t>(n, 1);
      append_escaped(out, rest.substr(0, n));
    } else {
      out += rest.substr(0, n);
    }
    i += n;
  }
  if (i < s.size()) out += "...";
  return out;
}

std::string id_list(std::span<const std::string> ids) {
  std::string out;
  for (std::size_t i = 0; i < ids.size() && i < kListedIds; ++i) {
    if (i) out += ", ";
    out += fmt::format("'{}'", printable_prefix(ids[i], kListedIdBytes));
  }
  if (ids.size() > kListedIds) out += fmt::format(", ... (+{} more)", ids.size() - kListedIds);
  return out;
}

}  // namespace vfio
