// vfio_mig_bench's program: Google Benchmark's flags, plus --smoke for the tiny grid ctest runs,
// and --device=SPEC (up to two) for the sweep on named devices instead of the simulated grid.
#include "bench/program.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <charconv>
#include <csignal>
#include <string_view>
#include <vector>

#include "bench/bench_support.h"
#include "bench/device_bench.h"
#include "bench/grid.h"

namespace vfio::bench {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Options {
  bool smoke = false;
  std::vector<std::string> devices;
  std::chrono::milliseconds call_timeout{60'000};
};

// Google Benchmark 1.7.1 frees its static display reporter when it made it itself, so a second
// run in the process (the tests') would use it freed; handed in, it is kept.
void run_benchmarks() {
  benchmark::RunSpecifiedBenchmarks(benchmark::CreateDefaultDisplayReporter());
}

int usage(std::string_view why) {
  fmt::print(stderr,
             "vfio_mig_bench: {}\n"
             "usage: vfio_mig_bench [--smoke] [Google Benchmark flags]\n"
             "       vfio_mig_bench --device=SPEC [--device=SPEC] [--call_timeout=SECONDS] "
             "[Google Benchmark flags]\n",
             why);
  return kExitUsage;
}

// The run on opened devices: refused unless each is RUNNING; each is RUNNING after, or the run
// fails saying which is not.
int run_checked(std::vector<NamedDevice>& devices) {
  for (auto& d : devices) {
    if (auto ok = expect_running(*d.watched, "before the benchmark"); !ok) {
      fmt::print(stderr, "vfio_mig_bench: {}\n", ok.error().describe());
      return kExitUsage;
    }
  }
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
    run_benchmarks();
  }
  for (auto& d : devices) {
    if (d.failed) {
      fmt::print(stderr, "vfio_mig_bench: FAILED: a benchmark on {} failed (its error is above)\n",
                 d.arg.text);
      code = kExitFailed;
    }
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

// The sweep on named devices, every call into them watched for a kernel hang.
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
  return run_watching_devices(watched, o.call_timeout, [&] { return run_checked(devices); });
}

}  // namespace

int bench_main(int argc, char** argv) {
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
  if (o.smoke && !o.devices.empty())
    return usage("--smoke is the simulated grid; not with --device");
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return kExitUsage;
  int code = 0;
  benchmark::ClearRegisteredBenchmarks();
  if (!o.devices.empty()) {
    code = run_on_devices(o);
  } else {
    auto grid = o.smoke ? smoke_grid() : full_grid();
    register_transfer_benchmarks(grid);
    register_baseline_benchmarks(grid);
    register_ioctl_benchmarks(grid);
    register_downtime_benchmarks(grid);
    register_migrate_benchmarks(grid);
    run_benchmarks();
  }
  return code;
}

}  // namespace vfio::bench
