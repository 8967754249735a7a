// Downtime against the guest's dirty rate, with and without pre-copy: a whole migration of one
// device through migrate's socket pair, measuring what is left for the VM-stopped phase (time
// from stopping the VM to the end of the stream, and the device bytes sent then).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "core/local_migration.h"
#include "devices/device_spec.h"

namespace vfio::bench {
namespace {

struct Point {
  std::string profile;
  std::uint64_t state_size, dirty_rate;
  bool precopy;
};

Result<devices::OpenedDevice> device(const Point& p, std::uint64_t seed, std::uint64_t dirty) {
  auto arg = devices::parse_device_arg(fmt::format(
      "sim:{},size={},seed={},dirty={},transport=direct", p.profile, p.state_size, seed, dirty));
  if (!arg) return std::unexpected(arg.error());
  return devices::open_device(*arg, 0);
}

void downtime(benchmark::State& state, Point p) {
  double stop_ms = 0, stop_bytes = 0, iterations = 0;
  std::uint64_t runs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto src = device(p, 1, p.dirty_rate);
    auto dst = device(p, 2, 0);
    if (!src || !dst) return state.SkipWithError((src ? dst : src).error().describe().c_str());
    SwitchoverGate gate;
    SessionOptions o;
    o.migration.precopy = p.precopy;
    o.switchover_gate = p.precopy ? &gate : nullptr;  // all initial data before the stop
    o.downtime_limit = std::chrono::milliseconds(10);
    o.max_iterations = 2000;
    Session source(o), destination(o);
    source.add_device(*src->device, "src");
    destination.add_device(*dst->device, "dst");
    state.ResumeTiming();
    auto r = migrate_locally(source, destination);
    if (!r) return state.SkipWithError(r.error().describe().c_str());
    if (dst->model->image() != src->model->image())
      return state.SkipWithError("destination differs from the source");
    stop_ms += std::chrono::duration<double, std::milli>(r->source.downtime).count();
    stop_bytes += static_cast<double>(r->source.stop_copy_bytes);
    iterations += static_cast<double>(r->source.precopy_iterations);
    ++runs;
  }
  const double n = runs ? static_cast<double>(runs) : 1;
  state.counters["downtime_ms"] = stop_ms / n;
  state.counters["stop_copy_MiB"] = stop_bytes / n / (1 << 20);
  state.counters["iterations"] = iterations / n;
}

}  // namespace

void register_downtime_benchmarks(const Grid& grid) {
  for (auto rate : grid.dirty_rates) {
    for (bool precopy : {false, true}) {
      Point p{"plain", grid.downtime_state, rate, precopy};
      auto name = fmt::format("downtime/{}/state:{}/dirty:{}", precopy ? "precopy" : "stopcopy",
                              p.state_size, rate);
      benchmark::RegisterBenchmark(name.c_str(), downtime, p)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace vfio::bench
