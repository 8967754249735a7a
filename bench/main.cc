// vfio_mig_bench: see bench/program.h.
#include <benchmark/benchmark.h>

#include "bench/program.h"

int main(int argc, char** argv) {
  const int code = vfio::bench::bench_main(argc, argv);
  benchmark::Shutdown();
  return code;
}
