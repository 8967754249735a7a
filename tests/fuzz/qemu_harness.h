// What one fuzz input does to the QEMU stream reader (qemu/qemu_stream.h), shared by
// qemu_fuzzer and the corpus replay test.
#pragma once

#include <cstdint>
#include <span>

#include "tests/fuzz/harness.h"

namespace vfio::fuzz {

// qemu::walk over the input, then vfio_state for every VFIO device it lists, with the reader's
// promises as oracles: every range it reports (sections, payloads, tags, DATA chunks, config)
// lies inside the input, in order and without overlap; an accepted stream's sections tile the
// input from the header to the end of the VM description; a refusal has a message and an
// offset inside the input; vfio_state takes every device vfio_devices names, unless its idstr
// appears under two instance ids (refused as such).
Outcome run_qemu(std::span<const std::uint8_t> input);

}  // namespace vfio::fuzz
