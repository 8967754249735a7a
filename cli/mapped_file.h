// A file read-only in memory (mmap): a QEMU migration stream holds the VM's RAM, gigabytes that
// a reader steps over without reading them.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "core/result.h"

namespace vfio::cli {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const std::byte* data, std::size_t size) : data_(data), size_(size) {}
  const std::byte* data_;
  std::size_t size_;
};

}  // namespace vfio::cli
