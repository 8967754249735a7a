#include "cli/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/interrupt.h"
#include "faults/isolation.h"
#include "faults/plan.h"

namespace vfio::cli {
namespace {

constexpr int kExitGraceMs = 2000;

// In the child, once its work is done: the output flushed and let go, then the verdict.
[[noreturn]] void report_and_exit(int verdict_fd, int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC); null >= 0)
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(null, fd);
  const auto byte = static_cast<std::uint8_t>(code);
  while (::write(verdict_fd, &byte, 1) < 0 && errno == EINTR) {
  }
  // exit, not _exit: the atexit handlers abort the FUSE connections of an abandoned device.
  std::exit(code);
}

// True when `pidfd` becomes readable (the whole thread group is gone) within `ms`.
bool ended_within(int pidfd, int ms) {
  pollfd p{pidfd, POLLIN, 0};
  int n;
  while ((n = ::poll(&p, 1, ms)) < 0 && errno == EINTR) {
  }
  return n > 0;
}

int code_of(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

}  // namespace

int run_supervised(std::string_view command, const std::function<int()>& work) {
  int verdict[2];
  if (::pipe2(verdict, O_CLOEXEC) != 0) {
    print_error(command, fmt::format("pipe: {}", faults::errno_name(errno)));
    return kExitFailed;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    print_error(command, fmt::format("fork: {}", faults::errno_name(errno)));
    ::close(verdict[0]);
    ::close(verdict[1]);
    return kExitFailed;
  }
  if (pid == 0) {
    ::close(verdict[0]);
    int code = work();
    // What run_program does after a command, done here: the child's exit is the command's end.
    if (interrupt::received()) code = interrupt::report(command, "");
    report_and_exit(verdict[1], code);
  }
  ::close(verdict[1]);
  constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction ignore {
  }, saved[std::size(kSignals)];
  ignore.sa_handler = SIG_IGN;
  for (std::size_t i = 0; i < std::size(kSignals); ++i)
    ::sigaction(kSignals[i], &ignore, &saved[i]);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::uint8_t byte = 0;
  ssize_t n;
  while ((n = ::read(verdict[0], &byte, 1)) < 0 && errno == EINTR) {
  }
  ::close(verdict[0]);
  int code = byte;
  if (n != 1) {
    // No verdict: the child ended without one (a crash, a second signal), so it can be reaped.
    int status = 0;
    ::waitpid(pid, &status, 0);
    code = code_of(status);
    if (WIFSIGNALED(status))
      print_error(command, fmt::format("died of {} before reporting its checks",
                                       faults::signal_name(WTERMSIG(status))));
  } else if (pidfd >= 0 && ended_within(pidfd, kExitGraceMs)) {
    ::waitpid(pid, nullptr, 0);
  } else if (pidfd >= 0) {
    std::string threads;
    for (const auto& t : faults::stuck_threads(pid)) threads += "; " + t.describe();
    print_error(command,
                fmt::format("process {} (the device work) cannot end{}; left behind, its exit "
                            "code {} reported without waiting for it",
                            pid, threads, code));
  }
  if (pidfd >= 0) ::close(pidfd);
  for (std::size_t i = 0; i < std::size(kSignals); ++i)
    ::sigaction(kSignals[i], &saved[i], nullptr);
  return code;
}

}  // namespace vfio::cli
