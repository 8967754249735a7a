// The sharper oracles: tolerable faults must be absorbed, and a misbehaving engine (through
// core's test seams) fails the cases that catch it.
#include <gtest/gtest.h>

#include "core/retry.h"
#include "faults/matrix.h"

namespace vfio::faults {
namespace {

CaseResult run(Scenario scenario, const std::string& plan, const std::string& profile = "mlx5") {
  CaseSpec spec;
  spec.id = "test";
  spec.scenario = scenario;
  spec.plan = plan;
  CaseConfig cfg;
  cfg.profile = profile;
  return run_watched(spec, cfg, WatchdogOptions{});
}

std::string why(const CaseResult& r) {
  std::string out = r.error;
  for (const auto& p : r.judgement.problems) out += "\n  " + p;
  return out;
}

Action action(Kind kind, std::uint64_t amount = 0) {
  Action a{kind};
  a.amount = amount;
  return a;
}

TEST(Tolerable, ShortDelayEintrAndEagainAreTheTolerableFaults) {
  EXPECT_TRUE(tolerable(action(Kind::kShort, 1)));
  EXPECT_FALSE(tolerable(action(Kind::kShort, 0)));  // a read of 0 bytes is an end of file
  EXPECT_TRUE(tolerable(action(Kind::kDelay)));
  EXPECT_TRUE(tolerable(action(Kind::kErrno, EINTR)));
  EXPECT_TRUE(tolerable(action(Kind::kErrno, EAGAIN)));
  EXPECT_FALSE(tolerable(action(Kind::kErrno, EIO)));
  for (Kind k : {Kind::kLand, Kind::kAsyncReset, Kind::kCorrupt, Kind::kDrop, Kind::kDup,
                 Kind::kTruncate, Kind::kEof, Kind::kHang, Kind::kCancel})
    EXPECT_FALSE(tolerable(action(k, 1))) << kind_name(k);
}

// Every device call and both channel ends, answered EINTR, EAGAIN or short: the migration
// still succeeds and the destination is exact.
TEST(Tolerable, TheEngineAbsorbsThemAtEveryCall) {
  for (const char* plan : {
           "read side=src nth=2 -> errno=EINTR",
           "read side=src every=1 times=50 -> errno=EAGAIN",
           "write side=dst nth=1 -> errno=EINTR",
           "write side=dst nth=3 -> errno=EAGAIN",
           "write side=dst every=2 -> short=100",
           "read side=src every=1 -> short=1000",
           "set side=src nth=1 -> errno=EINTR",
           "set:S>SC side=src times=3 -> errno=EAGAIN",
           "get:state side=dst nth=1 -> errno=EINTR",
           "get:data-size side=src times=2 -> errno=EINTR",
           "get:migration side=src nth=1 -> errno=EINTR",
           "config-read side=src nth=1 -> errno=EINTR",
           "config-write side=dst times=5 -> errno=EAGAIN",
           "send nth=2 -> errno=EINTR",
           "send every=3 -> short=7",
           "recv nth=2 -> errno=EAGAIN",
           "recv every=2 -> short=13",
           "set side=dst nth=2 -> delay=1ms",
       }) {
    auto r = run(Scenario::kMigrate, plan);
    EXPECT_TRUE(r.error.empty()) << plan << ": " << r.error;
    EXPECT_FALSE(r.fired.empty()) << plan;
    EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << plan << why(r);
  }
}

// Restores the engine's retry bound however the test ends.
struct NoRetries {
  NoRetries() { set_transient_retry_limit(0); }
  ~NoRetries() { set_transient_retry_limit(kMaxTransientRetries); }
};

TEST(Tolerable, AnEngineThatGivesUpOnEintrFailsTheCase) {
  const char* plans[] = {"read side=src nth=2 -> errno=EINTR",
                         "write side=dst nth=1 -> errno=EAGAIN",
                         "set side=src nth=1 -> errno=EINTR", "send nth=2 -> errno=EINTR"};
  NoRetries intolerant;
  for (const char* plan : plans) {
    auto r = run(Scenario::kMigrate, plan);
    EXPECT_FALSE(r.error.empty()) << plan;
    ASSERT_EQ(r.judgement.verdict, Verdict::kFail) << plan << why(r);
    EXPECT_NE(r.judgement.problems[0].find("only tolerable faults fired"), std::string::npos)
        << why(r);
  }
  // A fault that is not tolerable keeps the old oracle: a clean failure passes.
  auto r = run(Scenario::kMigrate, "read side=src nth=2 -> errno=EIO");
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << why(r);
}

bool has_note(const CaseResult& r, std::string_view text) {
  for (const auto& n : r.judgement.notes)
    if (n.find(text) != std::string::npos) return true;
  return false;
}

// Sessions log DMA on profiles that can (mlx5): faults on its START, REPORT and STOP fail the
// migration cleanly and never leave logging running; a STOP that fails leaves it running, and
// the next save must still work (it failed with EBUSY: the engine now stops the stale logging).
TEST(DmaLogging, FaultsOnStartReportAndStopNeverSpoilTheNextSave) {
  for (auto [scenario, plan] :
       {std::pair{Scenario::kSave, "set:dma-start side=src nth=1 -> errno=EIO"},
        std::pair{Scenario::kSave, "get:dma-report side=src nth=1 -> errno=EIO"},
        std::pair{Scenario::kPrecopy, "get:dma-report side=src nth=3 -> errno=EIO"}}) {
    auto r = run(scenario, plan);
    EXPECT_FALSE(r.error.empty()) << plan;
    EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << plan << why(r);
  }
  for (const char* plan :
       {"set:dma-stop side=src nth=1 -> errno=EIO", "set:dma-stop side=src nth=1 -> hang"}) {
    auto r = run(Scenario::kMigrate, plan);
    EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << plan << why(r);
    EXPECT_TRUE(has_note(r, "DMA logging left running: its stop failed")) << plan << why(r);
  }
}

Observation failed_save() {
  Observation o;
  o.scenario = Scenario::kSave;
  o.error = "injected";
  o.source_image = {1, 100};
  o.src.present = true;
  o.src.state = uapi::State::kRunning;
  o.src.image = o.source_image;
  return o;
}

TEST(DmaLogging, LoggingLeftRunningOrASpoiledNextSaveFailTheCase) {
  Observation o = failed_save();
  EXPECT_EQ(judge(o).verdict, Verdict::kPass);
  o.src.dma_logging = true;  // an engine that never stops it
  EXPECT_EQ(judge(o).verdict, Verdict::kFail);
  o.src.dma_stop_faulted = true;  // the device refused the stop: only a note...
  o.next_save_ok = true;
  EXPECT_EQ(judge(o).verdict, Verdict::kPass);
  o.next_save_ok = false;  // ...as long as the next save works
  o.next_save_error = "DMA logging start: EBUSY";
  auto j = judge(o);
  ASSERT_EQ(j.verdict, Verdict::kFail);
  EXPECT_NE(j.problems[0].find("a clean save after the case fails"), std::string::npos);
}

// Between steps: the clean run of every scenario keeps the invariants (so the checks run and
// hold), and a violation seen between steps fails a case that otherwise passes.
TEST(Invariants, HoldBetweenStepsAndAViolationFailsTheCase) {
  for (Scenario s : {Scenario::kSave, Scenario::kLoad, Scenario::kMigrate, Scenario::kPrecopy,
                     Scenario::kP2pMulti}) {
    auto r = run(s, "");
    EXPECT_EQ(r.judgement.verdict, Verdict::kPass) << scenario_name(s) << why(r);
  }
  Observation o = failed_save();
  ASSERT_EQ(judge(o).verdict, Verdict::kPass);
  o.invariant_violations = {
      "src device 0: between steps (stop-copy) the engine believes SC but "
      "the device is in S"};
  auto j = judge(o);
  ASSERT_EQ(j.verdict, Verdict::kFail);
  EXPECT_EQ(j.problems[0].rfind("invariant: ", 0), 0u) << j.problems[0];
}

}  // namespace
}  // namespace vfio::faults
