#include "core/checksum.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Folding with carry-less multiplication: the message is congruent, modulo the polynomial, to
// a 128-bit value times x^(bits after it), so 128-bit blocks far ahead are folded into the
// running value with two multiplications each, 16 blocks at a time in four 512-bit registers;
// the crc32 instruction finishes the last block. About four times the crc32 lanes' rate.
//
// Reflected representation: bit i of a 64-bit word is the coefficient of x^(63-i), and a
// carry-less product of two such words is the product times x.
constexpr std::uint32_t kPolynomialNormal = 0x1EDC6F41;  // x^32 omitted, bit j: x^j

// x^n mod P as a reflected 64-bit word.
std::uint64_t x_pow_mod(std::size_t n) {
  std::uint32_t r = 1;
  for (std::size_t i = 0; i < n; ++i) r = (r << 1) ^ ((r >> 31) ? kPolynomialNormal : 0);
  std::uint64_t w = 0;
  for (int j = 0; j < 32; ++j)
    if (r >> j & 1) w |= 1ULL << (63 - j);
  return w;
}

// Multiplying a 128-bit value by x^distance (mod P): its high-degree half (the low word) by
// x^(distance + 63) and its low-degree half by x^(distance - 1), each product times x.
struct FoldConstant {
  std::uint64_t low, high;
  explicit FoldConstant(std::size_t distance)
      : low(x_pow_mod(distance + 63)), high(x_pow_mod(distance - 1)) {}
};

struct FoldConstants {
  FoldConstant by128{128}, by256{256}, by384{384}, by512{512}, by2048{2048};
};

__attribute__((target("pclmul,sse4.2"))) __m128i fold128(__m128i v, const FoldConstant& c) {
  const __m128i k = _mm_set_epi64x(static_cast<long long>(c.high), static_cast<long long>(c.low));
  return _mm_xor_si128(_mm_clmulepi64_si128(v, k, 0x00), _mm_clmulepi64_si128(v, k, 0x11));
}

__attribute__((target("avx512f,vpclmulqdq"))) __m512i fold512(__m512i v, __m512i k) {
  return _mm512_xor_si512(_mm512_clmulepi64_epi128(v, k, 0x00),
                          _mm512_clmulepi64_epi128(v, k, 0x11));
}

__attribute__((target("avx512f"))) __m512i broadcast(const FoldConstant& c) {
  const auto lo = static_cast<long long>(c.low), hi = static_cast<long long>(c.high);
  return _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo);
}

constexpr std::size_t kFoldMin = 256;  // below this the crc32 lanes are as fast

// n >= kFoldMin.
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2"))) std::uint32_t crc32c_fold(
    std::uint32_t crc, const unsigned char* p, std::size_t n) {
  static const FoldConstants k;
  const __m512i by512 = broadcast(k.by512);
  const __m512i by2048 = broadcast(k.by2048);
  // The register's value enters as the first 32 message bits (the CRC is linear).
  __m512i z0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(crc))));
  __m512i z1 = _mm512_loadu_si512(p + 64);
  __m512i z2 = _mm512_loadu_si512(p + 128);
  __m512i z3 = _mm512_loadu_si512(p + 192);
  p += 256;
  n -= 256;
  for (; n >= 256; n -= 256, p += 256) {
    z0 = _mm512_xor_si512(fold512(z0, by2048), _mm512_loadu_si512(p));
    z1 = _mm512_xor_si512(fold512(z1, by2048), _mm512_loadu_si512(p + 64));
    z2 = _mm512_xor_si512(fold512(z2, by2048), _mm512_loadu_si512(p + 128));
    z3 = _mm512_xor_si512(fold512(z3, by2048), _mm512_loadu_si512(p + 192));
  }
  z1 = _mm512_xor_si512(fold512(z0, by512), z1);
  z2 = _mm512_xor_si512(fold512(z1, by512), z2);
  __m512i z = _mm512_xor_si512(fold512(z2, by512), z3);
  for (; n >= 64; n -= 64, p += 64) z = _mm512_xor_si512(fold512(z, by512), _mm512_loadu_si512(p));
  alignas(64) __m128i lane[4];  // (_mm512_extracti32x4_epi32 warns in GCC 12)
  _mm512_store_si512(lane, z);
  __m128i v = _mm_xor_si128(_mm_xor_si128(fold128(lane[0], k.by384), fold128(lane[1], k.by256)),
                            _mm_xor_si128(fold128(lane[2], k.by128), lane[3]));
  for (; n >= 16; n -= 16, p += 16)
    v = _mm_xor_si128(fold128(v, k.by128), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // What is left is congruent to the 16 bytes of `v` followed by the tail.
  std::uint64_t c = __builtin_ia32_crc32di(0, static_cast<std::uint64_t>(_mm_cvtsi128_si64(v)));
  c = __builtin_ia32_crc32di(c, static_cast<std::uint64_t>(_mm_extract_epi64(v, 1)));
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
const bool kHaveFold = kHaveSse42 && __builtin_cpu_supports("pclmul") &&
                       __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
#endif

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, std::span<const std::byte> data) {
  auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#if defined(__x86_64__)
  if (kHaveFold && data.size() >= kFoldMin)
    crc = crc32c_fold(crc, p, data.size());
  else
    crc = kHaveSse42 ? crc32c_sse42(crc, p, data.size()) : crc32c_portable(crc, p, data.size());
#else
  crc = crc32c_portable(crc, p, data.size());
#endif
  return ~crc;
}

}  // namespace vfio
