#include "core/kernel_device.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "core/feature.h"

namespace vfio {
namespace {

// Builds an Error from the errno of the syscall that just failed. errno is read before the
// message is formatted, so allocation cannot clobber it.
std::unexpected<Error> syscall_error(const std::string& device, std::string_view op) {
  const int err = errno;
  return fail(err, fmt::format("{}: {}", device, op));
}

// "VFIO_DEVICE_FEATURE (feature 2, SET)" from the header the caller built.
std::string feature_op(std::span<const std::byte> arg) {
  uapi::FeatureHeader h;
  std::memcpy(&h, arg.data(), sizeof(h));
  std::string dirs;
  if (h.flags & uapi::kFeatureGet) dirs += " GET";
  if (h.flags & uapi::kFeatureSet) dirs += " SET";
  if (h.flags & uapi::kFeatureProbe) dirs += " PROBE";
  return fmt::format("VFIO_DEVICE_FEATURE (feature {},{} argsz {})", h.flags & uapi::kFeatureMask,
                     dirs.empty() ? " no direction," : dirs + ",", h.argsz);
}

// The target of a SET MIG_DEVICE_STATE that the kernel would walk (a well-formed SET alone),
// when it is PRE_COPY or PRE_COPY_P2P: from STOP_COPY, the arcs Linux 6.12 never returns from.
std::optional<uapi::State> precopy_target(std::span<const std::byte> arg) {
  uapi::FeatureHeader h;
  uapi::MigState mig;
  if (arg.size() < sizeof(h) + sizeof(mig)) return std::nullopt;
  std::memcpy(&h, arg.data(), sizeof(h));
  std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
  // Anything else the kernel refuses before its walk (or never walks).
  if (h.argsz < sizeof(h) + sizeof(mig) || (h.flags & ~uapi::kFeatureMask) != uapi::kFeatureSet ||
      (h.flags & uapi::kFeatureMask) != static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState))
    return std::nullopt;
  const auto target = static_cast<uapi::State>(mig.device_state);
  if (target != uapi::State::kPreCopy && target != uapi::State::kPreCopyP2p) return std::nullopt;
  return target;
}

}  // namespace

ScopedFd::ScopedFd(ScopedFd&& other) noexcept : fd_(other.release()) {}

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int ScopedFd::release() {
  return std::exchange(fd_, -1);
}

void ScopedFd::reset(int fd) {
  // Linux closes the fd even when close() reports an error, so it is never retried.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<std::unique_ptr<KernelDevice>> KernelDevice::open_path(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return syscall_error(path, "open (O_RDWR)");
  return std::make_unique<KernelDevice>(path, std::move(fd));
}

KernelDevice::KernelDevice(std::string name, ScopedFd device_fd, std::vector<ScopedFd> keep_alive)
    : name_(std::move(name)), keep_alive_(std::move(keep_alive)), fd_(std::move(device_fd)) {}

KernelDevice::~KernelDevice() {
  // The device fd goes first: the kernel releases the device before its group or iommufd.
  fd_.reset();
  for (ScopedFd& fd : keep_alive_) fd.reset();
}

Result<> KernelDevice::feature(std::span<std::byte> arg) {
  if (arg.size() < sizeof(uapi::FeatureHeader)) {
    return fail(EINVAL, fmt::format("{}: VFIO_DEVICE_FEATURE: argument of {} bytes is shorter "
                                    "than the {}-byte header",
                                    name_, arg.size(), sizeof(uapi::FeatureHeader)));
  }
  if (auto target = precopy_target(arg); target && !allow_hanging_arcs_) {
    auto state = query_device_state(*this);
    if (!state) {
      Error e = state.error();
      e.message = fmt::format("{}: SET {} not sent: reading the device state first failed ({})",
                              name_, uapi::state_name(*target), e.message);
      return std::unexpected(e);
    }
    // Only a device with PRE_COPY reaches the spin: without it the kernel refuses the target
    // state up front (EINVAL), as the contract says. A failed GET MIGRATION refuses to be safe.
    const auto flags = query_migration_flags(*this);
    const bool precopy = !flags || (*flags & uapi::kMigrationPreCopy);
    if (*state == uapi::State::kStopCopy && precopy)
      return fail(kHangingArcRefused,
                  fmt::format("{}: SET {} not sent: the device is in STOP_COPY, and that arc hangs "
                              "Linux's vfio core for ever (vfio_mig_get_next_state; fixed upstream "
                              "in 2026, present in 6.12)",
                              name_, uapi::state_name(*target)));
  }
  if (::ioctl(fd_.get(), uapi::kDeviceFeature, arg.data()) < 0) {
    const int err = errno;
    return refused(err, fmt::format("{}: {}", name_, feature_op(arg)));
  }
  return {};
}

Result<> KernelDevice::reset() {
  if (::ioctl(fd_.get(), uapi::kDeviceReset) < 0) return syscall_error(name_, "VFIO_DEVICE_RESET");
  return {};
}

Result<std::size_t> KernelDevice::read(int data_fd, std::span<std::byte> buf) {
  ssize_t n;
  do {
    n = ::read(data_fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return syscall_error(name_, fmt::format("read of data fd {}", data_fd));
  return static_cast<std::size_t>(n);
}

Result<std::size_t> KernelDevice::write(int data_fd, std::span<const std::byte> buf) {
  ssize_t n;
  do {
    n = ::write(data_fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return refused(err, fmt::format("{}: write to data fd {}", name_, data_fd));
  }
  return static_cast<std::size_t>(n);
}

std::optional<Result<std::size_t>> KernelDevice::read_at(int data_fd, std::span<std::byte> buf,
                                                         std::int64_t offset) {
  ssize_t n;
  do {
    n = ::pread(data_fd, buf.data(), buf.size(), offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return syscall_error(name_, fmt::format("pread of data fd {} at {}", data_fd, offset));
  return static_cast<std::size_t>(n);
}

std::optional<Result<std::size_t>> KernelDevice::write_at(int data_fd,
                                                          std::span<const std::byte> buf,
                                                          std::int64_t offset) {
  ssize_t n;
  do {
    n = ::pwrite(data_fd, buf.data(), buf.size(), offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return refused(err, fmt::format("{}: pwrite to data fd {} at {}", name_, data_fd, offset));
  }
  return static_cast<std::size_t>(n);
}

std::unexpected<Error> KernelDevice::refused(int code, std::string message) const {
  Error e{code, std::move(message)};
  if (explain_) {
    if (auto why = explain_(code)) {
      e.message += ": " + *why;
      e.reason = std::move(*why);
    }
  }
  return std::unexpected(std::move(e));
}

Result<> KernelDevice::precopy_info(int data_fd, uapi::PrecopyInfo& info) {
  if (::ioctl(data_fd, uapi::kMigGetPrecopyInfo, &info) < 0) {
    return syscall_error(name_, fmt::format("VFIO_MIG_GET_PRECOPY_INFO on data fd {}", data_fd));
  }
  return {};
}

Result<> KernelDevice::close(int data_fd) {
  if (::close(data_fd) < 0)
    return syscall_error(name_, fmt::format("close of data fd {}", data_fd));
  return {};
}

Result<uapi::DeviceInfo> KernelDevice::device_info() {
  uapi::DeviceInfo info{};
  info.argsz = sizeof(info);
  if (::ioctl(fd_.get(), uapi::kDeviceGetInfo, &info) < 0) {
    return syscall_error(name_, "VFIO_DEVICE_GET_INFO");
  }
  return info;
}

Result<uapi::RegionInfo> KernelDevice::region_info(std::uint32_t index) {
  uapi::RegionInfo info{};
  info.argsz = sizeof(info);
  info.index = index;
  if (::ioctl(fd_.get(), uapi::kDeviceGetRegionInfo, &info) < 0) {
    return syscall_error(name_, fmt::format("VFIO_DEVICE_GET_REGION_INFO (region {})", index));
  }
  return info;
}

Result<uapi::RegionInfo> KernelDevice::config_region() {
  if (!config_) {
    auto info = region_info(uapi::kPciConfigRegionIndex);
    if (!info) return info;
    config_ = *info;
  }
  return *config_;
}

Result<KernelDevice::Span> KernelDevice::config_span(std::uint64_t offset, std::size_t len,
                                                     std::string_view op) {
  auto region = config_region();
  if (!region) return std::unexpected(region.error());
  if (offset > region->size) {
    return fail(EINVAL, fmt::format("{}: {} at offset {:#x}: past the end of the {}-byte PCI "
                                    "config region",
                                    name_, op, offset, region->size));
  }
  constexpr auto kMaxOff = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (region->offset > kMaxOff - offset) {
    return fail(EOVERFLOW, fmt::format("{}: {} at offset {:#x}: config region offset {:#x} "
                                       "is beyond what pread/pwrite can address",
                                       name_, op, offset, region->offset));
  }
  const std::uint64_t room = region->size - offset;
  return Span{static_cast<std::int64_t>(region->offset + offset),
              static_cast<std::size_t>(std::min<std::uint64_t>(room, len))};
}

Result<std::size_t> KernelDevice::config_read(std::uint64_t offset, std::span<std::byte> buf) {
  auto span = config_span(offset, buf.size(), "config read");
  if (!span) return std::unexpected(span.error());
  ssize_t n;
  do {
    n = ::pread(fd_.get(), buf.data(), span->length, span->file_offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return syscall_error(name_, fmt::format("config read at offset {:#x}", offset));
  return static_cast<std::size_t>(n);
}

Result<std::size_t> KernelDevice::config_write(std::uint64_t offset,
                                               std::span<const std::byte> buf) {
  auto span = config_span(offset, buf.size(), "config write");
  if (!span) return std::unexpected(span.error());
  ssize_t n;
  do {
    n = ::pwrite(fd_.get(), buf.data(), span->length, span->file_offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return syscall_error(name_, fmt::format("config write at offset {:#x}", offset));
  return static_cast<std::size_t>(n);
}

}  // namespace vfio
