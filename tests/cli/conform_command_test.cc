// `vfio-mig conform`: reports a table, a summary line and JSON, and exits as documented (the
// checks themselves: tests/conform).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "cli/commands.h"
#include "conform/checker.h"
#include "devices/device_spec.h"
#include "simdev/sim_mount.h"
#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;
using testing::slurp;

class ConformCommand : public testing::TempDirTest {
 protected:
  static std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }
};

// keep-state=0: the real mtty's state kept across close and open fails reopen/fresh-open-running
// (the next test).
TEST_F(ConformCommand, PassesWithTableSummaryAndJson) {
  auto r = run({"conform", "sim:mtty,keep-state=0,transport=direct", "--json", path("c.json")});
  ASSERT_EQ(r.code, kExitOk) << r.out << r.err;
  // The same checks in process, with the options conform gives a simulator called directly.
  auto opened = devices::open_device(
      devices::parse_device_arg("sim:mtty,keep-state=0,transport=direct").value(), 0);
  ASSERT_TRUE(opened) << opened.error().describe();
  conform::Options options;
  options.strict_resume_validation = true;
  options.send_hanging_arcs = true;
  options.report_huge_pages = true;
  options.dma_write = [model = opened->model](std::uint64_t iova) { model->mark_dirty(iova); };
  options.reopen = [&] { return opened->reopen(); };
  auto report = conform::check_device(*opened->device, options);
  ASSERT_TRUE(report) << report.error().describe();
  const auto n = report->counts();
  const std::string line = "conform: " + std::to_string(n.checks) + " checks, " +
                           std::to_string(n.passed) + " passed, 0 failed, 1 deviations, " +
                           std::to_string(n.skipped) + " skipped\n";
  EXPECT_NE(r.out.find(line), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\narcs\n"), std::string::npos);
  EXPECT_NE(r.out.find("arc/SC->PC"), std::string::npos);
  EXPECT_NE(r.out.find("deviation"), std::string::npos);
  // The simulator is made to DMA, and REPORT's bits are checked against what it wrote.
  EXPECT_NE(r.out.find("one call and four windows agree: 9 of 1024 bits set"), std::string::npos)
      << r.out;

  const std::string json = slurp(path("c.json"));
  EXPECT_EQ(occurrences(json, "\"id\": "), n.checks) << json;
  // Each check's wall time, to see where a run's time goes.
  EXPECT_EQ(occurrences(json, ", \"seconds\": "), n.checks) << json;
  EXPECT_NE(json.find("\"ok\": true"), std::string::npos);
  EXPECT_NE(json.find("\"failed\": 0"), std::string::npos);
  EXPECT_NE(json.find("\"deviations\": 1"), std::string::npos);
  EXPECT_NE(json.find("{\"id\": \"precopy/temporary-eof\", \"group\": \"precopy\", \"verdict\": "
                      "\"deviation\", \"detail\": "),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"id\": \"arc/SC->PC\", \"group\": \"arcs\", \"verdict\": \"pass\""),
            std::string::npos);
}

// conform reopens the device it checks: mtty's state kept across close and open is a failure.
TEST_F(ConformCommand, ReopensTheDeviceAndFailsAStateKeptAcrossClose) {
  auto r = run({"conform", "sim:mtty,transport=direct", "--json", path("kept.json")});
  EXPECT_EQ(r.code, kExitFailed) << r.out << r.err;
  const std::string json = slurp(path("kept.json"));
  // Kept from every state: fresh-open-running (from STOP_COPY) and the five fresh-open-from-*.
  EXPECT_EQ(occurrences(json, "\"verdict\": \"fail\""), 6u) << json;
  EXPECT_NE(json.find("\"id\": \"reopen/fresh-open-running\", \"group\": \"reopen\", "
                      "\"verdict\": \"fail\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"id\": \"reopen/second-stream\", \"group\": \"reopen\", "
                      "\"verdict\": \"pass\""),
            std::string::npos)
      << json;
}

// Over FUSE the simulator is a KernelDevice: SC->PC and SC->PCP go only with --unsafe-arcs,
// which lifts KernelDevice's guard, and the device then refuses them as the contract says.
TEST_F(ConformCommand, HangingArcsReachAKernelDeviceOnlyWithUnsafeArcs) {
  if (auto ok = sim::SimMount::fuse_available(); !ok)
    GTEST_SKIP() << "FUSE unavailable: " << ok.error().describe();
  auto safe = run({"conform", "sim:mtty,keep-state=0,transport=fuse", "--json", path("safe.json")});
  EXPECT_EQ(safe.code, kExitOk) << safe.out << safe.err;
  auto unsafe = run({"conform", "sim:mtty,keep-state=0,transport=fuse", "--unsafe-arcs", "--json",
                     path("unsafe.json")});
  EXPECT_EQ(unsafe.code, kExitOk) << unsafe.out << unsafe.err;
  for (auto id : {"arc/SC->PC", "arc/SC->PCP"}) {
    const std::string check = fmt::format("\"id\": \"{}\", \"group\": \"arcs\", \"verdict\": ", id);
    EXPECT_NE(slurp(path("safe.json")).find(check + "\"skip\""), std::string::npos) << id;
    EXPECT_NE(slurp(path("unsafe.json")).find(check + "\"pass\""), std::string::npos) << id;
  }
}

// A device call that never returns (the simulator's Linux 6.12 hang, sent in process) is a
// failed kernel-hang check: the command reports what it has and exits 1 instead of freezing.
TEST_F(ConformCommand, AHangingCallIsAKernelHangAndExitsOne) {
  auto r = run({"conform", "sim:mlx5,size=64K,hang-sc-pc=1,transport=direct", "--call-timeout",
                "200ms", "--json", path("hang.json")});
  EXPECT_EQ(r.code, kExitFailed) << r.out << r.err;
  EXPECT_NE(r.out.find("watchdog/kernel-hang"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kernel-hang: SET MIG_DEVICE_STATE SC->PC did not return within 0.2 s"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("the device was abandoned"), std::string::npos) << r.err;
  const std::string json = slurp(path("hang.json"));
  EXPECT_NE(json.find("\"ok\": false"), std::string::npos) << json;
  EXPECT_NE(json.find("\"id\": \"watchdog/kernel-hang\", \"group\": \"watchdog\", "
                      "\"verdict\": \"fail\""),
            std::string::npos)
      << json;
}

TEST_F(ConformCommand, KernelLogOptions) {
  // A simulator's run watches a log only when given one; old lines in it do not count.
  std::ofstream(path("kmsg")) << "4,1,100,-;WARNING: CPU: 0 PID: 1 at old.c:1 before\n";
  auto watched = run(
      {"conform", "-q", "sim:mtty,keep-state=0,transport=direct", "--kernel-log", path("kmsg")});
  EXPECT_EQ(watched.code, kExitOk) << watched.out << watched.err;
  auto missing = run({"conform", "sim:mtty,transport=direct", "--kernel-log", path("nope")});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_NE(missing.err.find(path("nope")), std::string::npos) << missing.err;
  for (auto bad : std::vector<std::vector<std::string>>{
           {"--kernel-log-ignore", "(("}, {"--call-timeout", "0s"}, {"--call-timeout", "soon"}}) {
    std::vector<std::string> args = {"conform", "sim:mtty,transport=direct"};
    args.insert(args.end(), bad.begin(), bad.end());
    auto r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << bad[0] << " " << bad[1];
    EXPECT_NE(r.err.find(bad[0] == "--call-timeout" ? "--call-timeout" : "(("), std::string::npos)
        << r.err;
  }
}

TEST_F(ConformCommand, QuietPrintsOnlyTheSummary) {
  auto r = run({"conform", "-q", "sim:stopcopy,size=64K,transport=direct"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.out.rfind("conform: ", 0), 0u) << r.out;
}

TEST_F(ConformCommand, UsageAndOpenErrors) {
  for (auto args :
       std::vector<std::vector<std::string>>{{"conform"},
                                             {"conform", "sim:nope"},
                                             {"conform", "sim:mtty", "sim:mtty"},
                                             {"conform", "sim:mtty", "--bogus"},
                                             {"conform", "sim:mtty", "--buffer-size", "0"}}) {
    auto r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << args.back();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  auto missing = run({"conform", "/dev/vfio/devices/vfio999"});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_NE(missing.err.find("vfio999"), std::string::npos) << missing.err;

  // Refused before any check touched the device.
  auto unwritable =
      run({"conform", "sim:mtty,transport=direct", "--json", path("no/such/dir/c.json")});
  EXPECT_EQ(unwritable.code, kExitUsage);
  EXPECT_NE(unwritable.err.find("c.json"), std::string::npos) << unwritable.err;
  EXPECT_EQ(unwritable.out, "");
}

TEST_F(ConformCommand, ListedInHelp) {
  auto r = run({"--help"});
  EXPECT_NE(r.out.find("conform"), std::string::npos);
  auto help = run({"conform", "--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("--json FILE"), std::string::npos);
}

}  // namespace
}  // namespace vfio::cli
