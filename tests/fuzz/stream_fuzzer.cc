// Fuzz target: the whole incoming migration stream through Session::load (harness.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/harness.h"

#ifdef VFIO_MIG_LIBFUZZER
#include "tests/fuzz/libfuzzer_hooks.h"
VFIO_FUZZ_CUSTOM_MUTATOR(vfio::fuzz::Kind::kStream)
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
#ifdef VFIO_MIG_LIBFUZZER
  vfio::fuzz::AllocationLimit limit;
#endif
  vfio::fuzz::enforce(vfio::fuzz::run_stream({data, size}), "stream_fuzzer");
  return 0;
}
