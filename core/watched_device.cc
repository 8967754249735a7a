#include "core/watched_device.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <vector>

namespace vfio {
namespace {

std::string short_name(std::optional<uapi::State> s) {
  return s ? std::string(uapi::state_short_name(*s)) : "?";
}

// The header and, for MIG_DEVICE_STATE, the payload of a feature call, as far as `arg` holds them.
struct FeatureArg {
  std::uint32_t flags = 0;
  std::optional<uapi::MigState> mig;
};

FeatureArg parse(std::span<const std::byte> arg) {
  FeatureArg out;
  uapi::FeatureHeader h;
  if (arg.size() < sizeof(h)) return out;
  std::memcpy(&h, arg.data(), sizeof(h));
  out.flags = h.flags;
  const bool device_state = (h.flags & uapi::kFeatureMask) ==
                                static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) &&
                            !(h.flags & uapi::kFeatureProbe);
  if (device_state && arg.size() >= sizeof(h) + sizeof(uapi::MigState)) {
    uapi::MigState mig;
    std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
    out.mig = mig;
  }
  return out;
}

std::optional<uapi::State> state_of(std::uint32_t raw) {
  if (raw >= uapi::kStateCount) return std::nullopt;
  return static_cast<uapi::State>(raw);
}

}  // namespace

WatchedDevice::Call WatchedDevice::call(Op op, std::uint64_t arg, std::uint64_t size) {
  Call c;
  c.op = op;
  c.arg = arg;
  c.size = size;
  return c;
}

template <class Fn>
auto WatchedDevice::watch(const Call& c, Fn fn) -> decltype(fn()) {
  if (abandoned_)
    return fail(ECANCELED, "not sent: an earlier call into the device never returned");
  const auto self = std::this_thread::get_id();
  {
    std::lock_guard lock(mu_);
    active_[self] = Active{++seq_, Clock::now(), c};
  }
  auto r = fn();
  std::lock_guard lock(mu_);
  active_.erase(self);
  return r;
}

Result<> WatchedDevice::feature(std::span<std::byte> arg) {
  const FeatureArg before = parse(arg);
  Call c = call(Op::kFeature, before.flags, arg.size());
  const bool set = before.mig && (before.flags & uapi::kFeatureSet);
  if (set) {
    std::lock_guard lock(mu_);
    c.from = known_;
    c.to = state_of(before.mig->device_state);
  }
  auto r = watch(c, [&] { return inner_.feature(arg); });
  if (before.mig) {
    std::lock_guard lock(mu_);
    if (set)
      known_ = r ? c.to : std::nullopt;
    else if (r && (before.flags & uapi::kFeatureGet))
      known_ = state_of(parse(arg).mig->device_state);
  }
  return r;
}

Result<> WatchedDevice::reset() {
  auto r = watch(call(Op::kReset), [&] { return inner_.reset(); });
  std::lock_guard lock(mu_);
  known_ = r ? std::optional(uapi::State::kRunning) : std::nullopt;
  return r;
}

Result<std::size_t> WatchedDevice::read(int fd, std::span<std::byte> buf) {
  return watch(call(Op::kRead, static_cast<std::uint64_t>(fd), buf.size()),
               [&] { return inner_.read(fd, buf); });
}

Result<std::size_t> WatchedDevice::write(int fd, std::span<const std::byte> buf) {
  return watch(call(Op::kWrite, static_cast<std::uint64_t>(fd), buf.size()),
               [&] { return inner_.write(fd, buf); });
}

Result<> WatchedDevice::precopy_info(int fd, uapi::PrecopyInfo& info) {
  return watch(call(Op::kPrecopyInfo, static_cast<std::uint64_t>(fd)),
               [&] { return inner_.precopy_info(fd, info); });
}

Result<> WatchedDevice::close(int fd) {
  return watch(call(Op::kClose, static_cast<std::uint64_t>(fd)), [&] { return inner_.close(fd); });
}

std::optional<Result<std::size_t>> WatchedDevice::read_at(int fd, std::span<std::byte> buf,
                                                          std::int64_t offset) {
  Call c = call(Op::kReadAt, static_cast<std::uint64_t>(fd), buf.size());
  c.offset = offset;
  return watch(c, [&] { return inner_.read_at(fd, buf, offset); });
}

std::optional<Result<std::size_t>> WatchedDevice::write_at(int fd, std::span<const std::byte> buf,
                                                           std::int64_t offset) {
  Call c = call(Op::kWriteAt, static_cast<std::uint64_t>(fd), buf.size());
  c.offset = offset;
  return watch(c, [&] { return inner_.write_at(fd, buf, offset); });
}

Result<std::size_t> WatchedDevice::config_read(std::uint64_t offset, std::span<std::byte> buf) {
  return watch(call(Op::kConfigRead, offset, buf.size()),
               [&] { return inner_.config_read(offset, buf); });
}

Result<std::size_t> WatchedDevice::config_write(std::uint64_t offset,
                                                std::span<const std::byte> buf) {
  return watch(call(Op::kConfigWrite, offset, buf.size()),
               [&] { return inner_.config_write(offset, buf); });
}

std::optional<WatchedDevice::InFlight> WatchedDevice::oldest_in_flight() const {
  std::lock_guard lock(mu_);
  const auto oldest =
      std::ranges::min_element(active_, {}, [](const auto& entry) { return entry.second.seq; });
  if (oldest == active_.end()) return std::nullopt;
  const Active& a = oldest->second;
  return InFlight{a.seq, a.since, describe(a.call)};
}

std::string WatchedDevice::describe(const Call& c) {
  switch (c.op) {
    case Op::kFeature: {
      const std::uint32_t index = c.arg & uapi::kFeatureMask;
      if (c.to)
        return fmt::format("SET MIG_DEVICE_STATE {}->{}", short_name(c.from), short_name(c.to));
      return fmt::format("VFIO_DEVICE_FEATURE (feature {}, flags {:#x})", index, c.arg);
    }
    case Op::kReset:
      return "VFIO_DEVICE_RESET";
    case Op::kRead:
      return fmt::format("read(data fd {}, {} bytes)", c.arg, c.size);
    case Op::kWrite:
      return fmt::format("write(data fd {}, {} bytes)", c.arg, c.size);
    case Op::kPrecopyInfo:
      return fmt::format("VFIO_MIG_GET_PRECOPY_INFO(data fd {})", c.arg);
    case Op::kClose:
      return fmt::format("close(data fd {})", c.arg);
    case Op::kReadAt:
      return fmt::format("pread(data fd {}, {} bytes at {})", c.arg, c.size, c.offset);
    case Op::kWriteAt:
      return fmt::format("pwrite(data fd {}, {} bytes at {})", c.arg, c.size, c.offset);
    case Op::kConfigRead:
      return fmt::format("config read({} bytes at {:#x})", c.size, c.arg);
    case Op::kConfigWrite:
      return fmt::format("config write({} bytes at {:#x})", c.size, c.arg);
  }
  return "a device call";
}

// Waits for `body`, waking at the earliest deadline of the devices' oldest calls in flight: a
// call still in flight then, the same one, is a hang.
std::optional<Hang> run_watching(std::span<WatchedDevice* const> devices,
                                 std::chrono::milliseconds limit, std::function<void()> body) {
  using Clock = WatchedDevice::Clock;
  // Shared with the body's thread, which may outlive this call.
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  std::thread worker([done, body = std::move(body)] {
    body();
    std::lock_guard lock(done->mu);
    done->done = true;
    done->cv.notify_all();
  });
  std::vector<std::optional<WatchedDevice::InFlight>> calls(devices.size());
  std::unique_lock lock(done->mu);
  while (!done->done) {
    // Between calls: any call starting now ends its limit within 1.25 limits of this wait.
    auto deadline = Clock::now() + limit / 4;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      calls[i] = devices[i]->oldest_in_flight();
      if (calls[i]) deadline = std::min(deadline, calls[i]->since + limit);
    }
    if (done->cv.wait_until(lock, deadline, [&] { return done->done; })) break;
    const auto now = Clock::now();
    for (std::size_t i = 0; i < devices.size(); ++i) {
      if (!calls[i] || calls[i]->since + limit > now) continue;
      // Calls start in seq order, so a call still in flight is still the oldest.
      const auto still = devices[i]->oldest_in_flight();
      if (!still || still->seq != calls[i]->seq) continue;
      for (WatchedDevice* d : devices) d->abandon();
      lock.unlock();
      worker.detach();
      return Hang{devices[i], *calls[i]};
    }
  }
  lock.unlock();
  worker.join();
  return std::nullopt;
}

std::optional<WatchedDevice::InFlight> run_watching(WatchedDevice& dev,
                                                    std::chrono::milliseconds limit,
                                                    std::function<void()> body) {
  WatchedDevice* devices[] = {&dev};
  auto hang = run_watching(devices, limit, std::move(body));
  if (!hang) return std::nullopt;
  return hang->call;
}

}  // namespace vfio
