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
    uapi::FeatureHeader h;
    uapi::MigState mig;
    std::memcpy(&h, arg.data(), sizeof(h));
    if (arg.size() < sizeof(h) + sizeof(mig) || !(h.flags & uapi::kFeatureSet) ||
        (h.flags & uapi::kFeatureMask) !=
            static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState))
      return inner_->feature(arg);
    std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
    if (mig.device_state != value_) return inner_->feature(arg);
    mig.data_fd = -1;
    if (!accept_) mig.device_state &= 7;
    std::memcpy(arg.data() + sizeof(h), &mig, sizeof(mig));
    if (accept_) return {};
    return fail(EINVAL, "refused");
  }

 private:
  std::uint32_t value_;
  bool accept_;
};

std::map<std::string, std::string> failures_with(std::uint32_t value, bool accept) {
  return failures(check_spec(kSim, [=](std::unique_ptr<Device> d, bool) -> std::unique_ptr<Device> {
    return std::make_unique<MishandlesStateValue>(std::move(d), value, accept);
  }));
}

TEST(SetInvalid, WellBehavedDevicesPass) {
  for (const char* spec : {kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                           "sim:stopcopy,size=64K,transport=direct"}) {
    if (std::string(spec).find("fuse") != std::string::npos &&
        !devices::transport_available(devices::Transport::kFuse))
      continue;
    const auto got = verdicts(check_spec(spec), "set-invalid/");
    EXPECT_EQ(got.size(), 2u) << spec;
    for (const auto& [id, v] : got) EXPECT_EQ(v, Verdict::kPass) << spec << " " << id;
  }
}

TEST(SetInvalid, EachValueMishandledFailsExactlyItsCheck) {
  for (auto [value, id] : {std::pair{8u, "set-invalid/state-0x8"},
                           std::pair{0xffffffffu, "set-invalid/state-0xffffffff"}}) {
    auto failed = failures_with(value, true);
    EXPECT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
    ASSERT_TRUE(failed.contains(id)) << id << "\n" << describe(failed);
    EXPECT_NE(failed.at(id).find("expected EINVAL, got success"), std::string::npos);
    failed = failures_with(value, false);
    EXPECT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
    ASSERT_TRUE(failed.contains(id)) << id << "\n" << describe(failed);
    EXPECT_NE(failed.at(id).find("written back, expected the requested"), std::string::npos);
  }
}

}  // namespace
}  // namespace vfio::conform::testing
