// JSON string literals for the reports every command writes (--json, --junit's neighbours).
#pragma once

#include <string>
#include <string_view>

namespace vfio {

// `s` as a quoted JSON string: quotes and backslashes escaped, control bytes as \u00XX, and
// bytes that are not well-formed UTF-8 (core/untrusted_text.h) as U+FFFD, so the result is
// always valid JSON in valid UTF-8.
std::string json_quote(std::string_view s);

}  // namespace vfio
