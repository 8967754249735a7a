// The Device seam: everything the engine asks of a VFIO device, as the kernel offers it.
// KernelDevice makes the real syscalls (on /dev/vfio or on the FUSE-served simulator);
// DirectDevice calls the simulator's model; fault decorators wrap either.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/result.h"
#include "core/uapi.h"

namespace vfio {

// The errno of a SET refused before it reached a kernel it would hang; its message says why.
constexpr int kHangingArcRefused = EDEADLK;

class Device {
 public:
  virtual ~Device() = default;

  // VFIO_DEVICE_FEATURE. `arg` starts with a uapi::FeatureHeader whose argsz the caller set;
  // the device reads and writes within min(argsz, arg.size()) bytes. A device that knows a SET
  // would hang the kernel refuses it unsent with kHangingArcRefused (KernelDevice does).
  virtual Result<> feature(std::span<std::byte> arg) = 0;

  // VFIO_DEVICE_RESET: back to RUNNING, every open data fd becomes stale.
  virtual Result<> reset() = 0;

  // The data channel. `data_fd` is the number a MIG_DEVICE_STATE SET returned.
  virtual Result<std::size_t> read(int data_fd, std::span<std::byte> buf) = 0;
  virtual Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) = 0;
  // VFIO_MIG_GET_PRECOPY_INFO; the caller sets info.argsz.
  virtual Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) = 0;
  virtual Result<> close(int data_fd) = 0;
  // pread/pwrite on a data fd at `offset`. No engine makes these calls: the kernel's data fds are
  // streams (stream_open), which refuse a position with ESPIPE; conform checks that they do.
  // nullopt: this device's data fds are no files (the in-process simulator), so there is no
  // position to give.
  virtual std::optional<Result<std::size_t>> read_at(int /*data_fd*/, std::span<std::byte>,
                                                     std::int64_t /*offset*/) {
    return std::nullopt;
  }
  virtual std::optional<Result<std::size_t>> write_at(int /*data_fd*/, std::span<const std::byte>,
                                                      std::int64_t /*offset*/) {
    return std::nullopt;
  }

  // The PCI config region (VFIO_PCI_CONFIG_REGION_INDEX); used by the config-state hook.
  virtual Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) = 0;
  virtual Result<std::size_t> config_write(std::uint64_t offset,
                                           std::span<const std::byte> buf) = 0;

  // For messages: "sim:mlx5#0", "/dev/vfio/devices/vfio3", ...
  virtual const std::string& name() const = 0;
};

}  // namespace vfio
