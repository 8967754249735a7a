// vfio-mig save, load, migrate and probe on devices an earlier process left in any state,
// through the kernel path: the FUSE-served simulator, named by its path as a real device is, so
// that every call goes through KernelDevice. The simulated mtty behaves as the real one on
// Linux 6.12: it keeps its state across close and open and hangs on SET STOP_COPY->PRE_COPY,
// counting every such arc. By default: a clear refusal, the device untouched; with
// --reset-first: a reset, said on stderr, and an operation that completes and verifies.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/commands.h"
#include "core/feature.h"
#include "tests/cli/cli_run.h"
#include "tests/core/stale_mtty.h"

namespace vfio::cli {
namespace {

using ::testing::HasSubstr;
using testing::run;
using uapi::State;

using Served = vfio::testing::ServedSim;

class StaleDeviceCli : public testing::TempDirTest, public ::testing::WithParamInterface<State> {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    mount_.start();
  }

  Served serve(State state, std::uint64_t seed) {
    return mount_.serve_stale(state, seed, "mtty" + std::to_string(seed));
  }

  // The refusal: exit 1, one line naming the state and --reset-first; the device untouched.
  void expect_refused(const testing::Run& r, const Served& dev) {
    EXPECT_EQ(r.code, kExitFailed) << r.err;
    EXPECT_THAT(r.err, HasSubstr(fmt::format("is in {}", uapi::state_name(GetParam()))));
    EXPECT_THAT(r.err, HasSubstr("--reset-first"));
    EXPECT_EQ(dev.model->state(), GetParam());
  }
  void expect_reset_notice(const testing::Run& r) {
    EXPECT_THAT(r.err, HasSubstr(fmt::format("was in {}; reset", uapi::state_name(GetParam()))));
  }

  vfio::testing::TestMount mount_;
};

TEST_P(StaleDeviceCli, Save) {
  auto src = serve(GetParam(), 1);
  expect_refused(run({"save", src.path, "-o", path("refused.bin"), "-q"}), src);

  auto saved = run({"save", src.path, "--reset-first", "-o", path("s.bin"), "-q"});
  ASSERT_EQ(saved.code, kExitOk) << saved.err;
  expect_reset_notice(saved);
  EXPECT_EQ(src.model->state(), State::kRunning);  // the VM runs again after a save
  auto dst = serve(State::kRunning, 2);
  ASSERT_EQ(run({"load", dst.path, "-i", path("s.bin"), "-q"}).code, kExitOk);
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(src.model->hung_arcs(), 0u);
}

TEST_P(StaleDeviceCli, Load) {
  auto src = serve(State::kRunning, 1);
  ASSERT_EQ(run({"save", src.path, "-o", path("s.bin"), "-q"}).code, kExitOk);
  auto dst = serve(GetParam(), 2);
  const auto image = dst.model->image();
  expect_refused(run({"load", dst.path, "-i", path("s.bin"), "-q"}), dst);
  EXPECT_EQ(dst.model->image(), image);

  auto loaded = run({"load", dst.path, "--reset-first", "-i", path("s.bin"), "-q"});
  ASSERT_EQ(loaded.code, kExitOk) << loaded.err;
  expect_reset_notice(loaded);
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(dst.model->state(), State::kRunning);
  EXPECT_EQ(dst.model->hung_arcs(), 0u);
}

// The reported hang: a source left in STOP_COPY, migrated with the default --precopy auto.
TEST_P(StaleDeviceCli, Migrate) {
  auto src = serve(GetParam(), 1);
  auto dst = serve(GetParam(), 2);
  auto refused = run({"migrate", src.path, dst.path, "-q"});
  expect_refused(refused, src);
  EXPECT_THAT(refused.err, HasSubstr("source: "));
  EXPECT_EQ(dst.model->state(), GetParam());

  auto migrated = run({"migrate", src.path, dst.path, "--reset-first", "--verify", "-q"});
  ASSERT_EQ(migrated.code, kExitOk) << migrated.err;
  EXPECT_THAT(migrated.out, HasSubstr("verified: destination state equals the source"));
  expect_reset_notice(migrated);
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(src.model->hung_arcs() + dst.model->hung_arcs(), 0u);
}

// A single fault run migrates as `migrate` does, and takes --reset-first too.
TEST_P(StaleDeviceCli, FaultsSingleRun) {
  auto src = serve(GetParam(), 1);
  auto dst = serve(GetParam(), 2);
  auto refused = run({"faults", "--record", src.path, dst.path, "-q"});
  EXPECT_EQ(refused.code, kExitFailed);
  EXPECT_THAT(refused.out, HasSubstr(fmt::format("migration: failed: source: {} is in {}", src.path,
                                                 uapi::state_name(GetParam()))));
  EXPECT_THAT(refused.out, HasSubstr("--reset-first"));
  EXPECT_EQ(src.model->state(), GetParam());

  auto migrated = run({"faults", "--record", "--reset-first", src.path, dst.path, "-q"});
  EXPECT_EQ(migrated.code, kExitOk) << migrated.out << migrated.err;
  EXPECT_THAT(migrated.out, HasSubstr("migration: success"));
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(src.model->hung_arcs() + dst.model->hung_arcs(), 0u);
}

// probe only reads: it works in any state and says which.
TEST_P(StaleDeviceCli, ProbeShowsTheState) {
  auto dev = serve(GetParam(), 1);
  auto r = run({"probe", dev.path});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex(fmt::format(
                         "device state +{} \\(not RUNNING: save, load and migrate refuse it "
                         "without --reset-first\\)\n",
                         uapi::state_name(GetParam()))));
  EXPECT_EQ(dev.model->state(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(EveryState, StaleDeviceCli,
                         ::testing::Values(State::kStop, State::kStopCopy, State::kResuming,
                                           State::kRunningP2p, State::kPreCopy, State::kPreCopyP2p,
                                           State::kError),
                         [](const auto& info) {
                           return std::string(uapi::state_name(info.param));
                         });

}  // namespace
}  // namespace vfio::cli
