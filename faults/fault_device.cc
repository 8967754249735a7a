#include "faults/fault_device.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/feature.h"
#include "core/state_machine.h"
#include "faults/transfer.h"

namespace vfio::faults {

FaultDevice::FaultDevice(Device& inner, Injector& injector, Side side, ModelHooks* hooks)
    : inner_(inner), injector_(injector), side_(side), hooks_(hooks) {}

Call FaultDevice::call_of(Op op, std::size_t size, std::uint64_t offset) const {
  return {.side = side_, .op = op, .size = size, .offset = offset};
}

CallFacts FaultDevice::facts(std::optional<uapi::State> target) {
  CallFacts f;
  // Straight to the inner device: these GETs are ours, not the engine's, so they are
  // neither traced nor faulted.
  f.current_state = [this]() -> std::optional<uapi::State> {
    auto s = query_device_state(inner_);
    return s ? std::optional(*s) : std::nullopt;
  };
  f.opens_fd = [this, target] {
    if (!target) return false;
    auto cur = query_device_state(inner_);
    if (!cur) return false;
    std::uint64_t flags;
    {
      std::lock_guard lock(mu_);
      if (!mig_flags_) mig_flags_ = query_migration_flags(inner_).value_or(0);
      flags = *mig_flags_;
    }
    auto path = transition_path(*cur, *target, flags);
    if (path.empty()) return false;
    uapi::State from = path.size() > 1 ? path[path.size() - 2] : *cur;
    auto effect = arc_effect(from, path.back());
    return effect == ArcEffect::kOpensSave || effect == ArcEffect::kOpensResume;
  };
  return f;
}

Result<> FaultDevice::before(const Effects& e, std::string_view what) {
  if (auto p = injector_.pause(e, fmt::format("{}: {}", name(), what)); !p) return p;
  if (e.async_reset) {
    if (hooks_)
      hooks_->async_reset();
    else
      (void)inner_.reset();
  }
  if (e.land) {
    if (hooks_) {
      hooks_->force_state(*e.land);
    } else if (*e.land != uapi::State::kError) {
      // A real device cannot be told where to land: walk it there when the uAPI allows.
      if (auto fd = request_device_state(inner_, *e.land); fd && *fd != -1) (void)inner_.close(*fd);
    }
  }
  if (e.err) {
    return fail(*e.err, fmt::format("{}: {}: injected {}", name(), what, errno_name(*e.err)));
  }
  return {};
}

template <class T>
T FaultDevice::finish(const Injector::Ticket& t, T result) {
  std::uint64_t bytes = 0;
  if constexpr (!std::is_same_v<T, Result<>>) {
    if (result) bytes = *result;
  }
  injector_.end(t, bytes, !result);
  return result;
}

Result<> FaultDevice::feature(std::span<std::byte> arg) {
  uapi::FeatureHeader hdr{};
  if (arg.size() >= sizeof(hdr)) std::memcpy(&hdr, arg.data(), sizeof(hdr));
  Call call = call_of((hdr.flags & uapi::kFeatureProbe) ? Op::kProbe
                      : (hdr.flags & uapi::kFeatureGet) ? Op::kGet
                                                        : Op::kSet);
  call.feature = static_cast<uapi::Feature>(hdr.flags & uapi::kFeatureMask);
  if (call.op == Op::kSet && call.feature == uapi::Feature::kMigDeviceState &&
      arg.size() >= sizeof(hdr) + sizeof(uapi::MigState)) {
    uapi::MigState mig;
    std::memcpy(&mig, arg.data() + sizeof(hdr), sizeof(mig));
    call.target = static_cast<uapi::State>(mig.device_state);
  }
  auto t = injector_.begin(call, facts(call.target));
  std::string what = call.target
                         ? fmt::format("set device state {}", uapi::state_short_name(*call.target))
                         : fmt::format("{}:{}", op_name(call.op), feature_name(*call.feature));
  if (auto b = before(t.effects, what); !b) return finish(t, b);
  return finish(t, inner_.feature(arg));
}

Result<> FaultDevice::reset() {
  auto t = injector_.begin(call_of(Op::kReset), facts(std::nullopt));
  if (auto b = before(t.effects, "reset"); !b) return finish(t, b);
  return finish(t, inner_.reset());
}

Result<std::size_t> FaultDevice::read(int data_fd, std::span<std::byte> buf) {
  auto t = injector_.begin(call_of(Op::kRead, buf.size()), facts(std::nullopt));
  if (auto b = before(t.effects, fmt::format("read data fd {}", data_fd)); !b)
    return finish(t, Result<std::size_t>(std::unexpected(b.error())));
  {
    std::lock_guard lock(mu_);
    if (t.effects.truncate) truncated_.insert(data_fd);
    if (t.effects.eof || truncated_.contains(data_fd)) return finish(t, Result<std::size_t>(0));
  }
  return finish(t, faulty_read(t.effects, buf,
                               [&](std::span<std::byte> b) { return inner_.read(data_fd, b); }));
}

Result<std::size_t> FaultDevice::write(int data_fd, std::span<const std::byte> buf) {
  auto t = injector_.begin(call_of(Op::kWrite, buf.size()), facts(std::nullopt));
  if (auto b = before(t.effects, fmt::format("write data fd {}", data_fd)); !b)
    return finish(t, Result<std::size_t>(std::unexpected(b.error())));
  {
    std::lock_guard lock(mu_);
    if (t.effects.truncate) truncated_.insert(data_fd);
    // The stream ended: the writer is told all went well, the device never sees the rest.
    if (truncated_.contains(data_fd)) return finish(t, Result<std::size_t>(buf.size()));
  }
  return finish(t, faulty_write(t.effects, buf, [&](std::span<const std::byte> b) {
                  return inner_.write(data_fd, b);
                }));
}

Result<> FaultDevice::precopy_info(int data_fd, uapi::PrecopyInfo& info) {
  auto t = injector_.begin(call_of(Op::kPrecopyInfo), facts(std::nullopt));
  if (auto b = before(t.effects, "precopy info"); !b) return finish(t, b);
  return finish(t, inner_.precopy_info(data_fd, info));
}

Result<> FaultDevice::close(int data_fd) {
  auto t = injector_.begin(call_of(Op::kClose), facts(std::nullopt));
  {
    std::lock_guard lock(mu_);
    truncated_.erase(data_fd);
  }
  auto b = before(t.effects, fmt::format("close data fd {}", data_fd));
  // close(2) releases the fd even when it reports an error: so does an injected one.
  auto closed = inner_.close(data_fd);
  return finish(t, b ? closed : b);
}

Result<std::size_t> FaultDevice::config_read(std::uint64_t offset, std::span<std::byte> buf) {
  auto t = injector_.begin(call_of(Op::kConfigRead, buf.size(), offset), facts(std::nullopt));
  if (auto b = before(t.effects, "config read"); !b)
    return finish(t, Result<std::size_t>(std::unexpected(b.error())));
  return finish(t, faulty_read(t.effects, buf, [&](std::span<std::byte> b) {
                  return inner_.config_read(offset, b);
                }));
}

Result<std::size_t> FaultDevice::config_write(std::uint64_t offset,
                                              std::span<const std::byte> buf) {
  auto t = injector_.begin(call_of(Op::kConfigWrite, buf.size(), offset), facts(std::nullopt));
  if (auto b = before(t.effects, "config write"); !b)
    return finish(t, Result<std::size_t>(std::unexpected(b.error())));
  return finish(t, faulty_write(t.effects, buf, [&](std::span<const std::byte> b) {
                  return inner_.config_write(offset, b);
                }));
}

}  // namespace vfio::faults
