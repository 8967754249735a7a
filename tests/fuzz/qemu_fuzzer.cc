// Fuzz target: arbitrary bytes through the QEMU stream reader (qemu_harness.h). Seeds:
// corpus/qemu/ (a real QEMU 10 stream and small built ones).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/qemu_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vfio::fuzz::enforce(vfio::fuzz::run_qemu({data, size}), "qemu_fuzzer");
  return 0;
}
