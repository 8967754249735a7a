// CRC-32C (Castagnoli) for the container format's section checksums. Uses carry-less
// multiplication (AVX-512 VPCLMULQDQ) or the SSE4.2 crc32 instruction when the CPU has them:
// the checksum sits on the save/load hot path, once on each side of a migration.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace vfio {

// Extends `crc` (start with 0) over `data`.
std::uint32_t crc32c(std::uint32_t crc, std::span<const std::byte> data);

}  // namespace vfio
