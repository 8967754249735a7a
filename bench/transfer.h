// The save and load measurements, on any device: the simulated grid (transfer_bench.cc) and
// devices named on the command line (device_bench.cc) run the same code.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

#include "core/channel.h"
#include "core/config_restore.h"
#include "core/device.h"

namespace vfio::bench {

// The engine's save of `dev` into a discarding stream with `buffer`-sized reads, the device
// resumed (untimed) after each. Bytes per second, calls_per_MiB and peak_rss_MiB.
void measure_save(benchmark::State& state, Device& dev, std::uint64_t buffer);

// `stream` loaded into `dev` with `buffer`-sized writes (the device runs again after each), its
// CONFIG section restored as `dev` takes one (a real device: only the registers a VMM restores).
// Bytes per second and calls_per_MiB.
void measure_load(benchmark::State& state, Device& dev, ConfigRestore restore,
                  MemoryChannel& stream, std::uint64_t buffer);

// `dev` saved into `out` with `buffer`-sized reads, then resumed: the stream a load replays.
Result<> record_stream(Device& dev, std::uint64_t buffer, MemoryChannel& out);

}  // namespace vfio::bench
