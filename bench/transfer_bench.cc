// save (device -> stream) and load (stream -> device) through the engine on simulated devices,
// over buffer size, state size, transport and profile.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "bench/transfer.h"
#include "core/session.h"

namespace vfio::bench {
namespace {

constexpr double kMiB = 1 << 20;

SessionOptions options_for(std::uint64_t buffer) {
  SessionOptions o;
  o.migration.data_buffer_size = buffer;
  o.stream_buffer_size = buffer;
  return o;
}

void report(benchmark::State& state, std::uint64_t bytes, std::uint64_t calls) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  double mib = static_cast<double>(bytes) / kMiB;
  state.counters["calls_per_MiB"] = mib > 0 ? static_cast<double>(calls) / mib : 0;
}

struct Point {
  std::string transport, profile;
  std::uint64_t state_size, buffer;
};

void save(benchmark::State& state, Point p) {
  auto dev = make_device(p.transport, p.profile, p.state_size, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  measure_save(state, *dev->device, p.buffer);
}

void load(benchmark::State& state, Point p) {
  auto src = make_device("direct", p.profile, p.state_size, 1);
  auto dst = make_device(p.transport, p.profile, p.state_size, 2);
  if (!src || !dst) {
    return state.SkipWithError((src ? dst : src).error().describe().c_str());
  }
  MemoryChannel stream;
  if (auto r = record_stream(*src->device, p.buffer, stream); !r)
    return state.SkipWithError(r.error().describe().c_str());
  measure_load(state, *dst->device, dst->config_restore, stream, p.buffer);
}

}  // namespace

void measure_save(benchmark::State& state, Device& dev, std::uint64_t buffer) {
  CountingDevice counting(dev);
  reset_peak_rss();
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    if (stop_requested()) return state.SkipWithError("interrupted");
    Session session(options_for(buffer));
    session.add_device(counting, "bench");
    NullChannel out;
    auto r = session.save(out);
    if (!r) return state.SkipWithError(r.error().describe().c_str());
    bytes += r->device_bytes;
    state.PauseTiming();
    auto resumed = session.resume_vm();
    state.ResumeTiming();
    if (!resumed) return state.SkipWithError(resumed.error().describe().c_str());
  }
  report(state, bytes, counting.calls());
  // Only save reports memory: load holds its recorded input stream in memory.
  state.counters["peak_rss_MiB"] = static_cast<double>(peak_rss()) / kMiB;
}

void measure_load(benchmark::State& state, Device& dev, ConfigRestore restore,
                  MemoryChannel& stream, std::uint64_t buffer) {
  auto load_once = [&](Device& into) -> Result<std::uint64_t> {
    stream.rewind();
    Session destination(options_for(buffer));
    destination.add_device(into, "bench", restore);
    auto r = destination.load(stream);
    if (!r) return std::unexpected(r.error());
    return r->device_bytes;
  };
  // The first load into a fresh device faults its state's memory in (256 MiB of a simulated
  // device: 0.39 s cold, 0.034 s warm): untimed and uncounted, so that every iteration measures
  // a load.
  if (auto warm = load_once(dev); !warm)
    return state.SkipWithError(warm.error().describe().c_str());
  CountingDevice counting(dev);
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    if (stop_requested()) return state.SkipWithError("interrupted");
    auto r = load_once(counting);
    if (!r) return state.SkipWithError(r.error().describe().c_str());
    bytes += *r;
  }
  report(state, bytes, counting.calls());
}

Result<> record_stream(Device& dev, std::uint64_t buffer, MemoryChannel& out) {
  Session source(options_for(buffer));
  source.add_device(dev, "source");
  if (auto r = source.save(out); !r) return std::unexpected(r.error());
  return source.resume_vm();
}

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
