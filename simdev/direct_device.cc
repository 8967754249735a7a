#include "simdev/direct_device.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace vfio::sim {

DirectDevice::DirectDevice(std::shared_ptr<SimDevice> sim, std::string name)
    : sim_(std::move(sim)), name_(std::move(name)), opener_([this](SimDevice::SessionId id) {
        std::lock_guard lock(mu_);
        const int fd = next_fd_++;
        fds_.emplace_back(fd, id);
        return Result<int>(fd);
      }) {
  sim_->open_device();
}

DirectDevice::~DirectDevice() {
  sim_->close_device();
}

std::unexpected<Error> DirectDevice::wrap(Error e, std::string_view op) const {
  std::string message = fmt::format("{}: {}: {}", name_, op, e.message);
  e.reason = std::exchange(e.message, std::move(message));
  return std::unexpected(std::move(e));
}

DirectDevice::FdTable::iterator DirectDevice::find_fd(int data_fd) {
  return std::ranges::find(fds_, data_fd, &FdTable::value_type::first);
}

Result<SimDevice::SessionId> DirectDevice::session_of(int data_fd, const char* op) {
  std::lock_guard lock(mu_);
  if (auto it = find_fd(data_fd); it != fds_.end()) return it->second;
  return fail(EBADF, fmt::format("{}: {}: data fd {} is not open", name_, op, data_fd));
}

Result<> DirectDevice::feature(std::span<std::byte> arg) {
  if (auto r = sim_->feature(arg, opener_); !r)
    return wrap(std::move(r).error(), "VFIO_DEVICE_FEATURE");
  return {};
}

Result<> DirectDevice::reset() {
  if (auto r = sim_->reset(); !r) return wrap(std::move(r).error(), "VFIO_DEVICE_RESET");
  return {};
}

Result<std::size_t> DirectDevice::read(int data_fd, std::span<std::byte> buf) {
  auto id = session_of(data_fd, "read");
  if (!id) return std::unexpected(id.error());
  auto r = sim_->read(*id, buf, /*nonblock=*/false);
  if (!r) return wrap(std::move(r).error(), fmt::format("read data fd {}", data_fd));
  return r;
}

Result<std::size_t> DirectDevice::write(int data_fd, std::span<const std::byte> buf) {
  auto id = session_of(data_fd, "write");
  if (!id) return std::unexpected(id.error());
  auto r = sim_->write(*id, buf);
  if (!r) return wrap(std::move(r).error(), fmt::format("write data fd {}", data_fd));
  return r;
}

Result<> DirectDevice::precopy_info(int data_fd, uapi::PrecopyInfo& info) {
  auto id = session_of(data_fd, "VFIO_MIG_GET_PRECOPY_INFO");
  if (!id) return std::unexpected(id.error());
  if (auto r = sim_->precopy_info(*id, info); !r)
    return wrap(std::move(r).error(),
                fmt::format("VFIO_MIG_GET_PRECOPY_INFO on data fd {}", data_fd));
  return {};
}

Result<> DirectDevice::close(int data_fd) {
  SimDevice::SessionId id;
  {
    std::lock_guard lock(mu_);
    auto it = find_fd(data_fd);
    if (it == fds_.end())
      return fail(EBADF, fmt::format("{}: close: data fd {} is not open", name_, data_fd));
    id = it->second;
    fds_.erase(it);
  }
  sim_->release(id);
  return {};
}

Result<std::size_t> DirectDevice::config_read(std::uint64_t offset, std::span<std::byte> buf) {
  auto r = sim_->config_read(offset, buf);
  if (!r) return wrap(std::move(r).error(), "config read");
  return r;
}

Result<std::size_t> DirectDevice::config_write(std::uint64_t offset,
                                               std::span<const std::byte> buf) {
  auto r = sim_->config_write(offset, buf);
  if (!r) return wrap(std::move(r).error(), "config write");
  return r;
}

}  // namespace vfio::sim
