// The engine tests reach the engine's error paths through faults/: a FaultDevice fails the calls
// a plan's rules name (docs/faults.md), and its injector's trace tells which calls the engine
// made.
#pragma once

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

#include "faults/fault_device.h"
#include "faults/injector.h"
#include "faults/plan.h"

namespace vfio::testing {

// `text` as a plan; a rule that does not parse fails the test.
inline faults::Plan plan(std::string_view text) {
  auto p = faults::parse_plan(text, "test plan");
  EXPECT_TRUE(p) << p.error().message;
  return p ? *p : faults::Plan{};
}

// The states the trace's SETs of MIG_DEVICE_STATE requested, in order.
inline std::vector<uapi::State> requested_states(const std::vector<faults::TraceEntry>& trace) {
  std::vector<uapi::State> out;
  for (const auto& e : trace)
    if (e.target) out.push_back(*e.target);
  return out;
}

// `inner` behind a FaultDevice under `rules`, its own injector recording every call.
struct FaultyDevice {
  explicit FaultyDevice(Device& inner, std::string_view rules = "",
                        faults::Side side = faults::Side::kSource)
      : side(side), injector(plan(rules)), device(inner, injector, side) {
    injector.set_recording(true);
  }

  // Calls of `op` that reached the decorator, failed ones included.
  std::uint64_t count(faults::Op op) const { return injector.count(side, op); }
  std::vector<uapi::State> requested_states() const {
    return testing::requested_states(injector.trace());
  }

  faults::Side side;
  faults::Injector injector;
  faults::FaultDevice device;
};

}  // namespace vfio::testing
