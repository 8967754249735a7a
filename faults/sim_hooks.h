// ModelHooks for a simulated device: land= and async-reset act on the SimDevice directly.
#pragma once

#include <memory>

#include "faults/fault_device.h"
#include "simdev/sim_device.h"

namespace vfio::faults {

class SimHooks final : public ModelHooks {
 public:
  explicit SimHooks(std::shared_ptr<sim::SimDevice> model) : model_(std::move(model)) {}
  void force_state(uapi::State state) override { model_->force_state(state); }
  // The reset the engine did not ask for: the data fds it holds go stale.
  void async_reset() override { (void)model_->reset(); }

 private:
  std::shared_ptr<sim::SimDevice> model_;
};

}  // namespace vfio::faults
