#include "cli/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "simdev/sim_mount.h"

namespace vfio::cli::interrupt {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

std::atomic<int> g_signal{0};
int g_pipe[2] = {-1, -1};
std::atomic<bool> g_reported{false};

// The cancel actions, and whether the watcher ran them already.
std::mutex g_mu;
std::map<int, std::function<void()>> g_actions;
int g_next_slot = 0;
bool g_fired = false;

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

void write_all(int fd, const char* s) {
  for (std::size_t n = std::strlen(s); n > 0;) {
    const ssize_t w = ::write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Async-signal-safe only.
void on_signal(int sig) {
  const int saved = errno;
  int none = 0;
  if (!g_signal.compare_exchange_strong(none, sig)) {
    // The second signal: no more waiting for a cancel to finish.
    sim::SimMount::abort_all_connections_of_this_process();
    write_all(STDERR_FILENO, "vfio-mig: second signal (");
    write_all(STDERR_FILENO, signal_name(sig));
    write_all(STDERR_FILENO, "): exiting at once; FUSE connections aborted\n");
    ::_exit(128 + sig);
  }
  (void)!::write(g_pipe[1], "!", 1);
  errno = saved;
}

void watch() {
  pollfd p{g_pipe[0], POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  std::lock_guard lock(g_mu);
  g_fired = true;
  for (auto& [slot, action] : g_actions) action();
}

}  // namespace

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
    std::thread(watch).detach();
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    ::sigemptyset(&sa.sa_mask);
    for (int sig : kSignals) ::sigaddset(&sa.sa_mask, sig);  // one handler at a time
    sa.sa_flags = SA_RESTART;
    for (int sig : kSignals) ::sigaction(sig, &sa, nullptr);
  });
}

int received() {
  return g_signal.load();
}

int cancel_fd() {
  return g_pipe[0];
}

OnInterrupt::OnInterrupt(std::function<void()> cancel) {
  std::lock_guard lock(g_mu);
  if (g_fired) cancel();
  slot_ = g_next_slot++;
  g_actions.emplace(slot_, std::move(cancel));
}

OnInterrupt::~OnInterrupt() {
  std::lock_guard lock(g_mu);
  g_actions.erase(slot_);
}

int report(std::string_view command, std::string_view what) {
  const int sig = received();
  if (!g_reported.exchange(true)) {
    fmt::print(stderr, "vfio-mig {}: interrupted by {}{}{}\n", command, signal_name(sig),
               what.empty() ? "" : "; ", what);
  }
  return 128 + sig;
}

}  // namespace vfio::cli::interrupt
