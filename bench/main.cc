// vfio_mig_bench: Google Benchmark's flags, plus --smoke for the tiny grid ctest runs, and
// --device=SPEC (up to two) for the sweep on named devices instead of the simulated grid.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <charconv>
#include <csignal>
#include <cstring>
#include <string_view>
#include <vector>

#include "bench/bench_support.h"
#include "bench/device_bench.h"
#include "bench/grid.h"

namespace vfio::bench {

Grid full_grid() {
  Grid g;
  for (int shift = 12; shift <= 26; ++shift) g.buffers.push_back(1ULL << shift);
  g.states = {16ULL << 20, 256ULL << 20, 1ULL << 30};
  g.transports = {"direct", "fuse"};
  g.profiles = {"mlx5", "plain"};
  g.baseline_bytes = 256ULL << 20;
  g.dirty_rates = {0, 64ULL << 20, 256ULL << 20, 1ULL << 30};
  g.downtime_state = 256ULL << 20;
  return g;
}

Grid smoke_grid() {
  Grid g;
  g.buffers = {4096, 1 << 20};
  g.states = {64 << 10};
  g.transports = {"direct", "fuse"};
  g.profiles = {"mlx5", "plain"};
  g.baseline_bytes = 1 << 20;
  g.dirty_rates = {16ULL << 20};
  g.downtime_state = 1 << 20;
  return g;
}

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Options {
  bool smoke = false;
  std::vector<std::string> devices;
  std::chrono::milliseconds call_timeout{60'000};
};

int usage(std::string_view why) {
  fmt::print(stderr,
             "vfio_mig_bench: {}\n"
             "usage: vfio_mig_bench [--smoke] [Google Benchmark flags]\n"
             "       vfio_mig_bench --device=SPEC [--device=SPEC] [--call_timeout=SECONDS] "
             "[Google Benchmark flags]\n",
             why);
  return kExitUsage;
}

// The sweep on named devices: refused unless each is RUNNING; each is RUNNING after, or the
// run fails saying which is not.
int run_on_devices(const Options& o) {
  std::vector<NamedDevice> devices;
  for (const auto& spec : o.devices) {
    auto dev = open_named_device(spec, devices.size());
    if (!dev) {
      fmt::print(stderr, "vfio_mig_bench: {}\n", dev.error().describe());
      return kExitUsage;
    }
    devices.push_back(std::move(*dev));
  }
  std::vector<WatchedDevice*> watched;
  for (auto& d : devices) watched.push_back(d.watched.get());
  CallWatchdog watchdog(watched, o.call_timeout);
  stop_on_signals();
  int code = 0;
  for (auto& d : devices) {
    if (auto r = measure_state(d); !r) {
      fmt::print(stderr, "vfio_mig_bench: FAILED: {}: a save to learn its state size: {}\n",
                 d.arg.text, r.error().describe());
      code = kExitFailed;
    }
  }
  if (code == 0) {
    register_device_benchmarks(devices);
    benchmark::RunSpecifiedBenchmarks();
  }
  for (auto& d : devices) {
    if (auto ok = expect_running(*d.watched, "after the run"); !ok) {
      fmt::print(stderr, "vfio_mig_bench: FAILED: {}\n", ok.error().describe());
      code = kExitFailed;
    }
  }
  if (stop_requested()) {
    fmt::print(stderr, "vfio_mig_bench: interrupted\n");
    code = kExitFailed;
  }
  return code;
}

}  // namespace
}  // namespace vfio::bench

int main(int argc, char** argv) {
  using namespace vfio::bench;
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<char*> args;
  Options o;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--smoke") {
      o.smoke = true;
    } else if (a.starts_with("--device=")) {
      o.devices.emplace_back(a.substr(9));
    } else if (a == "--device" && i + 1 < argc) {
      o.devices.emplace_back(argv[++i]);
    } else if (a.starts_with("--call_timeout=")) {
      double seconds = 0;
      auto v = a.substr(15);
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
      if (ec != std::errc() || end != v.data() + v.size() || !(seconds > 0))
        return usage(fmt::format("bad --call_timeout '{}' (seconds, e.g. 60)", v));
      o.call_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    } else {
      args.push_back(argv[i]);
    }
  }
  if (o.devices.size() > 2) return usage("at most two --device");
  if (o.smoke && !o.devices.empty()) return usage("--smoke is the simulated grid; not with --device");
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 2;
  int code = 0;
  if (!o.devices.empty()) {
    code = run_on_devices(o);
  } else {
    auto grid = o.smoke ? smoke_grid() : full_grid();
    register_transfer_benchmarks(grid);
    register_baseline_benchmarks(grid);
    register_ioctl_benchmarks(grid);
    register_downtime_benchmarks(grid);
    register_migrate_benchmarks(grid);
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return code;
}
