// The matrix on named devices (faults --matrix SCENARIO SRC DST): the oracles built from what
// the uAPI shows, each shown failing on a device that misbehaves as a driver might.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "core/feature.h"
#include "faults/device_checks.h"
#include "faults/matrix.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"
#include "tests/forwarding_device.h"

namespace vfio::faults {
namespace {

using uapi::State;

const std::string kMtty = "sim:mtty,transport=fuse";

std::unique_ptr<Device> direct(const char* profile, std::uint64_t seed) {
  sim::SimOptions o;
  o.seed = seed;
  return std::make_unique<sim::DirectDevice>(
      std::make_shared<sim::SimDevice>(*sim::find_profile(profile), o), "direct");
}

using Forwarding = testing::ForwardingDevice;

// A resume that takes the data written and loads the device's own earlier state instead (as a
// driver reading from the wrong offset might): every call succeeds.
class ResumesItsOwnState final : public Forwarding {
 public:
  explicit ResumesItsOwnState(std::unique_ptr<Device> inner) : Forwarding(std::move(inner)) {
    EXPECT_TRUE(request_device_state(*inner_, State::kStop));
    auto fd = request_device_state(*inner_, State::kStopCopy);
    EXPECT_TRUE(fd);
    std::vector<std::byte> chunk(4096);
    for (Result<std::size_t> n; (n = inner_->read(*fd, chunk)) && *n;)
      own_.insert(own_.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(*n));
    EXPECT_TRUE(inner_->close(*fd));
    EXPECT_TRUE(request_device_state(*inner_, State::kStop));
    EXPECT_TRUE(request_device_state(*inner_, State::kRunning));
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (!written_) {
      written_ = true;
      if (auto n = inner_->write(fd, own_); !n || *n != own_.size()) return n;
    }
    return buf.size();
  }

 private:
  std::vector<std::byte> own_;
  bool written_ = false;
};

// Reports its data fds closed and keeps them open.
class KeepsDataFds final : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> close(int) override { return {}; }
};

// Once resumed from STOP (an aborted migration's recovery), refuses STOP_COPY for good: a driver
// that an aborted migration leaves unable to migrate again.
class BrokenAfterAbort final : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte> arg) override {
    uapi::FeatureHeader h;
    uapi::MigState m;
    if (arg.size() >= sizeof h + sizeof m) {
      std::memcpy(&h, arg.data(), sizeof h);
      std::memcpy(&m, arg.data() + sizeof h, sizeof m);
      const bool set_state = (h.flags & uapi::kFeatureSet) &&
                             (h.flags & uapi::kFeatureMask) ==
                                 static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState);
      if (set_state && static_cast<State>(m.device_state) == State::kStopCopy && aborted_)
        return fail(EIO, "refuses STOP_COPY since an aborted migration");
      if (set_state && static_cast<State>(m.device_state) == State::kRunning)
        aborted_ = aborted_ || query_device_state(*inner_) == State::kStop;
    }
    return inner_->feature(arg);
  }

 private:
  bool aborted_ = false;
};

CaseConfig named(std::function<void(std::size_t, devices::OpenedDevice&)> adapt = nullptr) {
  CaseConfig cfg;
  cfg.profile = "devices";
  cfg.devices = {kMtty, kMtty};
  cfg.adapt_named = std::move(adapt);
  std::vector<std::string> said;
  auto learnt = learn_device_facts(cfg, said);
  EXPECT_TRUE(learnt) << learnt.error().describe();
  return cfg;
}

CaseResult run_one(const CaseConfig& cfg, const std::string& plan = "") {
  CaseSpec spec;
  spec.id = "test";
  spec.scenario = Scenario::kMigrate;
  spec.plan = plan;
  return run_watched(spec, cfg, WatchdogOptions{});
}

std::string why(const CaseResult& r) {
  std::string out = r.error;
  for (const auto& p : r.judgement.problems) out += "\n  " + p;
  for (const auto& n : r.judgement.notes) out += "\n  note: " + n;
  return out;
}

bool mentions(const CaseResult& r, std::string_view text) {
  for (const auto& p : r.judgement.problems)
    if (p.find(text) != std::string::npos) return true;
  return false;
}

class NamedDevices : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!devices::transport_available(devices::Transport::kFuse))
      GTEST_SKIP() << "FUSE not usable here";
  }
};

TEST_F(NamedDevices, FactsComeFromTheDevices) {
  auto cfg = named();
  EXPECT_TRUE(cfg.facts.digest_stable);
  EXPECT_EQ(cfg.facts.mig_flags, sim::find_profile("mtty")->mig_flags);
  EXPECT_TRUE(scenario_applies(Scenario::kMigrate, cfg));
  EXPECT_FALSE(scenario_applies(Scenario::kP2pMulti, cfg));  // it needs six devices
}

TEST_F(NamedDevices, ACleanMigrationPassesWithItsStateReadBack) {
  auto r = run_one(named());
  EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << why(r);
}

TEST_F(NamedDevices, ADestinationThatResumesTheWrongStateFails) {
  auto cfg = named([](std::size_t k, devices::OpenedDevice& d) {
    if (k == 1) d.device = std::make_unique<ResumesItsOwnState>(std::move(d.device));
  });
  auto r = run_one(cfg);
  EXPECT_EQ(r.judgement.verdict, Verdict::kFail) << why(r);
  EXPECT_TRUE(mentions(r, "destination: its state read back")) << why(r);
}

TEST_F(NamedDevices, DataFdsLeftOpenFailTheCase) {
  auto cfg = named([](std::size_t k, devices::OpenedDevice& d) {
    if (k == 0) d.device = std::make_unique<KeepsDataFds>(std::move(d.device));
  });
  auto r = run_one(cfg);
  EXPECT_EQ(r.judgement.verdict, Verdict::kFail) << why(r);
  EXPECT_TRUE(mentions(r, "file(s) left open after the case")) << why(r);
}

TEST_F(NamedDevices, AFailedCaseIsFollowedByACleanMigration) {
  // A source whose every resume from a failed stop fails would leave the next attempt broken:
  // here the fault fails one SET, and the clean migration afterwards must succeed.
  auto r = run_one(named(), "set:S>SC side=src nth=1 -> errno=EIO");
  EXPECT_FALSE(r.error.empty());
  EXPECT_FALSE(is_failure(r.judgement.verdict)) << why(r);

  auto broken = run_one(named([](std::size_t k, devices::OpenedDevice& d) {
                          if (k == 0)
                            d.device = std::make_unique<BrokenAfterAbort>(std::move(d.device));
                        }),
                        "set:S>SC side=src nth=1 -> errno=EIO");
  EXPECT_EQ(broken.judgement.verdict, Verdict::kFail) << why(broken);
  EXPECT_TRUE(mentions(broken, "a clean migration after the case fails")) << why(broken);
}

TEST_F(NamedDevices, TheCheckCommandJudgesToo) {
  auto cfg = named();
  cfg.check = "test \"$VFIO_MIG_SCENARIO\" = migrate && test \"$VFIO_MIG_OUTCOME\" = success";
  auto ok = run_one(cfg);
  EXPECT_EQ(ok.judgement.verdict, Verdict::kPass) << why(ok);
  cfg.check = "echo device lost its state; exit 3";
  auto bad = run_one(cfg);
  EXPECT_EQ(bad.judgement.verdict, Verdict::kFail) << why(bad);
  EXPECT_TRUE(mentions(bad, "exit 3: device lost its state")) << why(bad);
}

TEST(DeviceChecks, TheDigestTellsStatesApartAndLeavesTheDeviceRunning) {
  auto a = direct("mlx5", 1), b = direct("mlx5", 2);
  auto da = read_state_digest(*a), again = read_state_digest(*a), db = read_state_digest(*b);
  ASSERT_TRUE(da && again && db);
  EXPECT_EQ(*da, *again);
  EXPECT_NE(*da, *db);
  EXPECT_GT(da->length, 0u);
  EXPECT_EQ(query_device_state(*a), State::kRunning);
}

TEST(DeviceChecks, BringToRunningSaysWhatItTook) {
  auto dev = direct("mlx5", 1);
  EXPECT_EQ(bring_to_running(*dev).value_or("?"), "");
  ASSERT_TRUE(request_device_state(*dev, State::kStop));
  EXPECT_EQ(bring_to_running(*dev).value_or("?"), "resumed from STOP");
  ASSERT_TRUE(request_device_state(*dev, State::kStop));
  auto fd = request_device_state(*dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(dev->close(*fd));
  EXPECT_EQ(bring_to_running(*dev).value_or("?"), "reset: it was in STOP_COPY");
  EXPECT_EQ(query_device_state(*dev), State::kRunning);
}

TEST(DeviceChecks, NewFdsNamesWhatWasOpened) {
  auto before = open_fds();
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto found = new_fds(before, open_fds());
  ::close(fd);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0], fmt::format("fd {} -> /dev/null", fd));
  EXPECT_TRUE(new_fds(before, open_fds()).empty());
}

TEST(DeviceChecks, CheckCommandsAreBoundedAndExplained) {
  EXPECT_TRUE(run_check_command("test \"$X\" = 1", {{"X", "1"}}, std::chrono::seconds(10)));
  auto failed = run_check_command("echo nope; exit 4", {}, std::chrono::seconds(10));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("exit 4: nope"), std::string::npos)
      << failed.error().message;
  auto slow = run_check_command("sleep 30", {}, std::chrono::milliseconds(200));
  ASSERT_FALSE(slow);
  EXPECT_NE(slow.error().message.find("killed"), std::string::npos) << slow.error().message;
}

}  // namespace
}  // namespace vfio::faults
