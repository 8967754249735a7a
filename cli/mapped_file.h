// A file mapped read-only (inspect, load --from-qemu): the QEMU reader takes the whole input at
// once, and a QEMU stream holds the VM's RAM, gigabytes the reader steps over without reading.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "core/result.h"

namespace vfio::cli {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }

 private:
  MappedFile() = default;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace vfio::cli
