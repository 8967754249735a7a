// The end-to-end migrate benchmark: a source and a destination Session joined by a socket
// pair (core/local_migration, the path of `vfio-mig migrate`), with the ceilings of its stages
// (bench/stages.h) measured on the same devices between its iterations. Its devices come from
// a factory, so any pair can be measured: the simulated grid here, named devices elsewhere.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/local_migration.h"
#include "devices/device_spec.h"

namespace benchmark {
class State;
}

namespace vfio::bench {

struct MigratePair {
  devices::OpenedDevice source, destination;
};
// Opens both devices, RUNNING; called once per benchmark, which leaves them RUNNING. `where`
// is where each side will run: a simulated device's server can be placed with its side.
using PairFactory = std::function<Result<MigratePair>(ThreadPlacement where)>;

// Registers "migrate/<name>/buffer:<buffer>": the options of `vfio-mig migrate --buffer-size
// <buffer>` (pre-copy auto, config state), its source and destination pinned on two CPUs where
// the process may use two (pinned_cpus). Reports bytes_per_second, and as counters each
// stage's ceiling in GiB/s (read_GiBps, socket_GiBps with the socket's threads placed as
// migrate's sides, write_GiBps), the slowest of them (ceiling_GiBps, named in the label) and
// of_ceiling: migrate's share of it; the socket on one CPU for comparison (socket_one_cpu_GiBps,
// of_socket_one_cpu); chain_GiBps, each side's stage and its half of the socket one after the
// other.
// The stages overlap only where there are CPUs to spare; serial_GiBps is the rate with none (each
// byte costs the sum of the stages' times) and of_serial migrate's share of that. Each stage's CPU
// time (all threads of the process, FUSE servers included) gives cpu_bound_GiBps: the stages' CPU
// work spread over the `cpus` this process may use, a bound however well they overlap; of_cpu_bound
// is migrate's share of it and cpu_of_stages migrate's CPU per byte over the stages' sum.
// `after`, when given, runs at the end of each run of the benchmark, failed or not (the named
// devices' check that both are RUNNING).
using AfterMigrate = std::function<void(benchmark::State&)>;
void register_migrate_benchmark(const std::string& name, PairFactory open, std::uint64_t buffer,
                                AfterMigrate after = {});

}  // namespace vfio::bench
