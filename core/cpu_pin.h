// Pinning a thread to a CPU, for measurements that must not depend on where the scheduler
// puts their threads (a pipe between two threads is up to 3x faster on one CPU than on two).
#pragma once

#include <sched.h>

#include <cstddef>
#include <vector>

namespace vfio {

// The first `count` CPUs the calling thread may run on, or nothing when it may use fewer.
std::vector<int> allowed_cpus(std::size_t count);

// While alive, the calling thread runs only on `cpu`; afterwards on the CPUs it had before.
// -1 leaves the thread where it is. A CPU the thread may not use is ignored.
class CpuPin {
 public:
  explicit CpuPin(int cpu);
  ~CpuPin();
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;

 private:
  cpu_set_t before_;
  bool pinned_ = false;
};

}  // namespace vfio
