// FaultDevice: a Device decorator that applies a fault plan to every call it passes on, so the
// same plan runs around a DirectDevice, a FUSE-served simulator or a real /dev/vfio device.
// Faults only the model can produce (land=, async-reset) go through ModelHooks when the inner
// device is simulated; around a real device they are emulated (docs/faults.md).
#pragma once

#include <mutex>
#include <optional>
#include <set>

#include "core/device.h"
#include "faults/injector.h"

namespace vfio::faults {

class ModelHooks {
 public:
  virtual ~ModelHooks() = default;
  // The device is now in `state`, as if a failing arc had left it there.
  virtual void force_state(uapi::State state) = 0;
  // A reset nobody asked for (a device or driver error): RUNNING, every data fd stale.
  virtual void async_reset() = 0;
};

class FaultDevice final : public Device {
 public:
  // `hooks` may be null (a real device). Nothing is owned.
  FaultDevice(Device& inner, Injector& injector, Side side, ModelHooks* hooks = nullptr);

  Result<> feature(std::span<std::byte> arg) override;
  Result<> reset() override;
  Result<std::size_t> read(int data_fd, std::span<std::byte> buf) override;
  Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) override;
  Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) override;
  Result<> close(int data_fd) override;
  // Positional I/O is no engine call (Device::read_at): passed through, no fault applies.
  std::optional<Result<std::size_t>> read_at(int data_fd, std::span<std::byte> buf,
                                             std::int64_t offset) override {
    return inner_.read_at(data_fd, buf, offset);
  }
  std::optional<Result<std::size_t>> write_at(int data_fd, std::span<const std::byte> buf,
                                              std::int64_t offset) override {
    return inner_.write_at(data_fd, buf, offset);
  }
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf) override;
  const std::string& name() const override { return inner_.name(); }

  Device& inner() { return inner_; }

 private:
  // A call of `op` on this device.
  Call call_of(Op op, std::size_t size = 0, std::uint64_t offset = 0) const;
  CallFacts facts(std::optional<uapi::State> target);
  // Delay, hang, cancel, async reset and land: everything that happens before the call, and
  // the injected error if there is one.
  Result<> before(const Effects& e, std::string_view what);
  template <class T>
  T finish(const Injector::Ticket& t, T result);

  Device& inner_;
  Injector& injector_;
  Side side_;
  ModelHooks* hooks_;
  std::mutex mu_;
  std::optional<std::uint64_t> mig_flags_;
  std::set<int> truncated_;  // data fds whose stream a `truncate` fault ended
};

}  // namespace vfio::faults
