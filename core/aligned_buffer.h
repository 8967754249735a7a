// A fixed-size, page-aligned byte buffer. Data buffers that meet read()/write() on a data fd
// are page-aligned so that a 1 MiB transfer is one FUSE request (or one kernel page walk),
// not two: an unaligned 1 MiB buffer spans 257 pages.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>

namespace vfio {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 4096;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t size) { resize(size); }

  // Replaces the contents with `size` zero bytes.
  void resize(std::size_t size) {
    std::size_t rounded = (size + kAlignment - 1) / kAlignment * kAlignment;
    void* p = rounded == 0 ? nullptr : std::aligned_alloc(kAlignment, rounded);
    if (rounded != 0 && p == nullptr) throw std::bad_alloc();
    data_.reset(static_cast<std::byte*>(p));
    size_ = size;
    if (size_ != 0) std::fill_n(data_.get(), size_, std::byte{0});
  }
  void clear() { resize(0); }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }
  std::span<const std::byte> span() const { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte[], Free> data_;
  std::size_t size_ = 0;
};

}  // namespace vfio
