#include "core/json_text.h"

#include <fmt/format.h>

#include "core/untrusted_text.h"

namespace vfio {

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  while (!s.empty()) {
    const char c = s[0];
    const std::size_t n = utf8_sequence_length(s);
    if (n == 0) {
      out += "\\ufffd";  // JSON text must be UTF-8: a stray byte becomes the replacement mark
      s.remove_prefix(1);
      continue;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += s.substr(0, n);
    }
    s.remove_prefix(n);
  }
  return out + "\"";
}

}  // namespace vfio
