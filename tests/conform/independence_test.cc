// What a refused SET writes back, and MIG_DATA_SIZE against the real stream: devices that get
// them wrong fail exactly those checks.
#include <gtest/gtest.h>

#include <cstring>

#include "conform/checker.h"
#include "core/feature.h"
#include "tests/conform/support.h"

namespace vfio::conform {
namespace {

using uapi::State;

bool is_device_state_set(std::span<const std::byte> arg) {
  if (arg.size() < sizeof(uapi::FeatureHeader) + sizeof(uapi::MigState)) return false;
  uapi::FeatureHeader h;
  std::memcpy(&h, arg.data(), sizeof(h));
  return h.flags ==
         (static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) | uapi::kFeatureSet);
}

// Broken: a refused SET writes back what it likes instead of the requested state and -1.
class ScribblesOnRefusedSet : public Forwarding {
 public:
  enum class Scribble { kCurrentState, kNoWriteBack };
  ScribblesOnRefusedSet(std::unique_ptr<Device> inner, Scribble how)
      : Forwarding(std::move(inner)), how_(how) {}
  Result<> feature(std::span<std::byte> arg) override {
    if (!is_device_state_set(arg)) return Forwarding::feature(arg);
    uapi::MigState sent;
    std::memcpy(&sent, arg.data() + sizeof(uapi::FeatureHeader), sizeof(sent));
    const auto before = query_device_state(*inner_);
    auto r = Forwarding::feature(arg);
    if (r || !before) return r;
    uapi::MigState back = sent;  // kNoWriteBack: the caller's bytes stay as they were
    if (how_ == Scribble::kCurrentState) {
      back.device_state = static_cast<std::uint32_t>(*before);
      back.data_fd = -1;
    }
    std::memcpy(arg.data() + sizeof(uapi::FeatureHeader), &back, sizeof(back));
    return r;
  }

 private:
  Scribble how_;
};

std::size_t refused_arc_failures(const Report& r, std::string_view needle) {
  std::size_t n = 0;
  for (const auto& c : r.checks)
    if (c.group == "arcs" && c.verdict == Verdict::kFail &&
        c.detail.find(needle) != std::string::npos)
      ++n;
  return n;
}

TEST(RefusedSet, WritingBackTheCurrentStateFailsEveryRefusedArc) {
  ScribblesOnRefusedSet dev(open_sim("sim:mlx5,size=64K"),
                            ScribblesOnRefusedSet::Scribble::kCurrentState);
  auto report = run_checks(dev);
  // Each arc to ERROR from the 7 states, SC->PC and SC->PCP.
  EXPECT_EQ(refused_arc_failures(report, "written back, expected the requested"), 9u)
      << failures(report);
  const Check* c = report.find("arc/SC->PC");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->detail, "device_state 3 written back, expected the requested PC");
  EXPECT_EQ(verdict_of(report, "arc/R->SC"), Verdict::kPass);  // taken arcs are untouched
}

TEST(RefusedSet, NotWritingBackDataFdFails) {
  ScribblesOnRefusedSet dev(open_sim("sim:p2p,size=64K"),
                            ScribblesOnRefusedSet::Scribble::kNoWriteBack);
  auto report = run_checks(dev);
  const Check* c = report.find("arc/R->ERROR");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kFail);
  EXPECT_EQ(c->detail, "data_fd -2 written back, expected -1");
}

TEST(RefusedSet, TheSimulatorWritesBackAsTheKernelDoes) {
  auto dev = open_sim("sim:mlx5,size=64K");
  auto report = run_checks(*dev);
  const Check* c = report.find("arc/SC->PCP");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kPass) << c->detail;
  EXPECT_NE(c->detail.find("struct written back"), std::string::npos) << c->detail;
}

// Broken: MIG_DATA_SIZE answers `size(real)` instead of the real estimate.
class MisreportsDataSize : public Forwarding {
 public:
  MisreportsDataSize(std::unique_ptr<Device> inner, std::uint64_t (*size)(std::uint64_t))
      : Forwarding(std::move(inner)), size_(size) {}
  Result<> feature(std::span<std::byte> arg) override {
    auto r = Forwarding::feature(arg);
    uapi::FeatureHeader h;
    if (!r || arg.size() < sizeof(h) + sizeof(uapi::MigDataSize)) return r;
    std::memcpy(&h, arg.data(), sizeof(h));
    if (h.flags != (static_cast<std::uint32_t>(uapi::Feature::kMigDataSize) | uapi::kFeatureGet))
      return r;
    uapi::MigDataSize size;
    std::memcpy(&size, arg.data() + sizeof(h), sizeof(size));
    size.stop_copy_length = size_(size.stop_copy_length);
    std::memcpy(arg.data() + sizeof(h), &size, sizeof(size));
    return r;
  }

 private:
  std::uint64_t (*size_)(std::uint64_t);
};

TEST(DataSize, ZeroWhileTheDeviceHasDataFails) {
  MisreportsDataSize dev(open_sim("sim:mlx5,size=1M"),
                         [](std::uint64_t) -> std::uint64_t { return 0; });
  auto report = run_checks(dev);
  const Check* c = report.find("data-size/stop-copy-estimate");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kFail);
  EXPECT_NE(c->detail.find("0 while the device has data to send"), std::string::npos) << c->detail;
  EXPECT_EQ(report.counts().failed, 1u) << failures(report);
}

TEST(DataSize, AnEstimateFarOffFails) {
  MisreportsDataSize dev(open_sim("sim:mlx5,size=1M"), [](std::uint64_t real) { return real / 2; });
  auto report = run_checks(dev);
  const Check* c = report.find("data-size/stop-copy-estimate");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kFail);
  EXPECT_NE(c->detail.find("beyond the tolerance"), std::string::npos) << c->detail;
}

TEST(DataSize, AnEstimateWithinTheToleranceOrSlackPasses) {
  MisreportsDataSize close(open_sim("sim:mlx5,size=1M"),
                           [](std::uint64_t real) { return real + real / 20; });
  EXPECT_EQ(verdict_of(run_checks(close), "data-size/stop-copy-estimate"), Verdict::kPass);
  auto exact = open_sim("sim:mlx5,size=1M");
  EXPECT_EQ(verdict_of(run_checks(*exact), "data-size/stop-copy-estimate"), Verdict::kPass);
}

}  // namespace
}  // namespace vfio::conform
