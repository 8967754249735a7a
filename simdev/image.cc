#include "simdev/image.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace vfio::sim {
namespace {

constexpr std::uint64_t kGamma = 0x9e3779b97f4a7c15ULL;

// The per-seed key is mixed once per call so the hot loops only do the per-word finalizer.
std::uint64_t key_of(std::uint64_t seed) {
  return mix64(seed ^ 0x243f6a8885a308d3ULL);
}

// A body word is its block's key XOR a fixed per-position pattern: one mix per 4 KiB block,
// and a bulk loop of XORs the compiler vectorises. Rendering and validation run near memory
// speed, so the simulator stays cheaper than the engine it measures.
constexpr std::size_t kBlockWords = 512;

constexpr std::array<std::uint64_t, kBlockWords> make_pattern() {
  std::array<std::uint64_t, kBlockWords> pattern{};
  std::uint64_t x = 0x13198a2e03707344ULL;
  for (auto& w : pattern) {
    x += kGamma;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    w = z ^ (z >> 31);
  }
  return pattern;
}
constexpr auto kPattern = make_pattern();

inline std::uint64_t block_key(std::uint64_t key, std::uint64_t block) {
  return mix64(key + (block + 1) * kGamma);
}

inline std::uint64_t word_for_key(std::uint64_t key, std::uint64_t index) {
  return block_key(key, index / kBlockWords) ^ kPattern[index % kBlockWords];
}

// Body words are little-endian whatever the host, so streams are portable.
inline std::uint64_t to_le(std::uint64_t w) {
  if constexpr (std::endian::native == std::endian::big) return std::byteswap(w);
  return w;
}

}  // namespace

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t body_word(std::uint64_t seed, std::uint64_t index) {
  return word_for_key(key_of(seed), index);
}

void render_body(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out) {
  const std::uint64_t key = key_of(seed);
  std::byte* p = out.data();
  std::size_t left = out.size();
  std::uint64_t index = offset / 8;
  // Unaligned head: part of one word.
  if (const std::size_t skip = offset % 8; skip != 0 && left != 0) {
    const std::uint64_t w = to_le(word_for_key(key, index++));
    const std::size_t n = std::min<std::size_t>(8 - skip, left);
    std::memcpy(p, reinterpret_cast<const std::byte*>(&w) + skip, n);
    p += n;
    left -= n;
  }
  // Aligned bulk: whole words, a block key at a time.
  while (left >= 8) {
    const std::uint64_t bk = block_key(key, index / kBlockWords);
    const std::size_t first = index % kBlockWords;
    const std::size_t words = std::min<std::size_t>(left / 8, kBlockWords - first);
    for (std::size_t i = 0; i < words; ++i) {
      const std::uint64_t w = to_le(bk ^ kPattern[first + i]);
      std::memcpy(p + i * 8, &w, 8);
    }
    index += words;
    p += words * 8;
    left -= words * 8;
  }
  if (left != 0) {
    const std::uint64_t w = to_le(word_for_key(key, index));
    std::memcpy(p, &w, left);
  }
}

bool body_matches(std::uint64_t seed, std::uint64_t offset, std::span<const std::byte> in) {
  const std::uint64_t key = key_of(seed);
  const std::byte* p = in.data();
  std::size_t left = in.size();
  std::uint64_t index = offset / 8;
  if (const std::size_t skip = offset % 8; skip != 0 && left != 0) {
    const std::uint64_t w = to_le(word_for_key(key, index++));
    const std::size_t n = std::min<std::size_t>(8 - skip, left);
    if (std::memcmp(p, reinterpret_cast<const std::byte*>(&w) + skip, n) != 0) return false;
    p += n;
    left -= n;
  }
  // Bulk: accumulate differences over a block before branching, to keep the loop tight.
  while (left >= 8) {
    const std::uint64_t bk = block_key(key, index / kBlockWords);
    const std::size_t first = index % kBlockWords;
    const std::size_t words = std::min<std::size_t>(left / 8, kBlockWords - first);
    std::uint64_t diff = 0;
    for (std::size_t i = 0; i < words; ++i) {
      std::uint64_t got;
      std::memcpy(&got, p + i * 8, 8);
      diff |= got ^ to_le(bk ^ kPattern[first + i]);
    }
    if (diff != 0) return false;
    index += words;
    p += words * 8;
    left -= words * 8;
  }
  if (left != 0) {
    const std::uint64_t w = to_le(word_for_key(key, index));
    if (std::memcmp(p, &w, left) != 0) return false;
  }
  return true;
}

Image mutated(Image image) {
  std::uint64_t next = mix64(image.seed ^ 0x6a09e667f3bcc909ULL);
  if (next == image.seed) ++next;  // a mutation must always change the state
  image.seed = next;
  image.written = 0;
  return image;
}

namespace {

// The seed of the content the guest's lap `lap` (1, 2, ...) over the body writes.
std::uint64_t lap_seed(std::uint64_t seed, std::uint64_t lap) {
  return mix64(seed ^ (lap * 0xbb67ae8584caa73bULL));
}

// Splits cursor range [cursor, cursor + len) at lap boundaries: f(lap seed, body offset,
// position in the range, length) for each piece.
template <class F>
bool for_each_lap(std::uint64_t seed, std::uint64_t size, std::uint64_t cursor, std::size_t len,
                  F&& f) {
  std::size_t done = 0;
  while (done < len) {
    const std::uint64_t p = cursor + done;
    const std::uint64_t at = p % size;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size - at, len - done));
    if (!f(lap_seed(seed, p / size + 1), at, done, n)) return false;
    done += n;
  }
  return true;
}

}  // namespace

void render_written(std::uint64_t seed, std::uint64_t size, std::uint64_t cursor,
                    std::span<std::byte> out) {
  for_each_lap(seed, size, cursor, out.size(), [&](auto s, auto at, auto pos, auto n) {
    render_body(s, at, out.subspan(pos, n));
    return true;
  });
}

bool written_matches(std::uint64_t seed, std::uint64_t size, std::uint64_t cursor,
                     std::span<const std::byte> in) {
  return for_each_lap(seed, size, cursor, in.size(), [&](auto s, auto at, auto pos, auto n) {
    return body_matches(s, at, in.subspan(pos, n));
  });
}

}  // namespace vfio::sim
