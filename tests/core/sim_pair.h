// Test fixtures: simulated devices behind DirectDevice, ready for the engine.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "core/feature.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"

namespace vfio::testing {

struct SimHandle {
  std::shared_ptr<sim::SimDevice> model;
  std::unique_ptr<sim::DirectDevice> device;
};

// `size` of nullopt takes the profile's default.
inline SimHandle make_sim(std::string_view profile, std::optional<std::uint64_t> size,
                          std::uint64_t seed) {
  sim::SimOptions options;
  options.state_size = size;
  options.seed = seed;
  auto model = std::make_shared<sim::SimDevice>(*sim::find_profile(profile), options);
  auto device =
      std::make_unique<sim::DirectDevice>(model, std::string(profile) + "#" + std::to_string(seed));
  return {model, std::move(device)};
}

// Leaves `dev` in `state` as an earlier process would: requested through the uAPI from
// RUNNING, the data fd it got closed. ERROR, which no request reaches, is forced on the model
// (as a failing arc leaves a device).
inline void leave_in_state(Device& dev, sim::SimDevice& model, uapi::State state) {
  if (state == uapi::State::kError) return model.force_state(state);
  auto fd = request_device_state(dev, state);
  ASSERT_TRUE(fd) << fd.error().describe();
  if (*fd != -1) {
    ASSERT_TRUE(dev.close(*fd));
  }
  ASSERT_EQ(model.state(), state);
}

}  // namespace vfio::testing
