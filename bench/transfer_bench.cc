// save (device -> stream) and load (stream -> device) through the engine, over buffer size,
// state size, transport and profile.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "core/session.h"

namespace vfio::bench {
namespace {

constexpr double kMiB = 1 << 20;

struct Point {
  std::string transport, profile;
  std::uint64_t state_size, buffer;
};

SessionOptions options_for(const Point& p) {
  SessionOptions o;
  o.migration.data_buffer_size = p.buffer;
  o.stream_buffer_size = p.buffer;
  return o;
}

void report(benchmark::State& state, std::uint64_t bytes, std::uint64_t calls) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  double mib = static_cast<double>(bytes) / kMiB;
  state.counters["calls_per_MiB"] = mib > 0 ? static_cast<double>(calls) / mib : 0;
}

void save(benchmark::State& state, Point p) {
  auto dev = make_device(p.transport, p.profile, p.state_size, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  CountingDevice counting(*dev->device);
  reset_peak_rss();
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    Session session(options_for(p));
    session.add_device(counting, "bench");
    NullChannel out;
    auto r = session.save(out);
    if (!r) return state.SkipWithError(r.error().describe().c_str());
    bytes += r->device_bytes;
    state.PauseTiming();
    (void)session.resume_vm();
    state.ResumeTiming();
  }
  report(state, bytes, counting.calls());
  // Only save reports memory: load holds its recorded input stream in memory.
  state.counters["peak_rss_MiB"] = static_cast<double>(peak_rss()) / kMiB;
}

void load(benchmark::State& state, Point p) {
  auto src = make_device("direct", p.profile, p.state_size, 1);
  auto dst = make_device(p.transport, p.profile, p.state_size, 2);
  if (!src || !dst) {
    return state.SkipWithError((src ? dst : src).error().describe().c_str());
  }
  MemoryChannel stream;
  {
    Session source(options_for(p));
    source.add_device(*src->device, "source");
    if (auto r = source.save(stream); !r) return state.SkipWithError(r.error().describe().c_str());
  }
  CountingDevice counting(*dst->device);
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    stream.rewind();
    Session destination(options_for(p));
    destination.add_device(counting, "bench");
    auto r = destination.load(stream);
    if (!r) return state.SkipWithError(r.error().describe().c_str());
    bytes += r->device_bytes;
  }
  report(state, bytes, counting.calls());
}

}  // namespace

void register_transfer_benchmarks(const Grid& grid) {
  for (const auto& transport : grid.transports) {
    for (const auto& profile : grid.profiles) {
      for (auto state_size : grid.states) {
        for (auto buffer : grid.buffers) {
          Point p{transport, profile, state_size, buffer};
          auto suffix =
              fmt::format("{}/{}/state:{}/buffer:{}", transport, profile, state_size, buffer);
          benchmark::RegisterBenchmark(("save/" + suffix).c_str(), save, p)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
          benchmark::RegisterBenchmark(("load/" + suffix).c_str(), load, p)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
}

}  // namespace vfio::bench
