// SIGINT, SIGTERM and SIGHUP: the first cancels the running operation through its normal
// cancel path (devices back to RUNNING, FUSE mounts unmounted on the way out, exit status
// 128+signal with one line saying what happened); a second one exits at once, after aborting
// this process's FUSE connections so that nothing is left stuck on them.
//
// The handler only records the signal and writes to a self-pipe; a watcher thread runs the
// registered cancel actions. The pipe's read end stays readable from then on, so blocking
// reads and writes on pipes, FIFOs and terminals poll it (FdChannel::set_cancel_fd).
#pragma once

#include <functional>
#include <string_view>

namespace vfio::cli::interrupt {

// Installs the handlers and starts the watcher (main() does, once).
void install();
// 0, or the first signal received.
int received();
// Readable once a signal arrived; -1 before install().
int cancel_fd();

// While alive, the first signal runs `cancel` on the watcher thread; at once if it came before.
class OnInterrupt {
 public:
  explicit OnInterrupt(std::function<void()> cancel);
  ~OnInterrupt();
  OnInterrupt(const OnInterrupt&) = delete;
  OnInterrupt& operator=(const OnInterrupt&) = delete;

 private:
  int slot_;
};

// After a signal: prints "vfio-mig COMMAND: interrupted by SIGINT; WHAT" once (later calls
// print nothing) and returns 128+signal.
int report(std::string_view command, std::string_view what);

}  // namespace vfio::cli::interrupt
