// conform's set-invalid group: SET MIG_DEVICE_STATE of 8 and 0xffffffff; each misbehaving device
// mishandles one value.
#include <gtest/gtest.h>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

constexpr const char* kSim = "sim:mlx5,size=64K,transport=direct";

// Broken, for SETs of `value`: `accept` takes it (leaving the device where it was); otherwise
// it is refused but the state is written back masked to its low 3 bits (a table index).
class MishandlesStateValue : public Decorator {
 public:
  MishandlesStateValue(std::unique_ptr<Device> inner, std::uint32_t value, bool accept)
      : Decorator(std::move(inner)), value_(value), accept_(accept) {}
  Result<> feature(std::span<std::byte> arg) override {
    auto mig = set_state_arg(arg);
    if (!mig || mig->device_state != value_) return inner_->feature(arg);
    mig->data_fd = -1;
    if (!accept_) mig->device_state &= 7;
    std::memcpy(arg.data() + sizeof(uapi::FeatureHeader), &*mig, sizeof(*mig));
    if (accept_) return {};
    return fail(EINVAL, "refused");
  }

 private:
  std::uint32_t value_;
  bool accept_;
};

TEST(SetInvalid, WellBehavedDevicesPass) {
  static constexpr std::array kIds = {"set-invalid/state-0x8", "set-invalid/state-0xffffffff"};
  expect_verdicts({kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                   "sim:stopcopy,size=64K,transport=direct"},
                  "set-invalid/", kIds);
}

TEST(SetInvalid, EachValueMishandledFailsExactlyItsCheck) {
  for (auto [value, id] : {std::pair{8u, "set-invalid/state-0x8"},
                           std::pair{0xffffffffu, "set-invalid/state-0xffffffff"}}) {
    EXPECT_NE(only_failure(check_broken<MishandlesStateValue>(kSim, value, true), id)
                  .find("expected EINVAL, got success"),
              std::string::npos)
        << id;
    EXPECT_NE(only_failure(check_broken<MishandlesStateValue>(kSim, value, false), id)
                  .find("written back, expected the requested"),
              std::string::npos)
        << id;
  }
}

}  // namespace
}  // namespace vfio::conform::testing
