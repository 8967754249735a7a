// The ceilings the engine is measured against, in the same run: memcpy (memory), a raw
// read() loop on a simulated data fd with no engine (transport), and a pipe between threads.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "core/channel.h"
#include "core/feature.h"

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

void raw_read(benchmark::State& state, std::string transport, std::uint64_t buffer,
              std::uint64_t total) {
  auto dev = make_device(transport, "plain", total, 1);
  if (!dev) return state.SkipWithError(dev.error().describe().c_str());
  Device& d = *dev->device;
  std::vector<std::byte> block(buffer);
  std::uint64_t bytes = 0, calls = 0;
  for (auto _ : state) {
    if (auto s = request_device_state(d, uapi::State::kStop); !s)
      return state.SkipWithError(s.error().describe().c_str());
    auto fd = request_device_state(d, uapi::State::kStopCopy);
    if (!fd) return state.SkipWithError(fd.error().describe().c_str());
    for (;;) {
      auto n = d.read(*fd, block);
      ++calls;
      if (!n) return state.SkipWithError(n.error().describe().c_str());
      if (*n == 0) break;
      bytes += *n;
    }
    (void)d.close(*fd);
    (void)request_device_state(d, uapi::State::kRunning);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["calls_per_MiB"] =
      static_cast<double>(calls) / (static_cast<double>(bytes) / (1 << 20));
}

void pipe_bench(benchmark::State& state, std::uint64_t buffer, std::uint64_t total) {
  std::vector<std::byte> out(buffer, std::byte{7}), in(buffer);
  for (auto _ : state) {
    auto pipe = make_pipe_channel();
    if (!pipe) return state.SkipWithError(pipe.error().describe().c_str());
    auto& [reader, writer] = *pipe;
    std::thread producer([&] {
      for (std::uint64_t sent = 0; sent < total;) {
        auto chunk =
            std::span<const std::byte>(out).first(std::min<std::uint64_t>(buffer, total - sent));
        while (!chunk.empty()) {
          auto n = writer.write(chunk);
          if (!n) return;
          chunk = chunk.subspan(*n);
          sent += *n;
        }
      }
      writer.close();
    });
    while (true) {
      auto n = reader.read(in);
      if (!n || *n == 0) break;
    }
    producer.join();
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
    benchmark::RegisterBenchmark(fmt::format("pipe/buffer:{}", buffer).c_str(), pipe_bench, buffer,
                                 total)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    for (const auto& transport : grid.transports) {
      benchmark::RegisterBenchmark(fmt::format("raw_read/{}/buffer:{}", transport, buffer).c_str(),
                                   raw_read, transport, buffer, total)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace vfio::bench
