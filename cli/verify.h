// Byte-for-byte comparison of two devices' migratable state, through the devices themselves:
// both are moved to STOP_COPY and their streams are read and compared in lockstep.
#pragma once

#include <cstdint>

#include "core/config_restore.h"
#include "core/device.h"

namespace vfio::cli {

struct Comparison {
  bool equal = false;
  std::uint64_t bytes_compared = 0;
  std::uint64_t first_difference = 0;  // offset, when !equal
  bool config_equal = false;  // on what restoring a's config into b under `restore` carries
};

// Leaves each device in the state it was found in (STOP or RUNNING).
Result<Comparison> compare_device_states(Device& a, Device& b, std::uint32_t config_size = 256,
                                         ConfigRestore restore = ConfigRestore::kExact);

}  // namespace vfio::cli
