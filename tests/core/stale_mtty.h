// Devices an earlier process left behind, as on a host running Linux 6.12 with mtty: the
// simulated mtty keeps its migration state across close and open (as mtty_close_device does),
// and hangs on SET STOP_COPY->PRE_COPY(_P2P) as the kernel does, counting every such arc.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "simdev/sim_mount.h"
#include "tests/core/sim_pair.h"

namespace vfio::testing {

inline std::shared_ptr<sim::SimDevice> linux_6_12_mtty(std::uint64_t seed) {
  sim::SimOptions o;
  o.seed = seed;
  o.keep_state = true;
  o.hang_stop_copy_to_precopy = true;
  return std::make_shared<sim::SimDevice>(*sim::find_profile("mtty"), o);
}

struct ServedSim {
  std::shared_ptr<sim::SimDevice> model;
  std::string path;  // the device file, opened as any kernel device path is
};

// A FUSE mount for one test, unmounted at the end; start() skips the test without FUSE.
class TestMount {
 public:
  void start() {
    if (auto ok = sim::SimMount::fuse_available(); !ok)
      GTEST_SKIP() << "FUSE unavailable: " << ok.error().describe();
    auto m = sim::SimMount::create();
    ASSERT_TRUE(m) << m.error().describe();
    mount_ = std::move(*m);
  }
  ~TestMount() {
    if (mount_) {
      EXPECT_TRUE(mount_->unmount());
    }
  }

  // A Linux 6.12 mtty served as `name`, left in `state` by an earlier user (unless RUNNING),
  // who closed it.
  ServedSim serve_stale(uapi::State state, std::uint64_t seed, const std::string& name) {
    auto model = linux_6_12_mtty(seed);
    auto path = mount_->add_device(model, name);
    EXPECT_TRUE(path) << path.error().describe();
    if (state != uapi::State::kRunning) {
      auto earlier = sim::SimMount::open_device(*path, "earlier process");
      EXPECT_TRUE(earlier) << earlier.error().describe();
      leave_in_state(**earlier, *model, state);
    }
    return {model, *path};
  }

  // Every request for `model` asks `fault` first (sim::SimMount::set_fault).
  void set_fault(const sim::SimDevice& model, sim::FuseFault fault) {
    mount_->set_fault(model, std::move(fault));
  }

 private:
  std::unique_ptr<sim::SimMount> mount_;
};

}  // namespace vfio::testing
