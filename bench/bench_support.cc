#include "bench/bench_support.h"

#include <fmt/format.h>

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <string>

namespace vfio::bench {
namespace {

volatile std::sig_atomic_t stop_signal = 0;

void on_stop_signal(int sig) {
  stop_signal = sig;
}

}  // namespace

void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() {
  return stop_signal != 0;
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

std::uint64_t peak_rss() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  }
  return 0;
}

std::chrono::duration<double> process_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

unsigned usable_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(std::max(CPU_COUNT(&set), 1));
}

Result<devices::OpenedDevice> make_device(std::string_view transport, std::string_view profile,
                                          std::uint64_t state_size, std::uint64_t seed,
                                          int server_cpu) {
  auto arg = devices::parse_device_arg(
      fmt::format("sim:{},size={},seed={},transport={}", profile, state_size, seed, transport));
  if (!arg) return std::unexpected(arg.error());
  arg->sim->server_cpu = server_cpu;
  return devices::open_device(*arg, 0);
}

}  // namespace vfio::bench
