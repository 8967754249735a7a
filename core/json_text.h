// JSON string literals for the reports every command writes (--json, --junit's neighbours).
#pragma once

#include <string>
#include <string_view>

namespace vfio {

// `s` as a quoted JSON string: quotes and backslashes escaped, control bytes as \u00XX.
std::string json_quote(std::string_view s);

}  // namespace vfio
