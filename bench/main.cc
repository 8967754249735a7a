// vfio_mig_bench: Google Benchmark's flags, plus --smoke for the tiny grid ctest runs.
#include <benchmark/benchmark.h>

#include <csignal>
#include <cstring>
#include <vector>

#include "bench/grid.h"

namespace vfio::bench {

Grid full_grid() {
  Grid g;
  for (int shift = 12; shift <= 26; ++shift) g.buffers.push_back(1ULL << shift);
  g.states = {16ULL << 20, 256ULL << 20, 1ULL << 30};
  g.transports = {"direct", "fuse"};
  g.profiles = {"mlx5", "plain"};
  g.baseline_bytes = 256ULL << 20;
  g.dirty_rates = {0, 64ULL << 20, 256ULL << 20, 1ULL << 30};
  g.downtime_state = 256ULL << 20;
  return g;
}

Grid smoke_grid() {
  Grid g;
  g.buffers = {4096, 1 << 20};
  g.states = {64 << 10};
  g.transports = {"direct", "fuse"};
  g.profiles = {"mlx5", "plain"};
  g.baseline_bytes = 1 << 20;
  g.dirty_rates = {16ULL << 20};
  g.downtime_state = 1 << 20;
  return g;
}

}  // namespace vfio::bench

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<char*> args;
  bool smoke = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0)
      smoke = true;
    else
      args.push_back(argv[i]);
  }
  auto grid = smoke ? vfio::bench::smoke_grid() : vfio::bench::full_grid();
  vfio::bench::register_transfer_benchmarks(grid);
  vfio::bench::register_baseline_benchmarks(grid);
  vfio::bench::register_ioctl_benchmarks(grid);
  vfio::bench::register_downtime_benchmarks(grid);
  vfio::bench::register_migrate_benchmarks(grid);
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
