// A runner that isolates: runs work in a child process under a watchdog, collects the child's
// records over a pipe as they come, and says how the child ended: it exited, it crashed (the
// signal), it was killed at the deadline (timeout), or it could not be killed because a thread
// is stuck in a system call (kernel-hang: the call, its file, the kernel's wait channel). A
// stuck child is left behind: nothing in user space can end it.
//
// The child is a fork() of the caller: it must touch only what it owns (no lock another thread
// of the parent may hold at the fork, no FUSE mount served by the parent's threads). Threads
// that run children beside each other hold a ForkTurn, so that none of them is mid-work (holding
// a lock) when another forks.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vfio::faults {

struct IsolationLimits {
  // No record and no exit for this long: the child is killed (SIGKILL).
  std::chrono::milliseconds deadline{15'000};
  // After SIGKILL, how long the child has to go before it counts as stuck in the kernel.
  std::chrono::milliseconds kill_grace{2'000};
};

// A thread of a child that SIGKILL did not end, as /proc shows it.
struct StuckThread {
  pid_t tid = 0;
  char state = '?';     // /proc/PID/task/TID/stat: D (uninterruptible), R (spinning in the kernel)
  std::string syscall;  // "ioctl", "read", ... or "syscall 321"; empty when not in one
  bool on_cpu = false;  // running now: /proc cannot name its call (a kernel loop spins so)
  std::string file;     // the fd argument's target (readlink /proc/.../fd/N), when it has one
  std::string wchan;    // the kernel function it waits in
  std::string describe() const;
};

struct ChildEnd {
  enum Kind { kExited, kCrashed, kTimeout, kKernelHang } kind = kExited;
  int exit_code = 0;  // kExited
  int signal = 0;     // kCrashed
  pid_t pid = 0;
  std::vector<StuckThread> stuck;  // kKernelHang
  std::string describe() const;    // "exited 0", "crashed: SIGSEGV", "stuck in ioctl on ..."
};

// Held by a thread for as long as it works beside threads that fork children: run_isolated forks
// only while no other holder is working, and lets its caller's turn go while it waits on its
// child. A child forked while another thread held a lock inherits it held forever: glibc resets
// its own (malloc, stdio) in the child, but not the program's or other libraries', and GCC 12's
// ASan runtime resets none of its allocator's.
class ForkTurn {
 public:
  ForkTurn();
  ~ForkTurn();
  ForkTurn(const ForkTurn&) = delete;
  ForkTurn& operator=(const ForkTurn&) = delete;
};

// Runs `work` on `threads` threads that may run children beside each other (run_isolated), each
// holding a ForkTurn. No fork happens while one of them starts or exits either: the runtime
// allocates for a thread then, outside any turn.
void run_forking_threads(unsigned threads, const std::function<void()>& work);

// Writes one record to the pipe a child got (length-prefixed); an error when the parent is gone.
Result<> write_record(int fd, std::string_view record);

// Forks a child that runs `body(fd)` (fd: its end of the pipe, for write_record), then exits 0.
// Calls `on_record` in the parent for each record, in order; each record restarts the deadline.
// Returns how the child ended; an error only when it could not be started.
Result<ChildEnd> run_isolated(const std::function<void(int fd)>& body,
                              const std::function<void(std::string record)>& on_record,
                              const IsolationLimits& limits);

// The threads of `pid` that are in the kernel and not on the way out (state D, or R in a
// system call), with the call they are in. Exposed for tests and reports.
std::vector<StuckThread> stuck_threads(pid_t pid);

// "SIGSEGV" for SIGSEGV, "signal 64" for what has no name.
std::string signal_name(int sig);

}  // namespace vfio::faults
