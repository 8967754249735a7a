// One device's saved payload in and out of a vfio-mig stream (docs/stream-format.md): what
// fuzz-resume takes from a save or a corpus file, and the reproducer streams it writes, which
// `vfio-mig load` replays.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace vfio::faults {

struct SavedPayload {
  std::string device_id;          // the header's id
  std::vector<std::byte> data;    // every DATA chunk of the device, in stream order
  std::vector<std::byte> config;  // the config section's blob (empty: saved with --no-config)
};

// Reads a whole one-device stream, held to the loader's grammar and checksums.
Result<SavedPayload> read_payload_stream(std::span<const std::byte> stream);

// A one-device stream that loads `p.data` (setup, one complete section of DATA chunks of at most
// `chunk` bytes, config, end), as a stop-copy save would have written it.
std::vector<std::byte> write_payload_stream(const SavedPayload& p, std::size_t chunk);

}  // namespace vfio::faults
