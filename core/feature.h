// Typed wrappers around Device::feature for the features the engine uses.
#pragma once

#include <cstdint>

#include "core/device.h"

namespace vfio {

// GET MIGRATION: the device's migration flags (STOP_COPY | P2P | PRE_COPY).
Result<std::uint64_t> query_migration_flags(Device& dev);

// GET MIG_DEVICE_STATE.
Result<uapi::State> query_device_state(Device& dev);

// SET MIG_DEVICE_STATE. Returns the data fd the transition produced, or -1.
Result<int> request_device_state(Device& dev, uapi::State state);

// GET MIG_DATA_SIZE: the device's estimate of the STOP_COPY stream length.
Result<std::uint64_t> query_stop_copy_size(Device& dev);

// PROBE a feature for GET and/or SET (`direction` is kFeatureGet, kFeatureSet or both).
bool probe_feature(Device& dev, uapi::Feature feature, std::uint32_t direction);

}  // namespace vfio
