#include "core/switchover_gate.h"

#include <cerrno>
#include <chrono>

#include <fmt/format.h>

namespace vfio {

void SwitchoverGate::expect(std::size_t devices) {
  std::lock_guard lock(mu_);
  expected_ = pending_ = devices;
  cv_.notify_all();
}

Result<> SwitchoverGate::approve() {
  std::lock_guard lock(mu_);
  // As qemu_loadvm_approve_switchover: an approval nobody is waiting for is an error.
  if (!pending_ || *pending_ == 0)
    return fail(EINVAL, "switchover approved more often than needed");
  --*pending_;
  cv_.notify_all();
  return {};
}

void SwitchoverGate::abort(Error why) {
  std::lock_guard lock(mu_);
  if (!aborted_) aborted_ = std::move(why);
  cv_.notify_all();
}

bool SwitchoverGate::source_waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

bool SwitchoverGate::approved() const {
  std::lock_guard lock(mu_);
  return pending_ == 0u;
}

Result<> SwitchoverGate::wait(std::size_t offered, const std::function<bool()>& cancelled) const {
  std::unique_lock lock(mu_);
  waiting_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{waiting_};  // cleared under the lock: every return below holds it
  for (;;) {
    if (pending_ == 0u) return {};
    if (aborted_) return std::unexpected(*aborted_);
    if (expected_ && *expected_ > offered)
      return fail(EPROTO, fmt::format("switchover-ack: the destination waits for the initial "
                                      "data of {} device(s), the source sent it for {}",
                                      *expected_, offered));
    if (cancelled && cancelled()) return fail(ECANCELED, "cancelled waiting for switchover-ack");
    // Cancellation is a flag, not a notification: poll it.
    cv_.wait_for(lock, std::chrono::milliseconds(2));
  }
}

}  // namespace vfio
