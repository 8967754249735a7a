// The kernel's migration state machine (vfio_mig_get_next_state): how a requested transition
// is walked one arc at a time, given the device's migration flags.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/uapi.h"

namespace vfio {

// Whether a device with these migration flags has this state at all.
bool state_supported(uapi::State s, std::uint64_t mig_flags);

// The next state on the way from `cur` to `target`, or nullopt when the kernel refuses the
// request (EINVAL): target ERROR, unsupported cur or target, SC->PC, SC->PCP, cur ERROR.
// cur == target yields cur.
std::optional<uapi::State> next_arc(uapi::State cur, uapi::State target, std::uint64_t mig_flags);

// Every state the walk passes through after `cur`, ending with `target`; empty when refused
// or when cur == target.
std::vector<uapi::State> transition_path(uapi::State cur, uapi::State target,
                                         std::uint64_t mig_flags);

// What an arc does to the data stream.
enum class ArcEffect { kNone, kOpensSave, kOpensResume, kEndsSave, kConsumesResume };
ArcEffect arc_effect(uapi::State from, uapi::State to);

}  // namespace vfio
