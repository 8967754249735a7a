#include "core/checksum.h"

#include <array>
#include <cstring>

namespace vfio {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78;  // reflected Castagnoli

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kTable = make_table();

std::uint32_t crc32c_portable(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// The crc32 instruction has a 3-cycle latency but issues every cycle, so three independent
// streams over three consecutive lanes run about three times faster than one. The lanes'
// CRCs are then joined with a precomputed "append kLane zero bytes" operator.
constexpr std::size_t kLane = 8192;

// Advances a raw CRC register over `n` zero bytes, bit by bit (only used to build tables).
std::uint32_t shift_zeros(std::uint32_t c, std::size_t n) {
  for (std::size_t i = 0; i < n * 8; ++i) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
  return c;
}

// shift(c) = CRC register after kLane zero bytes, as four byte-indexed tables (it is linear).
struct LaneShift {
  std::uint32_t table[4][256];
  LaneShift() {
    std::uint32_t basis[32];
    for (int bit = 0; bit < 32; ++bit) basis[bit] = shift_zeros(1u << bit, kLane);
    for (int k = 0; k < 4; ++k) {
      for (int b = 0; b < 256; ++b) {
        std::uint32_t v = 0;
        for (int j = 0; j < 8; ++j) {
          if (b & (1 << j)) v ^= basis[8 * k + j];
        }
        table[k][b] = v;
      }
    }
  }
  std::uint32_t operator()(std::uint32_t c) const {
    return table[0][c & 0xff] ^ table[1][(c >> 8) & 0xff] ^ table[2][(c >> 16) & 0xff] ^
           table[3][c >> 24];
  }
};

__attribute__((target("sse4.2"))) std::uint64_t crc32c_words(std::uint64_t c,
                                                             const unsigned char* p,
                                                             std::size_t words) {
  for (std::size_t i = 0; i < words; ++i) {
    std::uint64_t word;
    std::memcpy(&word, p + 8 * i, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  return c;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                             const unsigned char* p,
                                                             std::size_t n) {
  static const LaneShift shift;
  std::uint64_t c = crc;
  for (; n >= 3 * kLane; n -= 3 * kLane, p += 3 * kLane) {
    std::uint64_t c1 = 0, c2 = 0;
    for (std::size_t i = 0; i < kLane; i += 8) {
      std::uint64_t w0, w1, w2;
      std::memcpy(&w0, p + i, 8);
      std::memcpy(&w1, p + kLane + i, 8);
      std::memcpy(&w2, p + 2 * kLane + i, 8);
      c = __builtin_ia32_crc32di(c, w0);
      c1 = __builtin_ia32_crc32di(c1, w1);
      c2 = __builtin_ia32_crc32di(c2, w2);
    }
    c = shift(shift(static_cast<std::uint32_t>(c)) ^ static_cast<std::uint32_t>(c1)) ^
        static_cast<std::uint32_t>(c2);
  }
  c = crc32c_words(c, p, n / 8);
  p += n / 8 * 8;
  n %= 8;
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, std::span<const std::byte> data) {
  auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#if defined(__x86_64__)
  crc = kHaveSse42 ? crc32c_sse42(crc, p, data.size()) : crc32c_portable(crc, p, data.size());
#else
  crc = crc32c_portable(crc, p, data.size());
#endif
  return ~crc;
}

}  // namespace vfio
