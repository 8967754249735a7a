#include "core/cpu_pin.h"

#include <pthread.h>

namespace vfio {

std::vector<int> allowed_cpus(std::size_t count) {
  cpu_set_t set;
  std::vector<int> cpus;
  if (::pthread_getaffinity_np(::pthread_self(), sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < count; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  if (cpus.size() < count) cpus.clear();
  return cpus;
}

CpuPin::CpuPin(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return;
  if (::pthread_getaffinity_np(::pthread_self(), sizeof(before_), &before_) != 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pinned_ = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set) == 0;
}

CpuPin::~CpuPin() {
  if (pinned_) (void)::pthread_setaffinity_np(::pthread_self(), sizeof(before_), &before_);
}

}  // namespace vfio
