// The ceilings the engine is measured against, in the same run: memcpy (memory), raw read()
// and write() loops on simulated data fds with no engine (transport), and a pipe and a socket
// pair between threads (bench/stages.h).
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "bench/stages.h"
#include "core/aligned_buffer.h"

namespace vfio::bench {
namespace {

// Copies `total` bytes out of a source as large as the total into one buffer-sized block:
// the cost of touching every byte of device state once.
void memcpy_bench(benchmark::State& state, std::uint64_t buffer, std::uint64_t total) {
  std::vector<std::byte> source(total, std::byte{1}), block(buffer);
  for (auto _ : state) {
    for (std::uint64_t off = 0; off < total; off += buffer) {
      auto n = std::min<std::uint64_t>(buffer, total - off);
      std::memcpy(block.data(), source.data() + off, n);
      benchmark::DoNotOptimize(block.data());
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * total));
}

// One stage pass per iteration; reports its throughput and data-fd calls per MiB.
template <class Pass>
void measure_passes(benchmark::State& state, Pass&& pass) {
  std::uint64_t bytes = 0, calls = 0;
  for (auto _ : state) {
    auto p = pass();
    if (!p) return state.SkipWithError(p.error().describe().c_str());
    bytes += p->bytes;
    calls += p->calls;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["calls_per_MiB"] =
      static_cast<double>(calls) / (static_cast<double>(bytes) / (1 << 20));
}

void raw_read(benchmark::State& state, std::string transport, std::uint64_t buffer,
              std::uint64_t total) {
  auto dev = make_device(transport, "plain", total, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  AlignedBuffer block(buffer);
  measure_passes(state, [&] { return read_stage(*dev->device, block.span()); });
}

// Writes a plain device's own stream, held in memory, into another plain device.
void raw_write(benchmark::State& state, std::string transport, std::uint64_t buffer,
               std::uint64_t total) {
  auto src = make_device("direct", "plain", total, 1);
  auto dst = make_device(transport, "plain", total, 2);
  if (!src || !dst) return state.SkipWithError((src ? dst : src).error().describe().c_str());
  AlignedBuffer block(buffer);
  std::vector<std::byte> data;
  if (auto r = read_stage(*src->device, block.span(), &data); !r)
    return state.SkipWithError(r.error().describe().c_str());
  measure_passes(state, [&] { return write_stage(*dst->device, data, buffer); });
}

void channel_bench(benchmark::State& state, ChannelKind kind, std::uint64_t buffer,
                   std::uint64_t total) {
  for (auto _ : state) {
    if (auto pass = channel_stage(kind, buffer, buffer, total); !pass)
      return state.SkipWithError(pass.error().describe().c_str());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * total));
}

}  // namespace

void register_baseline_benchmarks(const Grid& grid) {
  auto total = grid.baseline_bytes;
  for (auto buffer : grid.buffers) {
    benchmark::RegisterBenchmark(fmt::format("memcpy/buffer:{}", buffer).c_str(), memcpy_bench,
                                 buffer, total)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    for (auto [name, kind] :
         {std::pair{"pipe", ChannelKind::kPipe}, {"socket", ChannelKind::kSocket}})
      benchmark::RegisterBenchmark(fmt::format("{}/buffer:{}", name, buffer).c_str(), channel_bench,
                                   kind, buffer, total)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    for (const auto& transport : grid.transports) {
      benchmark::RegisterBenchmark(fmt::format("raw_read/{}/buffer:{}", transport, buffer).c_str(),
                                   raw_read, transport, buffer, total)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(fmt::format("raw_write/{}/buffer:{}", transport, buffer).c_str(),
                                   raw_write, transport, buffer, total)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace vfio::bench
