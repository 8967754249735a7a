// The simulator served in-process: a vfio::Device whose calls go straight to a SimDevice, with
// data fd numbers made up locally. Fast and free of FUSE, for unit tests and benchmarks.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "simdev/sim_device.h"

namespace vfio::sim {

class DirectDevice final : public vfio::Device {
 public:
  // Opens the device (SimDevice::open_device); destroying the DirectDevice closes it.
  DirectDevice(std::shared_ptr<SimDevice> sim, std::string name);
  ~DirectDevice() override;
  DirectDevice(const DirectDevice&) = delete;
  DirectDevice& operator=(const DirectDevice&) = delete;

  Result<> feature(std::span<std::byte> arg) override;
  Result<> reset() override;
  Result<std::size_t> read(int data_fd, std::span<std::byte> buf) override;
  Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) override;
  Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) override;
  Result<> close(int data_fd) override;
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf) override;
  const std::string& name() const override { return name_; }

  SimDevice& sim() { return *sim_; }

 private:
  // fd -> session, for the few open at a time. A vector keeps its capacity: opening a data
  // channel allocates nothing once one was.
  using FdTable = std::vector<std::pair<int, SimDevice::SessionId>>;

  // fds_'s entry for `data_fd`, or its end; mu_ held.
  FdTable::iterator find_fd(int data_fd);
  // The session behind an fd, or EBADF.
  Result<SimDevice::SessionId> session_of(int data_fd, const char* op);
  // Prefixes the model's error with the device name and the operation.
  std::unexpected<Error> wrap(Error e, std::string_view op) const;

  std::shared_ptr<SimDevice> sim_;
  std::string name_;
  std::mutex mu_;
  int next_fd_ = 1000;  // never reused, so a stale number cannot alias a new channel
  FdTable fds_;
  // Numbers a data channel the model opened. Built once, not on every feature call.
  SimDevice::FdOpener opener_;
};

}  // namespace vfio::sim
