// The watchdog every fault run goes under (matrix cases and single `faults --plan` runs alike):
// the run goes on its own thread; a fired hang is cancelled after a grace period, any run after
// a timeout, and a run that does not end after cancelling is abandoned and reported.
#pragma once

#include <chrono>
#include <functional>

#include "faults/scenario.h"

namespace vfio::faults {

struct WatchdogOptions {
  std::chrono::milliseconds timeout{10'000};      // a run taking longer is cancelled
  std::chrono::milliseconds hang_grace{20};       // a fired hang is cancelled after this
  std::chrono::milliseconds cancel_grace{5'000};  // after cancelling, wait this long at most
};

struct Watched {
  bool timed_out = false;       // cancelled because the timeout passed
  bool hang_cancelled = false;  // cancelled because an injected hang blocked it
  bool hung = false;            // did not end `cancel_grace` after cancelling: still running
  std::chrono::nanoseconds elapsed{};
};

// Runs `body` under the watchdog; `control` cancels it (its injector's hangs and delays, and the
// sessions attached to it). When the result says `hung`, `body` is still running on a detached
// thread: whatever it and `control` use must stay alive (the matrix keeps both in shared state;
// the CLI exits).
Watched run_under_watchdog(CaseControl& control, std::function<void()> body,
                           const WatchdogOptions& w);

}  // namespace vfio::faults
