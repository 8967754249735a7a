// Allocation accounting for the replay test: this test binary replaces the global operator
// new/delete so that one input's largest allocation and peak heap growth can be checked
// against the bound in harness.h. Counts what goes through operator new (the project, fmt's
// and the standard library's containers) and aligned_alloc (data buffers); plain malloc
// calls are not seen.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vfio::fuzz {

struct AllocationStats {
  std::size_t largest = 0;       // the largest single request
  std::int64_t peak_growth = 0;  // the highest live heap above the level at start()
  std::size_t count = 0;
  std::size_t aligned = 0;   // of `count`, from aligned_alloc: their frees are not seen
  std::size_t released = 0;  // operator delete calls, of blocks from before the start too
};

class AllocationCounter {
 public:
  AllocationCounter();  // starts counting; one counter at a time
  ~AllocationCounter();
  AllocationStats stats() const;
};

}  // namespace vfio::fuzz
