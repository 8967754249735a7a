// Single fault runs (`vfio-mig faults --fault/--plan SRC DST`): under the watchdog, and with the
// same pre-copy default as `migrate`.
#include <gtest/gtest.h>

#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;

const std::string kSrc = "sim:mlx5,size=1M,transport=direct";
const std::string kDst = "sim:mlx5,size=1M,seed=9,transport=direct";

// Without the watchdog this call never returns (ctest's timeout would be the only end).
TEST(FaultsRun, AHangIsCancelledAtTheTimeoutAndFails) {
  auto r = run({"faults", "--fault", "read side=src nth=1 -> hang", "--timeout", "2s", kSrc, kDst});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("fired 'read side=src nth=1 -> hang'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hang: still running after the 2000 ms timeout (an injected hang blocked "
                       "it); cancelled"),
            std::string::npos)
      << r.out;
  // Cancelled like any failure: both devices back in RUNNING, as the oracles check.
  EXPECT_NE(r.out.find("verdict: pass"), std::string::npos) << r.out;
}

TEST(FaultsRun, PrecopyFaultsFireByDefault) {
  auto set_pc = run({"faults", "--fault", "set:PC side=src -> errno=EIO", kSrc, kDst});
  EXPECT_NE(set_pc.out.find("fired 'set:PC side=src -> errno=EIO' on src set:R>PC"),
            std::string::npos)
      << set_pc.out;
  EXPECT_NE(set_pc.out.find("migration: failed"), std::string::npos) << set_pc.out;
  EXPECT_EQ(set_pc.code, 0) << set_pc.out;  // the oracles pass: the source runs again

  // QEMU treats a failing PRECOPY_INFO as "nothing pending": the migration succeeds.
  auto info = run({"faults", "--fault", "precopy-info side=src nth=1 -> errno=EIO", kSrc, kDst});
  EXPECT_NE(info.out.find("fired 'precopy-info side=src nth=1 -> errno=EIO'"), std::string::npos)
      << info.out;
  EXPECT_NE(info.out.find("migration: success"), std::string::npos) << info.out;
  EXPECT_EQ(info.code, 0) << info.out;
}

TEST(FaultsRun, PrecopyOffTakesTheStopAndCopyPath) {
  auto r = run({"faults", "--fault", "set:PC side=src -> errno=EIO", "--precopy", "off", "--record",
                kSrc, kDst});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("no fault fired"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("src set:S>SC"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("set:R>PC"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("migration: success"), std::string::npos) << r.out;
}

TEST(FaultsRun, OptionsOfSingleRunsAreCheckedAsUsage) {
  EXPECT_EQ(run({"faults", "--fault", "read -> eof", "--precopy", "maybe", kSrc, kDst}).code, 2);
  EXPECT_EQ(run({"faults", "--fault", "read -> eof", "--timeout", "0s", kSrc, kDst}).code, 2);
  EXPECT_EQ(run({"faults", "--matrix", "migrate", "--precopy", "off"}).code, 2);
}

}  // namespace
}  // namespace vfio::cli
