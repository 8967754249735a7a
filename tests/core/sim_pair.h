// Test fixtures: simulated devices behind DirectDevice, ready for the engine.
#pragma once

#include <memory>

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

}  // namespace vfio::testing
