// `vfio-mig faults --matrix SCENARIO SRC DST ...`: the fault matrix on devices named on the
// command line (here sim: specs over FUSE, reached with real syscalls as a kernel device is).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "devices/device_spec.h"
#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;

const std::string kMtty = "sim:mtty,transport=fuse";

class FaultsOnDevices : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!devices::transport_available(devices::Transport::kFuse))
      GTEST_SKIP() << "FUSE not usable here";
  }
};

TEST_F(FaultsOnDevices, TheMigrateMatrixRunsOnTheNamedPairAndPasses) {
  const std::string json = ::testing::TempDir() + "named-matrix.json";
  auto r = run({"faults", "--matrix", "migrate", kMtty, kMtty, "--json", json, "--quiet"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on 1 thread(s)"), std::string::npos) << r.out;  // one case at a time
  std::ifstream in(json);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("\"profile\": \"devices\""), std::string::npos);
  ::unlink(json.c_str());
}

TEST_F(FaultsOnDevices, ReproductionCommandsNameTheDevices) {
  auto r = run({"faults", "--matrix", "migrate", kMtty, kMtty, "--check", "exit 1", "--case",
                "src.set:S-SC.1.errno=EIO"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("--check 'exit 1': exit 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("reproduce: vfio-mig faults --matrix migrate " + kMtty + " " + kMtty +
                       " --check 'exit 1' --case src.set:S-SC.1.errno=EIO"),
            std::string::npos)
      << r.out;
}

TEST_F(FaultsOnDevices, ScenariosThatNeedOtherCountsAreLeftOutOfAll) {
  auto r = run({"faults", "--matrix", "all", kMtty, kMtty, "--list"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("migrate on devices"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("p2p-multi"), std::string::npos) << r.out;
}

// A CI job plans its shards from the list: the shards' lists add up to the whole, each case once.
TEST(FaultsList, JsonListsEachShardsCases) {
  const std::string path = ::testing::TempDir() + "case-list.json";
  auto count = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"faults", "--matrix", "load",   "--profile",
                                     "mtty",   "--list",   "--json", path};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run(args);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    ::unlink(path.c_str());
    auto at = text.str().find("\"cases\": ");
    EXPECT_NE(at, std::string::npos) << text.str();
    return std::stoul(text.str().substr(at + 9));
  };
  const auto all = count({});
  EXPECT_GT(all, 20u);
  EXPECT_EQ(count({"--shard", "1/3"}) + count({"--shard", "2/3"}) + count({"--shard", "3/3"}), all);
}

TEST(FaultsOnDevicesUsage, BadCombinationsAreUsageErrors) {
  const std::string d = "sim:mtty,transport=direct";
  auto three = run({"faults", "--matrix", "migrate", d, d, d});
  EXPECT_EQ(three.code, 2);
  EXPECT_NE(three.err.find("3 device(s) given: the migrate scenario needs 2"), std::string::npos)
      << three.err;
  EXPECT_EQ(run({"faults", "--matrix", "migrate", "--profile", "mtty", d, d}).code, 2);
  EXPECT_EQ(run({"faults", "--matrix", "migrate", "--check", "true"}).code, 2);
  EXPECT_EQ(run({"faults", "--matrix", "migrate", "sim:nonesuch", d}).code, 2);
}

}  // namespace
}  // namespace vfio::cli
