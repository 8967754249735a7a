// EINTR and EAGAIN mean "not now", not "failed": the engine repeats the call, as QEMU's
// qemu_file and read loops repeat an interrupted syscall. Repeats are bounded, so a device that
// answers EAGAIN for ever still fails instead of spinning the migration for ever.
#pragma once

#include <cerrno>
#include <chrono>
#include <thread>

#include "core/result.h"

namespace vfio {

// Consecutive EINTR/EAGAIN answers one call absorbs before it reports the last one.
constexpr int kMaxTransientRetries = 1000;

// Test seam: the bound in use (kMaxTransientRetries unless a test lowers it; 0 turns the retry
// off, so a test can show that the fault oracles catch an engine that gives up on EINTR).
int transient_retry_limit();
void set_transient_retry_limit(int limit);

inline bool transient(const Error& e) {
  return e.code == EINTR || e.code == EAGAIN;
}

// Calls `call` until it returns anything but EINTR or EAGAIN, or the bound is reached. EAGAIN
// waits a little first: the device said it has nothing yet.
template <class F>
auto retry_transient(F&& call) -> decltype(call()) {
  for (int tries = 0;; ++tries) {
    auto r = call();
    if (r || !transient(r.error()) || tries >= transient_retry_limit()) return r;
    if (r.error().code == EAGAIN) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace vfio
