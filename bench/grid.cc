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
