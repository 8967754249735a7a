// conform's size-estimate group: MIG_DATA_SIZE in the states before STOP_COPY against the figure
// STOP_COPY gives right after; each misbehaving device is wrong in one state.
#include <gtest/gtest.h>

#include "core/feature.h"
#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

using uapi::State;

constexpr const char* kSim = "sim:mlx5,size=64K,transport=direct";
constexpr std::array kStates = {State::kStop, State::kRunning, State::kRunningP2p, State::kPreCopy,
                                State::kPreCopyP2p};

std::string id_of(State s) {
  return "size-estimate/in-" + std::string(uapi::state_short_name(s));
}

// Broken: in `state` MIG_DATA_SIZE answers `scale` times the truth (0: knows no size until a
// STOP_COPY session exists).
class SizeWrongIn : public Decorator {
 public:
  SizeWrongIn(std::unique_ptr<Device> inner, State state, double scale)
      : Decorator(std::move(inner)), state_(state), scale_(scale) {}
  Result<> feature(std::span<std::byte> arg) override {
    auto r = inner_->feature(arg);
    uapi::FeatureHeader h;
    std::memcpy(&h, arg.data(), sizeof(h));
    if (!r ||
        (h.flags & uapi::kFeatureMask) != static_cast<std::uint32_t>(uapi::Feature::kMigDataSize) ||
        !(h.flags & uapi::kFeatureGet) || (h.flags & uapi::kFeatureProbe))
      return r;
    if (auto now = query_device_state(*inner_); !now || *now != state_) return r;
    uapi::MigDataSize size;
    std::memcpy(&size, arg.data() + sizeof(h), sizeof(size));
    size.stop_copy_length =
        static_cast<std::uint64_t>(static_cast<double>(size.stop_copy_length) * scale_);
    std::memcpy(arg.data() + sizeof(h), &size, sizeof(size));
    return r;
  }

 private:
  State state_;
  double scale_;
};

TEST(SizeEstimate, WellBehavedDevicesPass) {
  std::vector<std::string> ids;
  for (State s : kStates) ids.push_back(id_of(s));
  std::vector<const char*> names;
  for (const auto& id : ids) names.push_back(id.c_str());
  expect_verdicts({kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                   "sim:plain,size=1M,transport=direct"},
                  "size-estimate/", names);
  // Without P2P and PRE_COPY only STOP and RUNNING come before STOP_COPY.
  const auto got = verdicts(check_spec("sim:stopcopy,size=64K,transport=direct"), "size-estimate/");
  for (State s : kStates)
    EXPECT_EQ(got.at(id_of(s)),
              s == State::kStop || s == State::kRunning ? Verdict::kPass : Verdict::kSkip)
        << id_of(s);
}

TEST(SizeEstimate, ZeroInOneStateFailsExactlyThatState) {
  for (State s : kStates)
    EXPECT_NE(only_failure(check_broken<SizeWrongIn>(kSim, s, 0.0), id_of(s))
                  .find("0 while the device has data"),
              std::string::npos)
        << id_of(s);
}

TEST(SizeEstimate, FarOffFailsAndCloseEnoughPasses) {
  EXPECT_NE(
      only_failure(check_broken<SizeWrongIn>(kSim, State::kRunning, 0.5), id_of(State::kRunning))
          .find("beyond the tolerance"),
      std::string::npos);
  EXPECT_TRUE(failures(check_broken<SizeWrongIn>(kSim, State::kRunning, 1.05)).empty());
}

}  // namespace
}  // namespace vfio::conform::testing
