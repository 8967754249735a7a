// A Device that forwards each call and keeps a record of the calls in flight (one per calling
// thread: conform's concurrency checks call from several), so that a watchdog on another thread
// can tell a call that never returns (a kernel hang) and name it; once abandoned it never
// touches the device again, failing every call at once. Used by conform's checks, fuzz-resume
// (both under run_watching) and by the benchmark on named devices.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "core/device.h"

namespace vfio {

class WatchedDevice final : public Device {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WatchedDevice(Device& inner) : inner_(inner) {}

  Result<> feature(std::span<std::byte> arg) override;
  Result<> reset() override;
  Result<std::size_t> read(int data_fd, std::span<std::byte> buf) override;
  Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) override;
  Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) override;
  Result<> close(int data_fd) override;
  std::optional<Result<std::size_t>> read_at(int data_fd, std::span<std::byte> buf,
                                             std::int64_t offset) override;
  std::optional<Result<std::size_t>> write_at(int data_fd, std::span<const std::byte> buf,
                                              std::int64_t offset) override;
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf) override;
  const std::string& name() const override { return inner_.name(); }

  // The oldest call in flight, if any: its number (one per call, rising), when it started and
  // what it is ("SET MIG_DEVICE_STATE SC->PC", "read(data fd 5, 1048576 bytes)", ...).
  struct InFlight {
    std::uint64_t seq = 0;
    Clock::time_point since;
    std::string what;
  };
  std::optional<InFlight> oldest_in_flight() const;
  // From now on every call fails with ECANCELED without reaching the device.
  void abandon() { abandoned_ = true; }

 private:
  enum class Op {
    kFeature,
    kReset,
    kRead,
    kWrite,
    kPrecopyInfo,
    kClose,
    kReadAt,
    kWriteAt,
    kConfigRead,
    kConfigWrite
  };
  struct Call {
    Op op = Op::kFeature;
    std::uint64_t arg = 0;                // data fd, config offset or feature flags
    std::uint64_t size = 0;               // bytes asked for
    std::int64_t offset = 0;              // a data fd's pread/pwrite position
    std::optional<uapi::State> from, to;  // a MIG_DEVICE_STATE SET's arc, as far as known
  };

  struct Active {
    std::uint64_t seq = 0;
    Clock::time_point since;
    Call call;
  };

  static Call call(Op op, std::uint64_t arg = 0, std::uint64_t size = 0);
  static std::string describe(const Call& c);
  // Runs `fn` on the device as call `c`, unless abandoned; tracks the state the device is in.
  template <class Fn>
  auto watch(const Call& c, Fn fn) -> decltype(fn());

  Device& inner_;
  std::atomic<bool> abandoned_ = false;
  mutable std::mutex mu_;
  std::uint64_t seq_ = 0;
  std::map<std::thread::id, Active> active_;  // a thread makes one call at a time
  std::optional<uapi::State> known_;          // the state the last GET, SET or reset left
};

// Runs `body` on a thread of its own while this thread watches the calls it makes through
// `devices`: nullopt once `body` returned, or the device and its call still in flight `limit`
// after it started. Then every device is abandoned and `body`'s thread detached, still inside
// that call: whatever it uses must stay alive (the callers keep it in shared state, or leak it).
struct Hang {
  WatchedDevice* device = nullptr;
  WatchedDevice::InFlight call;
};
std::optional<Hang> run_watching(std::span<WatchedDevice* const> devices,
                                 std::chrono::milliseconds limit, std::function<void()> body);
// The same for one device: the call that hung.
std::optional<WatchedDevice::InFlight> run_watching(WatchedDevice& dev,
                                                    std::chrono::milliseconds limit,
                                                    std::function<void()> body);

}  // namespace vfio
