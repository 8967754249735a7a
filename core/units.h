// Numbers and sizes as people type them ("4096", "64K", "1GiB") and as they read them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vfio {

// "4096", "64K", "256M", "1G", "1GiB": a byte count (binary units).
Result<std::uint64_t> parse_size(std::string_view text);
// The same with an upper bound; errors start with `what` (e.g. "--size") and name the bound.
Result<std::uint64_t> parse_size(std::string_view text, std::uint64_t max, std::string_view what);
// A decimal number that fits 64 bits; an overflow is an error, not a wrap.
Result<std::uint64_t> parse_uint(std::string_view text);
// 268435456 -> "256 MiB"; non-round numbers get one decimal.
std::string format_size(std::uint64_t bytes);

}  // namespace vfio
