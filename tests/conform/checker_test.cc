// The contract checker: every simulator profile conforms, and checks catch broken devices.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "core/feature.h"
#include "core/state_machine.h"
#include "devices/device_spec.h"
#include "tests/conform/support.h"

namespace vfio::conform {
namespace {

using uapi::State;

// Broken: takes SET PRE_COPY in STOP_COPY as a success (without moving).
class AcceptsStopCopyToPreCopy : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte> arg) override {
    if (arg.size() < kSetSize) return Forwarding::feature(arg);
    uapi::FeatureHeader h;
    uapi::MigState mig;
    std::memcpy(&h, arg.data(), sizeof(h));
    std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
    const bool set_state =
        index_of(arg) == static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) &&
        h.flags == (index_of(arg) | uapi::kFeatureSet);
    if (set_state && mig.device_state == static_cast<std::uint32_t>(State::kPreCopy)) {
      auto now = query_device_state(*inner_);
      if (now && *now == State::kStopCopy) {
        mig.data_fd = -1;
        std::memcpy(arg.data() + sizeof(h), &mig, sizeof(mig));
        return {};
      }
    }
    return Forwarding::feature(arg);
  }
};

// Broken: data fds open at a reset keep "working" (reads give 0, writes take everything).
class ResetKeepsFds : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> reset() override {
    zombies_.insert(open_.begin(), open_.end());
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (zombies_.contains(fd)) return 0;
    return Forwarding::read(fd, buf);
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (zombies_.contains(fd)) return buf.size();
    return Forwarding::write(fd, buf);
  }

 private:
  std::set<int> zombies_;
};

// Broken: answers an unknown feature index with EINVAL instead of ENOTTY.
class UnknownFeatureEinval : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte> arg) override {
    switch (static_cast<uapi::Feature>(index_of(arg))) {
      case uapi::Feature::kMigration:
      case uapi::Feature::kMigDeviceState:
      case uapi::Feature::kDmaLoggingStart:
      case uapi::Feature::kDmaLoggingStop:
      case uapi::Feature::kDmaLoggingReport:
      case uapi::Feature::kMigDataSize:
        return Forwarding::feature(arg);
    }
    return fail(EINVAL, "unknown feature");
  }
};

// Broken: RS->S succeeds whatever was written (the device cannot validate).
class AcceptsAnyResume : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte> arg) override {
    auto r = Forwarding::feature(arg);
    if (arg.size() < kSetSize) return r;
    uapi::FeatureHeader h;
    uapi::MigState mig;
    std::memcpy(&h, arg.data(), sizeof(h));
    std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
    if (!r &&
        h.flags ==
            (static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) | uapi::kFeatureSet) &&
        mig.device_state == static_cast<std::uint32_t>(State::kStop)) {
      // Pretend the load worked: start over from a state the device can reach.
      if (inner_->reset() && request_device_state(*inner_, State::kStop)) return {};
    }
    return r;
  }
};

// No migration at all.
class NoMigration : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte>) override { return fail(ENOTTY, "no features"); }
};

class ProfileConformance : public ::testing::TestWithParam<const char*> {};

TEST_P(ProfileConformance, HasNoFailures) {
  auto dev = std::make_unique<Forwarding>(open_sim(GetParam()));
  auto report = run_checks(*dev);
  const auto n = report.counts();
  EXPECT_EQ(n.failed, 0u) << failures(report);
  EXPECT_GT(n.passed, 60u);
  EXPECT_EQ(n.checks, n.passed + n.failed + n.deviations + n.skipped);
  std::set<std::string> ids;
  for (const auto& c : report.checks) {
    EXPECT_TRUE(ids.insert(c.id).second) << "duplicate " << c.id;
    EXPECT_FALSE(c.detail.empty()) << c.id;
    EXPECT_FALSE(c.group.empty()) << c.id;
  }
  // Every (reachable state, state) pair has its arc check.
  const auto states = [&] {
    std::size_t k = 0;
    for (std::uint32_t s = 1; s < uapi::kStateCount; ++s)
      k += state_supported(static_cast<State>(s), report.mig_flags);
    return k;
  }();
  EXPECT_EQ(std::count_if(report.checks.begin(), report.checks.end(),
                          [](const Check& c) { return c.group == "arcs"; }),
            static_cast<long>(states * uapi::kStateCount));
  // Left as found: running, every data fd closed, config space untouched.
  auto state = query_device_state(*dev);
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, State::kRunning);
  EXPECT_TRUE(dev->open_fds().empty()) << dev->open_fds().size() << " data fds left open";
  EXPECT_EQ(dev->config_writes, 0);
}

INSTANTIATE_TEST_SUITE_P(Sim, ProfileConformance,
                         ::testing::Values("sim:mtty", "sim:mlx5,size=1M", "sim:stopcopy,size=1M",
                                           "sim:p2p,size=1M", "sim:plain,size=1M"),
                         [](const auto& info) {
                           std::string name = info.param + 4;
                           return name.substr(0, name.find(','));
                         });

TEST(Conformance, MttyShowsTheEnomsgDeviation) {
  auto dev = open_sim("sim:mtty");
  auto report = run_checks(*dev);
  const Check* eof = report.find("precopy/temporary-eof");
  ASSERT_NE(eof, nullptr);
  EXPECT_EQ(eof->verdict, Verdict::kDeviation);
  EXPECT_NE(eof->detail.find("instead of ENOMSG"), std::string::npos) << eof->detail;
  EXPECT_EQ(report.counts().deviations, 1u);
  EXPECT_TRUE(report.ok());
}

TEST(Conformance, EnomsgPassesOnOtherPrecopyDevices) {
  auto dev = open_sim("sim:plain,size=64K");
  auto report = run_checks(*dev);
  EXPECT_EQ(verdict_of(report, "precopy/temporary-eof"), Verdict::kPass);
  EXPECT_EQ(report.counts().deviations, 0u);
}

TEST(Conformance, OptionalFeaturesAreSkippedOrRefused) {
  auto dev = open_sim("sim:stopcopy,size=64K");
  auto report = run_checks(*dev);
  EXPECT_EQ(report.mig_flags, uapi::kMigrationStopCopy);
  EXPECT_EQ(verdict_of(report, "precopy/temporary-eof"), Verdict::kSkip);
  EXPECT_EQ(verdict_of(report, "dma/unsupported-start"), Verdict::kPass);
  EXPECT_EQ(report.find("dma/start-overlap"), nullptr);
  // Unsupported targets are still tried, and refused.
  const Check* rp = report.find("arc/R->RP");
  ASSERT_NE(rp, nullptr);
  EXPECT_EQ(rp->verdict, Verdict::kPass);
  EXPECT_NE(rp->detail.find("RP not supported"), std::string::npos) << rp->detail;
  EXPECT_EQ(report.find("arc/RP->R"), nullptr);  // RP cannot be a starting point
}

TEST(Conformance, DmaLoggingChecksRunWhenAdvertised) {
  auto dev = open_sim("sim:mlx5,size=64K");
  auto report = run_checks(*dev);
  for (auto id :
       {"dma/start-zero-ranges", "dma/start-unaligned", "dma/start-overlap", "dma/start-too-many",
        "dma/start-overflow", "dma/report-without-start", "dma/start", "dma/report",
        "dma/report-bad-page-size", "dma/stop", "header/get-on-set-only"})
    EXPECT_EQ(verdict_of(report, id), Verdict::kPass) << id;
}

TEST(Conformance, StopCopyToPreCopyAcceptedFails) {
  AcceptsStopCopyToPreCopy dev(open_sim("sim:plain,size=64K"));
  auto report = run_checks(dev);
  const Check* arc = report.find("arc/SC->PC");
  ASSERT_NE(arc, nullptr);
  EXPECT_EQ(arc->verdict, Verdict::kFail);
  EXPECT_NE(arc->detail.find("expected EINVAL (refused), got success"), std::string::npos)
      << arc->detail;
  EXPECT_EQ(report.counts().failed, 1u) << failures(report);
  EXPECT_FALSE(report.ok());
}

// On a real host SC->PC would hang Linux's vfio core: by default it is not sent.
TEST(Conformance, HangingArcsAreSkippedUnlessAsked) {
  auto dev = open_sim("sim:plain,size=64K");
  auto report = check_device(*dev, Options{});
  ASSERT_TRUE(report);
  for (auto id : {"arc/SC->PC", "arc/SC->PCP"}) {
    const Check* arc = report->find(id);
    ASSERT_NE(arc, nullptr) << id;
    EXPECT_EQ(arc->verdict, Verdict::kSkip) << id;
    EXPECT_NE(arc->detail.find("loops forever"), std::string::npos) << arc->detail;
  }
  EXPECT_EQ(report->counts().failed, 0u);
}

TEST(Conformance, ResetThatKeepsFdsFails) {
  ResetKeepsFds dev(open_sim("sim:plain,size=64K"));
  auto report = run_checks(dev);
  for (auto id :
       {"reset/kills-fd-SC", "reset/kills-fd-RS", "reset/kills-fd-PC", "reset/kills-fd-PCP"})
    EXPECT_EQ(verdict_of(report, id), Verdict::kFail) << id;
  // The same fds outlive a reset racing I/O.
  for (auto id : {"concurrency/reset-during-read-SC", "concurrency/reset-during-read-PC",
                  "concurrency/reset-during-read-PCP", "concurrency/reset-during-write-RS"})
    EXPECT_EQ(verdict_of(report, id), Verdict::kFail) << id;
  // The resume fd outlives the reset, and the new session begun after it.
  EXPECT_EQ(verdict_of(report, "stale-fd/write-old-RS"), Verdict::kFail);
  EXPECT_EQ(verdict_of(report, "reset/from-SC"), Verdict::kPass);
  EXPECT_EQ(report.counts().failed, 9u) << failures(report);
}

TEST(Conformance, UnknownFeatureEinvalFails) {
  UnknownFeatureEinval dev(open_sim("sim:p2p,size=64K"));
  auto report = run_checks(dev);
  const Check* c = report.find("header/unknown-feature");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kFail);
  EXPECT_NE(c->detail.find("expected ENOTTY, got EINVAL"), std::string::npos) << c->detail;
  EXPECT_EQ(verdict_of(report, "header/unknown-feature-probe"), Verdict::kFail);
  EXPECT_EQ(report.counts().failed, 2u) << failures(report);
}

TEST(Conformance, AcceptingCorruptedStreamsFailsOnlyWhenStrict) {
  AcceptsAnyResume strict_dev(open_sim("sim:p2p,size=64K"));
  auto strict = run_checks(strict_dev, /*strict=*/true);
  EXPECT_EQ(verdict_of(strict, "resume/corrupted"), Verdict::kFail);
  EXPECT_EQ(verdict_of(strict, "resume/truncated"), Verdict::kFail);
  EXPECT_EQ(verdict_of(strict, "resume/empty"), Verdict::kFail);

  AcceptsAnyResume lenient_dev(open_sim("sim:p2p,size=64K"));
  auto lenient = run_checks(lenient_dev, /*strict=*/false);
  const Check* c = lenient.find("resume/corrupted");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kDeviation);
  EXPECT_NE(c->detail.find("device accepted a corrupted stream"), std::string::npos);
  // A truncated stream must still be refused: a device cannot miss half its state.
  EXPECT_EQ(verdict_of(lenient, "resume/truncated"), Verdict::kFail);
}

TEST(Conformance, NoMigrationIsOneFailure) {
  NoMigration dev(open_sim("sim:plain,size=64K"));
  auto report = run_checks(dev);
  ASSERT_EQ(report.checks.size(), 1u);
  EXPECT_EQ(report.checks[0].id, "migration/flags");
  EXPECT_EQ(report.checks[0].verdict, Verdict::kFail);
  EXPECT_NE(report.checks[0].detail.find("ENOTTY"), std::string::npos);
}

TEST(Conformance, BadOptionsAreErrors) {
  auto dev = open_sim("sim:mtty");
  Options options;
  options.buffer_size = 0;
  EXPECT_FALSE(check_device(*dev, options));
}

TEST(Conformance, SmallBuffersGiveTheSameVerdicts) {
  auto dev = open_sim("sim:mlx5,size=64K");
  Options options;
  options.buffer_size = 7;
  options.strict_resume_validation = true;
  auto report = check_device(*dev, options);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->counts().failed, 0u) << failures(*report);
}

// Answers its first call (GET MIGRATION) only after a pause.
class SlowToAnswer : public Forwarding {
 public:
  SlowToAnswer(std::unique_ptr<Device> inner, std::chrono::milliseconds pause)
      : Forwarding(std::move(inner)), pause_(pause) {}
  Result<> feature(std::span<std::byte> arg) override {
    if (std::exchange(first_, false)) std::this_thread::sleep_for(pause_);
    return Forwarding::feature(arg);
  }

 private:
  std::chrono::milliseconds pause_;
  bool first_ = true;
};

// Each check carries the wall time since the one before: the first the pause, and together no
// more than the whole run.
TEST(Conformance, EachCheckCarriesItsWallTime) {
  using namespace std::chrono_literals;
  SlowToAnswer dev(open_sim("sim:mlx5,size=64K"), 50ms);
  const auto start = std::chrono::steady_clock::now();
  auto report = run_checks(dev);
  const auto whole = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(report.checks.empty());
  EXPECT_EQ(report.checks.front().id, "migration/flags");
  EXPECT_GE(report.checks.front().elapsed, 50ms);
  std::chrono::microseconds sum{};
  for (const auto& c : report.checks) {
    EXPECT_GE(c.elapsed.count(), 0) << c.id;
    sum += c.elapsed;
  }
  EXPECT_LE(sum, whole);
}

}  // namespace
}  // namespace vfio::conform
