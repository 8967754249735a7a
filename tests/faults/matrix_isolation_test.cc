// The matrix's process isolation and kernel-health oracle, driven by a test hook that runs in
// the case's process: a crash ends one case, a case that never ends is killed, a case stuck in
// the kernel stops the run with its reproduction command, a kernel WARNING fails its case. And
// the same matrix gives the same cases and verdicts run after run.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>

#include "faults/matrix.h"
#include "faults/report.h"
#include "tests/faults/stuck_fuse.h"

namespace vfio::faults {
namespace {

using namespace std::chrono_literals;

MatrixOptions save_on_mtty() {
  MatrixOptions o;
  o.scenarios = {Scenario::kSave};
  o.profiles = {"mtty"};
  o.jobs = 2;
  o.batch = 8;
  return o;
}

std::map<std::string, const CaseResult*> by_id(const MatrixResult& r) {
  std::map<std::string, const CaseResult*> out;
  for (const auto& c : r.cases) out[c.spec.id] = &c;
  return out;
}

TEST(MatrixIsolation, ACrashingCaseIsCrashedAndTheRunGoesOn) {
  MatrixOptions o = save_on_mtty();
  const auto all = run_matrix(o);
  ASSERT_TRUE(all);
  ASSERT_GE(all->cases.size(), 20u);
  const std::string victim = all->cases[10].spec.id;
  o.in_child = [victim](const CaseSpec& spec) {
    if (spec.id != victim) return;
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
    std::abort();
  };
  auto r = run_matrix(o);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->cases.size(), all->cases.size());
  EXPECT_EQ(r->not_run, 0u);
  auto cases = by_id(*r);
  EXPECT_EQ(cases[victim]->judgement.verdict, Verdict::kCrashed);
  ASSERT_FALSE(cases[victim]->judgement.problems.empty());
  EXPECT_NE(cases[victim]->judgement.problems[0].find("SIGABRT"), std::string::npos);
  const Tally t = tally(*r);
  EXPECT_EQ(t.crashed, 1u);
  EXPECT_EQ(t.failed, 1u);
  EXPECT_EQ(t.passed + t.state_lost, all->cases.size() - 1);
  EXPECT_NE(summary_line(t).find("1 crashed"), std::string::npos) << summary_line(t);
}

TEST(MatrixIsolation, ACaseThatNeverEndsIsATimeout) {
  MatrixOptions o = save_on_mtty();
  o.watchdog.timeout = 200ms;
  o.watchdog.cancel_grace = 100ms;
  o.in_child = [](const CaseSpec& spec) {
    if (spec.id == "clean")
      for (;;) ::pause();
  };
  auto r = run_matrix(o);
  ASSERT_TRUE(r);
  auto cases = by_id(*r);
  EXPECT_EQ(cases["clean"]->judgement.verdict, Verdict::kTimeout);
  EXPECT_EQ(tally(*r).timed_out, 1u);
  EXPECT_EQ(tally(*r).failed, 1u);
  EXPECT_EQ(r->not_run, 0u);
}

// The matrix's own watchdog in the child: a hang that cancelling does not end.
TEST(MatrixIsolation, ACaseStuckInTheKernelStopsTheRunWithItsReproduction) {
  if (!test::can_mount_fuse()) GTEST_SKIP() << "needs root and /dev/fuse";
  MatrixOptions o = save_on_mtty();
  o.jobs = 1;
  o.watchdog.timeout = 200ms;
  o.watchdog.cancel_grace = 100ms;
  o.kill_grace = 500ms;
  o.in_child = [](const CaseSpec& spec) {
    if (spec.id == "clean") test::block_in_fuse_request();
  };
  auto r = run_matrix(o);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->cases.size(), 1u);  // the first case of the first batch
  const CaseResult& c = r->cases[0];
  EXPECT_EQ(c.judgement.verdict, Verdict::kKernelHang);
  ASSERT_FALSE(c.judgement.problems.empty());
  const std::string& why = c.judgement.problems[0];
  EXPECT_NE(why.find("state D) in openat"), std::string::npos) << why;
  EXPECT_GT(r->not_run, 0u);
  EXPECT_NE(r->stopped.find("reproduce: vfio-mig faults --matrix save --profile mtty --case clean"),
            std::string::npos)
      << r->stopped;
  // The process was left behind; end it for the next tests.
  const auto at = why.find("process ") + 8;
  const pid_t pid = static_cast<pid_t>(std::stol(why.substr(at)));
  EXPECT_EQ(::kill(pid, 0), 0);
  test::release_stuck_fuse(pid);
  EXPECT_EQ(::waitpid(pid, nullptr, 0), pid);
}

TEST(MatrixIsolation, KernelTroubleWhileACaseRanFailsThatCase) {
  const auto log = std::filesystem::temp_directory_path() /
                   ("vfio-mig-matrix-kmsg-" + std::to_string(::getpid()));
  std::ofstream(log) << "4,1,10,-;WARNING: CPU: 0 PID: 1 at old.c:1 logged before the run\n";
  MatrixOptions o = save_on_mtty();
  o.jobs = 1;  // one case at a time: each line belongs to the case that ran
  o.base.kernel_log = log.string();
  o.in_child = [&log](const CaseSpec& spec) {
    if (spec.id == "clean")
      std::ofstream(log, std::ios::app)
          << "4,2,20,-;WARNING: CPU: 0 PID: 9 at drivers/vfio/vfio_main.c:99 vfio_x\n"
          << "6,3,30,-;mtty: PCI config write @0x8 of 4 bytes not handled\n";
  };
  auto r = run_matrix(o);
  ASSERT_TRUE(r);
  auto cases = by_id(*r);
  const Judgement& j = cases["clean"]->judgement;
  EXPECT_EQ(j.verdict, Verdict::kFail);
  EXPECT_EQ(j.problems, (std::vector<std::string>{
                            "kernel log: warning: WARNING: CPU: 0 PID: 9 at "
                            "drivers/vfio/vfio_main.c:99 vfio_x",
                            "kernel log: not handled: mtty: PCI config write @0x8 of 4 bytes not "
                            "handled"}));
  EXPECT_EQ(tally(*r).failed, 1u);
  // Known noise can be accepted.
  o.base.kernel_log_ignore = "vfio_main\\.c:99|@0x8 ";
  r = run_matrix(o);
  ASSERT_TRUE(r);
  EXPECT_EQ(tally(*r).failed, 0u);
  std::filesystem::remove(log);
  o.base.kernel_log_ignore = "((";
  EXPECT_FALSE(run_matrix(o));
}

// Cases and verdicts must not depend on thread timing or the clock: the same matrix twice, on
// different job counts, in child processes and in threads. precopy is where pre-copy rounds and
// switchover-ack meet the clock; p2p-multi and the random cases interleave the most threads.
TEST(MatrixIsolation, TheSameMatrixGivesTheSameCasesAndVerdicts) {
  auto run = [](unsigned jobs, std::size_t batch) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto [scenario, profile] : {std::pair{Scenario::kPrecopy, "plain"},
                                     {Scenario::kP2pMulti, "mtty"},
                                     {Scenario::kMigrate, "mlx5"}}) {
      MatrixOptions o;
      o.scenarios = {scenario};
      o.profiles = {profile};
      o.random = 40;
      o.seed = 7;
      o.jobs = jobs;
      o.batch = batch;
      // Only injected hangs may end a case early: a slow machine (ASan, a loaded CI) must not
      // turn a slow case into a timeout in one run and a pass in the other.
      o.watchdog.timeout = std::chrono::minutes(2);
      auto r = run_matrix(o);
      EXPECT_TRUE(r);
      if (!r) return out;
      for (const auto& c : r->cases)
        out.emplace_back(fmt::format("{}/{}/{}", scenario_name(scenario), profile, c.spec.id),
                         std::string(verdict_name(c.judgement.verdict)));
    }
    return out;
  };
  const auto first = run(2, kDefaultBatch);
  const auto second = run(1, 0);
  ASSERT_GT(first.size(), 1500u);
  ASSERT_EQ(first.size(), second.size());
  for (std::size_t i = 0; i < first.size(); ++i) ASSERT_EQ(first[i], second[i]) << "case " << i;
}

// Enumeration alone, for every scenario and profile: the case lists match.
TEST(MatrixIsolation, EveryScenarioListsTheSameCasesTwice) {
  for (auto scenario : all_scenarios()) {
    for (auto profile : {"mtty", "mlx5", "plain", "p2p", "stopcopy"}) {
      CaseConfig cfg;
      cfg.profile = profile;
      auto a = enumerate_cases(scenario, cfg, true, 20, 1);
      auto b = enumerate_cases(scenario, cfg, true, 20, 1);
      ASSERT_TRUE(a && b);
      ASSERT_EQ(a->cases.size(), b->cases.size()) << scenario_name(scenario) << " " << profile;
      for (std::size_t i = 0; i < a->cases.size(); ++i) {
        EXPECT_EQ(a->cases[i].id, b->cases[i].id);
        EXPECT_EQ(a->cases[i].plan, b->cases[i].plan);
      }
    }
  }
}

}  // namespace
}  // namespace vfio::faults
