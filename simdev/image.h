// A simulated device's migratable state: `size` bytes derived deterministically from `seed`.
// The bytes are never stored whole (states reach several GiB); they are rendered on demand and
// checked in place, so saving and validating a stream costs no memory proportional to its size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace vfio::sim {

struct Image {
  std::uint64_t seed = 0;
  std::uint64_t size = 0;  // body bytes
  // The guest's write cursor: bytes written since `seed`, as a ring over the body. The byte at
  // cursor position p lands at body offset p % size with the content of lap p / size + 1, so a
  // state that keeps changing stays three numbers and any range of writes can be re-rendered.
  std::uint64_t written = 0;

  bool operator==(const Image&) const = default;
};

// The 8-byte word at `index` of the body for `seed` (stored little-endian in the body).
std::uint64_t body_word(std::uint64_t seed, std::uint64_t index);

// Writes body bytes [offset, offset + out.size()) for `seed`. Any offset and length.
void render_body(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out);

// Whether `in` equals body bytes [offset, offset + in.size()) for `seed`. Allocates nothing.
bool body_matches(std::uint64_t seed, std::uint64_t offset, std::span<const std::byte> in);

// The state after the guest rewrote the device: same size, a new seed derived from the old,
// no partial writes.
Image mutated(Image image);

// The bytes the guest wrote at cursor positions [cursor, cursor + out.size()) of a body of
// `size` bytes (size > 0): what a dirty record carries.
void render_written(std::uint64_t seed, std::uint64_t size, std::uint64_t cursor,
                    std::span<std::byte> out);
bool written_matches(std::uint64_t seed, std::uint64_t size, std::uint64_t cursor,
                     std::span<const std::byte> in);

// splitmix64's finalizer; also used to derive seeds and tags elsewhere in the simulator.
std::uint64_t mix64(std::uint64_t x);

}  // namespace vfio::sim
