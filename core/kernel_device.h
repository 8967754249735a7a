// KernelDevice: the Device seam as real syscalls on a file descriptor. The same class serves a
// real VFIO device (/dev/vfio/devices/vfioN, or an fd from VFIO_GROUP_GET_DEVICE_FD) and the
// FUSE-served simulated device: both answer ioctl/read/write the way the kernel uAPI says.
// Opening real VFIO devices (iommufd, group/container) lives in core/vfio_open.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/result.h"
#include "core/uapi.h"

namespace vfio {

// An owned file descriptor, closed when destroyed. Move-only.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept;
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release();
  // Closes the held fd (if any) and holds `fd` instead.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

class KernelDevice final : public Device {
 public:
  // Opens any file O_RDWR|O_CLOEXEC and wraps it: a FUSE-served simulated device, a VFIO cdev
  // that needs no binding, or (for tests) a plain file. `path` becomes name().
  static Result<std::unique_ptr<KernelDevice>> open_path(const std::string& path);

  // Takes `device_fd`. `keep_alive` holds fds the device depends on (the group and container
  // fds, or the iommufd); they are closed after the device fd, in the order given.
  KernelDevice(std::string name, ScopedFd device_fd, std::vector<ScopedFd> keep_alive = {});
  ~KernelDevice() override;
  KernelDevice(KernelDevice&&) noexcept = default;
  KernelDevice& operator=(KernelDevice&&) noexcept = default;
  KernelDevice(const KernelDevice&) = delete;
  KernelDevice& operator=(const KernelDevice&) = delete;

  // Passes `arg` to the kernel as is (argsz included, even a wrong one); refuses only an `arg`
  // too short to hold a FeatureHeader (EINVAL), since the ioctl would read past it, and a SET
  // of MIG_DEVICE_STATE to PRE_COPY or PRE_COPY_P2P while the device is in STOP_COPY (one GET
  // first; kHangingArcRefused): Linux's vfio core spins for ever on that arc
  // (vfio_mig_get_next_state, fixed upstream in 2026, present in 6.12), whatever the caller
  // believes the state is.
  Result<> feature(std::span<std::byte> arg) override;
  // Sends those arcs anyway: only `conform --unsafe-arcs` does, to see what a kernel does.
  void allow_hanging_arcs(bool allow) { allow_hanging_arcs_ = allow; }
  Result<> reset() override;

  // One syscall each (retried only on EINTR); short transfers are returned as they are.
  Result<std::size_t> read(int data_fd, std::span<std::byte> buf) override;
  Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) override;
  Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) override;
  Result<> close(int data_fd) override;
  // pread/pwrite, one syscall each (retried only on EINTR).
  std::optional<Result<std::size_t>> read_at(int data_fd, std::span<std::byte> buf,
                                             std::int64_t offset) override;
  std::optional<Result<std::size_t>> write_at(int data_fd, std::span<const std::byte> buf,
                                              std::int64_t offset) override;

  // pread/pwrite in the PCI config region, whose offset and size are queried once
  // (VFIO_DEVICE_GET_REGION_INFO). Accesses are clipped at the end of the region; an offset
  // past it is EINVAL.
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf) override;

  const std::string& name() const override { return name_; }

  // VFIO_DEVICE_GET_INFO (without the capability chain).
  Result<uapi::DeviceInfo> device_info();
  // VFIO_DEVICE_GET_REGION_INFO for one region index (without the capability chain).
  Result<uapi::RegionInfo> region_info(std::uint32_t index);

  int device_fd() const { return fd_.get(); }

  // Where a refusal's reason comes from when the file carries only an errno (the FUSE-served
  // simulator): asked with the errno right after a failed feature call or data write; the
  // answer goes into the error (Error::reason). Unset for real devices, whose drivers log why.
  using Explainer = std::function<std::optional<std::string>(int code)>;
  void set_explainer(Explainer explain) { explain_ = std::move(explain); }

 private:
  // The config region's extent in the device fd, queried on first use.
  Result<uapi::RegionInfo> config_region();
  // Clips [offset, offset + len) to the config region; the absolute file offset and length.
  struct Span {
    std::int64_t file_offset;
    std::size_t length;
  };
  Result<Span> config_span(std::uint64_t offset, std::size_t len, std::string_view op);
  // The error of a failed feature call or data write, with the explainer's reason.
  std::unexpected<Error> refused(int code, std::string message) const;

  std::string name_;
  std::vector<ScopedFd> keep_alive_;
  ScopedFd fd_;
  std::optional<uapi::RegionInfo> config_;
  bool allow_hanging_arcs_ = false;
  Explainer explain_;
};

}  // namespace vfio
