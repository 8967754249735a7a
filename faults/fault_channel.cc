#include "faults/fault_channel.h"

#include <fmt/format.h>

#include "faults/transfer.h"

namespace vfio::faults {
namespace {

Result<> injected(const Effects& e, Injector& injector, const std::string& name,
                  std::string_view what) {
  if (auto p = injector.pause(e, fmt::format("{}: {}", name, what)); !p) return p;
  if (e.err)
    return fail(*e.err, fmt::format("{}: {}: injected {}", name, what, errno_name(*e.err)));
  return {};
}

}  // namespace

FaultChannel::FaultChannel(Channel& inner, Injector& injector, Side side)
    : inner_(inner), injector_(injector), side_(side) {}

Result<std::size_t> FaultChannel::write(std::span<const std::byte> data) {
  auto t = injector_.begin({side_, Op::kSend, {}, {}, data.size()}, {});
  Result<std::size_t> r = data.size();
  if (auto b = injected(t.effects, injector_, name(), "send"); !b) {
    r = std::unexpected(b.error());
  } else if (truncated_ || t.effects.truncate) {
    truncated_ = true;  // the stream ended here: the rest is swallowed
  } else {
    r = faulty_write(t.effects, data,
                     [&](std::span<const std::byte> b) { return inner_.write(b); });
  }
  injector_.end(t, r ? *r : 0, !r);
  return r;
}

Result<std::size_t> FaultChannel::read(std::span<std::byte> data) {
  auto t = injector_.begin({side_, Op::kRecv, {}, {}, data.size()}, {});
  Result<std::size_t> r = 0;
  if (auto b = injected(t.effects, injector_, name(), "recv"); !b) {
    r = std::unexpected(b.error());
  } else if (truncated_ || t.effects.truncate || t.effects.eof) {
    truncated_ = truncated_ || t.effects.truncate;
  } else {
    r = faulty_read(t.effects, data, [&](std::span<std::byte> b) { return inner_.read(b); });
  }
  injector_.end(t, r ? *r : 0, !r);
  return r;
}

}  // namespace vfio::faults
