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

}  // namespace
}  // namespace vfio::faults
