// Fuzz target: one device's section payloads through Migration::load_state, then the
// device's own validation at RESUMING -> STOP (harness.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/harness.h"

#ifdef VFIO_MIG_LIBFUZZER
#include "tests/fuzz/libfuzzer_hooks.h"
VFIO_FUZZ_CUSTOM_MUTATOR(vfio::fuzz::Kind::kSection)
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
#ifdef VFIO_MIG_LIBFUZZER
  vfio::fuzz::AllocationLimit limit;
#endif
  vfio::fuzz::enforce(vfio::fuzz::run_section({data, size}), "section_fuzzer");
  return 0;
}
