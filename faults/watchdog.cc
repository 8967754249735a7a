#include "faults/watchdog.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace vfio::faults {

Watched run_under_watchdog(CaseControl& control, std::function<void()> body,
                           const WatchdogOptions& w) {
  using Clock = std::chrono::steady_clock;
  // Shared with the body's thread, which may outlive this call when it never ends.
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  const auto start = Clock::now();
  std::thread thread([done, body = std::move(body)] {
    body();
    std::lock_guard lock(done->mu);
    done->done = true;
    done->cv.notify_all();
  });
  Watched out;
  std::optional<Clock::time_point> cancelled_at, hang_seen;
  {
    std::unique_lock lock(done->mu);
    while (!done->done) {
      done->cv.wait_for(lock, std::chrono::milliseconds(5));
      if (done->done) break;
      const auto now = Clock::now();
      if (!cancelled_at) {
        if (!hang_seen && control.injector.hanging()) hang_seen = now;
        out.hang_cancelled = hang_seen && now - *hang_seen >= w.hang_grace;
        out.timed_out = now - start > w.timeout;
        if (out.hang_cancelled || out.timed_out) {
          lock.unlock();
          control.cancel();
          lock.lock();
          cancelled_at = now;
        }
      } else if (now - *cancelled_at > w.cancel_grace) {
        out.hung = true;
        break;
      }
    }
  }
  out.elapsed = Clock::now() - start;
  if (out.hung)
    thread.detach();
  else
    thread.join();
  return out;
}

}  // namespace vfio::faults
