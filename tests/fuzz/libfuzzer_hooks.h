// The structure-aware half of the libFuzzer targets: a custom mutator that, half the time,
// edits the parsed stream (stream_model.h) and re-serialises it with valid checksums, and
// otherwise lets libFuzzer's byte-level mutator loose, so framing-breaking inputs stay
// reachable. Only compiled into libFuzzer builds (LLVMFuzzerMutate is libFuzzer's).
#pragma once

#include <sanitizer/allocator_interface.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/harness.h"
#include "tests/fuzz/stream_model.h"

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

namespace vfio::fuzz {

inline std::size_t custom_mutate(Kind kind, std::uint8_t* data, std::size_t size,
                                 std::size_t max_size, unsigned int seed) {
  if (seed % 2 == 0) {
    std::size_t n = mutate_structured(kind, data, size, max_size, seed / 2, LLVMFuzzerMutate);
    if (n != 0) return n;
  }
  return LLVMFuzzerMutate(data, size, max_size);
}

// The allocation bound (harness.h), checked on every malloc while the loader runs. Not
// libFuzzer's -malloc_limit_mb: that also counts the fuzzer's and the mutator's own buffers,
// which grow with the corpus, and it has only MiB granularity.
inline std::atomic<bool> loading{false};

inline void check_allocation(const volatile void*, std::size_t size) {
  if (!loading.load(std::memory_order_relaxed) || size < kMaxSingleAllocation) return;
  loading = false;  // fprintf may allocate
  std::fprintf(stderr, "oracle violated: a %zu-byte allocation while loading (bound %zu)\n", size,
               kMaxSingleAllocation);
  std::abort();
}
inline void ignore_free(const volatile void*) {}

class AllocationLimit {
 public:
  AllocationLimit() {
    static bool installed =
        __sanitizer_install_malloc_and_free_hooks(check_allocation, ignore_free) != 0;
    (void)installed;
    loading = true;
  }
  ~AllocationLimit() { loading = false; }
};

inline std::size_t custom_cross_over(Kind kind, const std::uint8_t* a, std::size_t a_size,
                                     const std::uint8_t* b, std::size_t b_size, std::uint8_t* out,
                                     std::size_t max_size, unsigned int seed) {
  return cross_over(kind, {a, a_size}, {b, b_size}, out, max_size, seed);
}

}  // namespace vfio::fuzz

// Defines the libFuzzer hooks for one target.
#define VFIO_FUZZ_CUSTOM_MUTATOR(kind)                                                      \
  extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size,      \
                                                 std::size_t max_size, unsigned int seed) { \
    return vfio::fuzz::custom_mutate(kind, data, size, max_size, seed);                     \
  }                                                                                         \
  extern "C" std::size_t LLVMFuzzerCustomCrossOver(                                         \
      const std::uint8_t* a, std::size_t a_size, const std::uint8_t* b, std::size_t b_size, \
      std::uint8_t* out, std::size_t max_size, unsigned int seed) {                         \
    return vfio::fuzz::custom_cross_over(kind, a, a_size, b, b_size, out, max_size, seed);  \
  }
