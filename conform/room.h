// Internal to conform/: memory for whole streams, reused by the checks that need one besides the
// saved stream. Fresh memory costs a page fault and the page's zeroing when first written, which
// for a 256 MiB stream costs more than reading it through FUSE; a room keeps its pages from one
// use to the next, and pages it never wrote cost nothing, so it can be made far bigger than what
// it holds (overflow's 1 GiB write).
#pragma once

#include <cstddef>
#include <new>
#include <span>

namespace vfio::conform::detail {

class Room {
 public:
  Room() = default;
  Room(const Room&) = delete;
  Room& operator=(const Room&) = delete;
  ~Room();

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::byte* data() { return at_; }
  std::span<std::byte> bytes() { return {at_, size_}; }
  // `n` bytes: the first ones keep their values, the bytes beyond the old size are unspecified
  // (zeros where the room never reached). Grows the mapping without copying (mremap); false, and
  // the room unchanged, when it cannot.
  bool try_resize(std::size_t n);
  // The same; throws std::bad_alloc when it cannot, as a vector does.
  void resize(std::size_t n) {
    if (!try_resize(n)) throw std::bad_alloc();
  }
  // The bytes from `from` to the room's end read as zeros again: their pages are given back.
  void zero_from(std::size_t from);

 private:
  std::byte* at_ = nullptr;
  std::size_t mapped_ = 0;
  std::size_t size_ = 0;
};

}  // namespace vfio::conform::detail
