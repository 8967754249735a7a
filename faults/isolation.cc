#include "faults/isolation.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <latch>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "simdev/fuse_cleanup.h"

namespace vfio::faults {
namespace {

using Clock = std::chrono::steady_clock;

// Shared by working ForkTurn holders, exclusive for a fork. A pointer, so that a child can start
// with a gate of its own (its copy of the parent's is held by the forking thread, gone there).
std::shared_mutex* fork_gate = new std::shared_mutex;
thread_local bool holds_turn = false;

// Lets the caller's turn go while it only waits, if it holds one.
class Waiting {
 public:
  Waiting() : held_(holds_turn) {
    if (held_) fork_gate->unlock_shared();
  }
  ~Waiting() {
    if (held_) fork_gate->lock_shared();
  }
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;
  void forget() { held_ = false; }

 private:
  bool held_;
};

// fork() while no other turn holder is working.
pid_t fork_alone() {
  Waiting waiting;  // the caller's own share would keep its exclusive turn out
  fork_gate->lock();
  const pid_t pid = ::fork();
  if (pid == 0) {
    fork_gate = new std::shared_mutex;
    holds_turn = false;
    waiting.forget();
    return 0;
  }
  fork_gate->unlock();
  return pid;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The system calls a stuck case can be in that are worth naming; the rest go by number.
std::string syscall_name(long nr) {
  struct Named {
    long nr;
    const char* name;
    bool fd;  // the first argument is a file descriptor
  };
  static constexpr Named kNames[] = {
      {SYS_ioctl, "ioctl", true},
      {SYS_read, "read", true},
      {SYS_write, "write", true},
      {SYS_pread64, "pread64", true},
      {SYS_pwrite64, "pwrite64", true},
      {SYS_close, "close", true},
      {SYS_openat, "openat", false},
      {SYS_newfstatat, "newfstatat", false},
      {SYS_futex, "futex", false},
      {SYS_ppoll, "ppoll", false},
      {SYS_exit_group, "exit_group", false},
  };
  for (const auto& n : kNames)
    if (n.nr == nr) return n.name;
  return fmt::format("syscall {}", nr);
}

bool takes_fd(long nr) {
  return nr == SYS_ioctl || nr == SYS_read || nr == SYS_write || nr == SYS_pread64 ||
         nr == SYS_pwrite64 || nr == SYS_close;
}

// Waits until `fd` is readable or `until` passes; false on timeout.
bool wait_readable(int fd, Clock::time_point until) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

ChildEnd ended(pid_t pid, int status) {
  ChildEnd e;
  e.pid = pid;
  if (WIFSIGNALED(status)) {
    e.kind = ChildEnd::kCrashed;
    e.signal = WTERMSIG(status);
  } else {
    e.exit_code = WEXITSTATUS(status);
  }
  return e;
}

}  // namespace

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

std::string StuckThread::describe() const {
  std::string s = fmt::format("thread {} (state {})", tid, state);
  if (on_cpu)
    s += " running on a CPU (its call cannot be read while it runs)";
  else
    s += syscall.empty() ? " not in a system call" : " in " + syscall;
  if (!file.empty()) s += " on " + file;
  if (!wchan.empty() && wchan != "0") s += ", waiting in " + wchan;
  return s;
}

std::string ChildEnd::describe() const {
  switch (kind) {
    case kExited:
      return fmt::format("exited {}", exit_code);
    case kCrashed:
      return "crashed: " + signal_name(signal);
    case kTimeout:
      return "killed at the deadline";
    case kKernelHang:
      break;
  }
  std::string s = fmt::format("process {} cannot be killed:", pid);
  for (const auto& t : stuck) s += " " + t.describe() + ";";
  if (stuck.empty()) s += " no thread left in /proc";
  if (s.back() == ';') s.pop_back();
  return s;
}

std::vector<StuckThread> stuck_threads(pid_t pid) {
  std::vector<StuckThread> out;
  const std::string base = fmt::format("/proc/{}/task", pid);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    const std::string dir = entry.path().string();
    StuckThread t;
    t.tid = static_cast<pid_t>(std::strtol(entry.path().filename().c_str(), nullptr, 10));
    const std::string stat = read_text(dir + "/stat");
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) continue;
    t.state = stat[paren + 2];
    if (t.state == 'Z' || t.state == 'X') continue;  // gone but for its exit status
    // "NR arg1 ... arg6 sp pc", "-1 sp pc" outside a call, or "running".
    const std::string call = read_text(dir + "/syscall");
    t.on_cpu = call.starts_with("running");
    std::istringstream sc(call);
    long nr = -1;
    std::string arg0;
    if (sc >> nr && nr >= 0) {
      t.syscall = syscall_name(nr);
      if (sc >> arg0 && takes_fd(nr)) {
        const long fd = std::strtol(arg0.c_str(), nullptr, 16);
        std::error_code lec;
        auto target = std::filesystem::read_symlink(fmt::format("{}/fd/{}", dir, fd), lec);
        t.file = lec ? fmt::format("fd {}", fd) : fmt::format("fd {} ({})", fd, target.string());
      }
    }
    t.wchan = read_text(dir + "/wchan");
    out.push_back(std::move(t));
  }
  return out;
}

ForkTurn::ForkTurn() {
  fork_gate->lock_shared();
  holds_turn = true;
}

ForkTurn::~ForkTurn() {
  holds_turn = false;
  fork_gate->unlock_shared();
}

void run_forking_threads(unsigned threads, const std::function<void()>& work) {
  std::latch started(threads), finished(threads);
  std::vector<std::thread> crew;
  {
    ForkTurn spawning;  // no fork until every thread is running
    for (unsigned i = 0; i < threads; ++i)
      crew.emplace_back([&] {
        started.count_down();
        {
          ForkTurn turn;
          work();
        }
        finished.arrive_and_wait();  // none exits while another may still fork
      });
    started.wait();
  }
  for (auto& t : crew) t.join();
}

Result<> write_record(int fd, std::string_view record) {
  const auto len = static_cast<std::uint32_t>(record.size());
  std::string frame(reinterpret_cast<const char*>(&len), sizeof len);
  frame += record;
  std::string_view left = frame;
  while (!left.empty()) {
    const ssize_t n = ::write(fd, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(errno ? errno : EIO, "the parent stopped listening");
    left.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<ChildEnd> run_isolated(const std::function<void(int fd)>& body,
                              const std::function<void(std::string record)>& on_record,
                              const IsolationLimits& limits) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(errno, "pipe for a child");
  Fd read_end(fds[0]);
  const pid_t pid = fork_alone();
  if (pid < 0) {
    ::close(fds[1]);
    return fail(errno, "fork");
  }
  if (pid == 0) {
    ::close(fds[0]);
    // The parent may ignore SIGPIPE or catch signals for its own cleanup; the child starts plain.
    std::signal(SIGPIPE, SIG_IGN);
    sim::fuse_cleanup::forget_registered();  // a crash here must not abort the parent's mounts
    body(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  // Other children forked meanwhile may hold copies of the write end: the pipe's end is not the
  // child's end, the pidfd is. Reads never block.
  ::fcntl(read_end.fd, F_SETFL, O_NONBLOCK);
  // Readable once the whole thread group is gone (a stuck thread keeps it unreadable).
  Fd exit_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (exit_fd.fd < 0) {
    const int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(err, "pidfd_open");
  }

  std::string buffer;
  bool eof = false;
  auto deadline = Clock::now() + limits.deadline;
  auto take_records = [&] {
    while (buffer.size() >= sizeof(std::uint32_t)) {
      std::uint32_t len;
      std::memcpy(&len, buffer.data(), sizeof len);
      if (buffer.size() < sizeof len + len) break;
      on_record(buffer.substr(sizeof len, len));
      buffer.erase(0, sizeof len + len);
    }
  };
  // Reads what the pipe holds now.
  auto drain = [&] {
    char chunk[16384];
    for (;;) {
      const ssize_t n = ::read(read_end.fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof = n == 0 || errno != EAGAIN;
        return;
      }
      buffer.append(chunk, static_cast<std::size_t>(n));
      take_records();
      deadline = Clock::now() + limits.deadline;
    }
  };
  for (;;) {
    pollfd p[2] = {{exit_fd.fd, POLLIN, 0}, {eof ? -1 : read_end.fd, POLLIN, 0}};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    int n;
    {
      Waiting waiting;
      n = ::poll(p, 2, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    }
    if (n < 0 && errno != EINTR) return fail(errno, "poll on a child");
    if (n <= 0) continue;
    if (p[1].revents) drain();
    if (p[0].revents) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      drain();  // the whole group is gone: everything it wrote is in the pipe
      return ended(pid, status);
    }
  }
  ::kill(pid, SIGKILL);
  bool gone;
  {
    Waiting waiting;
    gone = wait_readable(exit_fd.fd, Clock::now() + limits.kill_grace);
  }
  if (gone) {
    ::waitpid(pid, nullptr, 0);
    ChildEnd e;
    e.kind = ChildEnd::kTimeout;
    e.pid = pid;
    return e;
  }
  ChildEnd e;
  e.kind = ChildEnd::kKernelHang;
  e.pid = pid;
  e.stuck = stuck_threads(pid);
  return e;
}

}  // namespace vfio::faults
