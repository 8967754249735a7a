// Switchover-ack between the two sides of one migration: the destination approves the
// switchover once every device that needs it has loaded its initial pre-copy data, and the
// source does not stop the VM before that. QEMU carries the approval on the return path; two
// Sessions in one process share this object instead.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>

#include "core/result.h"

namespace vfio {

class SwitchoverGate {
 public:
  // Destination, at load setup: how many devices must approve (0 approves at once).
  void expect(std::size_t devices);
  // Destination: one device's initial data was loaded. More approvals than expected: EINVAL.
  Result<> approve();
  // Either side failed: a waiting source gives up with this error.
  void abort(Error why);

  bool approved() const;
  // Whether the source is blocked in wait(): everything it sent before is on its way.
  bool source_waiting() const;
  // Source, having sent INIT_DATA_SENT for `offered` devices: blocks until approved, aborted,
  // or `cancelled()` turns true (polled). Fails at once when the destination expects more
  // devices than were offered: the approval could never come.
  Result<> wait(std::size_t offered, const std::function<bool()>& cancelled) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<std::size_t> expected_;  // unset until the destination said how many
  std::optional<std::size_t> pending_;
  std::optional<Error> aborted_;
  mutable bool waiting_ = false;
};

}  // namespace vfio
