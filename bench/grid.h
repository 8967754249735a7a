// Which sizes, transports and profiles the benchmarks run over. The full grid is the
// measurement; --smoke is a tiny grid that ctest runs once to prove every benchmark works.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vfio::bench {

struct Grid {
  std::vector<std::uint64_t> buffers;
  std::vector<std::uint64_t> states;
  std::vector<std::string> transports;
  std::vector<std::string> profiles;
  std::uint64_t baseline_bytes;  // bytes moved per iteration by the baselines
  // Downtime against dirty rate (bytes per second the guest writes), with and without pre-copy.
  std::vector<std::uint64_t> dirty_rates;
  std::uint64_t downtime_state = 0;
};

Grid full_grid();
Grid smoke_grid();

// Registers every benchmark of the grid with Google Benchmark.
void register_transfer_benchmarks(const Grid& grid);
void register_baseline_benchmarks(const Grid& grid);
void register_ioctl_benchmarks(const Grid& grid);
void register_downtime_benchmarks(const Grid& grid);
void register_migrate_benchmarks(const Grid& grid);  // bench/migrate_bench.h

}  // namespace vfio::bench
