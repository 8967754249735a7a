// The cost of one ioctl round trip and of each state transition, per transport.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "core/feature.h"

namespace vfio::bench {
namespace {

using uapi::State;

void get_state(benchmark::State& state, std::string transport) {
  auto dev = make_device(transport, "plain", 4096, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  for (auto _ : state) {
    auto s = query_device_state(*dev->device);
    if (!s) return state.SkipWithError(s.error().describe().c_str());
    benchmark::DoNotOptimize(*s);
  }
}

// One iteration walks `from` -> `to` (timed) and back (untimed); a data fd the arc opens is
// closed untimed too.
void transition(benchmark::State& state, std::string transport, State from, State to) {
  auto dev = make_device(transport, "plain", 4096, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  Device& d = *dev->device;
  for (auto _ : state) {
    state.PauseTiming();
    auto back = request_device_state(d, from);
    if (back && *back != -1) (void)d.close(*back);
    state.ResumeTiming();
    auto fd = request_device_state(d, to);
    if (!fd) return state.SkipWithError(fd.error().describe().c_str());
    state.PauseTiming();
    if (*fd != -1) (void)d.close(*fd);
    state.ResumeTiming();
  }
}

}  // namespace

void register_ioctl_benchmarks(const Grid& grid) {
  constexpr std::pair<State, State> kArcs[] = {
      {State::kRunning, State::kStop},    {State::kStop, State::kRunning},
      {State::kStop, State::kStopCopy},   {State::kStopCopy, State::kStop},
      {State::kStop, State::kResuming},   {State::kRunning, State::kRunningP2p},
      {State::kRunning, State::kPreCopy}, {State::kPreCopy, State::kStopCopy},
  };
  for (const auto& transport : grid.transports) {
    benchmark::RegisterBenchmark(fmt::format("ioctl/{}/get_state", transport).c_str(), get_state,
                                 transport)
        ->UseRealTime();
    for (auto [from, to] : kArcs) {
      auto name = fmt::format("transition/{}/{}>{}", transport, uapi::state_short_name(from),
                              uapi::state_short_name(to));
      benchmark::RegisterBenchmark(name.c_str(), transition, transport, from, to)->UseRealTime();
    }
  }
}

}  // namespace vfio::bench
