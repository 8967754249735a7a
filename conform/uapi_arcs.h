// The arcs a MIG_DEVICE_STATE SET must take, written from the uAPI text
// (shared/docs/vfio-migration-uapi.md, "The state machine"), apart from core/state_machine: the
// engine and the simulator walk that one, so conform needs its own for a wrong cell to show up
// (tests/conform/uapi_arcs_test.cc compares the two for every flag combination).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/uapi.h"

namespace vfio::conform {

// Whether a device advertising these migration flags has state `s` (RUNNING and ERROR always).
bool uapi_has_state(uapi::State s, std::uint64_t mig_flags);

// The states a SET from `cur` to `target` passes through, ending with `target` (empty when
// cur == target); nullopt when the SET must be refused with EINVAL.
std::optional<std::vector<uapi::State>> uapi_path(uapi::State cur, uapi::State target,
                                                  std::uint64_t mig_flags);

// What the arc `from` -> `to` opens when it is the last of a SET: a save session, a resume
// session (the SET returns a new data fd), or nothing (data_fd -1).
enum class Opens { kNothing, kSave, kResume };
Opens uapi_opens(uapi::State from, uapi::State to);

}  // namespace vfio::conform
