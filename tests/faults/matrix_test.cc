// The matrix in ctest: migrate on mlx5 and cancel on mtty, with zero oracle failures, and a
// JUnit file left in the build directory for CI to keep.
#include "faults/matrix.h"

#include <gtest/gtest.h>

#include <fstream>

#include "faults/report.h"

namespace vfio::faults {
namespace {

std::string failures(const MatrixResult& r) {
  std::string out;
  for (const auto& c : r.cases)
    if (is_failure(c.judgement.verdict))
      out += c.repro + ": " + std::string(verdict_name(c.judgement.verdict)) + ": " +
             (c.judgement.problems.empty() ? "" : c.judgement.problems[0]) + "\n";
  return out;
}

TEST(Matrix, MigrateOnMlx5AndCancelOnMttyFindNoFailures) {
  MatrixResult all;
  for (auto [scenario, profile] :
       {std::pair{Scenario::kMigrate, "mlx5"}, std::pair{Scenario::kCancel, "mtty"}}) {
    MatrixOptions o;
    o.scenarios = {scenario};
    o.profiles = {profile};
    o.random = 20;
    o.seed = 3;
    auto r = run_matrix(o);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(tally(*r).failed, 0u) << failures(*r);
    if (scenario == Scenario::kMigrate) {
      EXPECT_GE(r->cases.size(), 300u);
    }
    all.cases.insert(all.cases.end(), r->cases.begin(), r->cases.end());
    all.wall += r->wall;
    all.jobs = r->jobs;
  }
  const std::string path = VFIO_FAULTS_REPORT_DIR "/faults-matrix-test.xml";
  ASSERT_TRUE(write_junit(all, path));
  std::ifstream in(path);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
}

TEST(Matrix, PrecopyAndP2pMultiOnMttyFindNoFailures) {
  // mtty is the small one: its 72-byte state keeps these quick in ctest.
  MatrixOptions o;
  o.scenarios = {Scenario::kPrecopy, Scenario::kP2pMulti};
  o.profiles = {"mtty"};
  o.random = 10;
  o.seed = 5;
  auto r = run_matrix(o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(tally(*r).failed, 0u) << failures(*r);
  EXPECT_GE(r->cases.size(), 300u);
}

TEST(Matrix, ScenariosSkipProfilesWithoutTheirFlags) {
  CaseConfig cfg;
  cfg.profile = "stopcopy";
  for (auto s : {Scenario::kPrecopy, Scenario::kP2pMulti}) {
    auto e = enumerate_cases(s, cfg, true, 5, 1);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->cases.empty());
  }
  cfg.profile = "p2p";  // P2P without PRE_COPY
  EXPECT_TRUE(enumerate_cases(Scenario::kPrecopy, cfg, true, 0, 1)->cases.empty());
  EXPECT_FALSE(enumerate_cases(Scenario::kP2pMulti, cfg, true, 0, 1)->cases.empty());
}

TEST(Matrix, CaseIdsAreStableAndFindable) {
  CaseConfig cfg;
  cfg.profile = "p2p";
  auto a = enumerate_cases(Scenario::kMigrate, cfg, true, 0, 0);
  auto b = enumerate_cases(Scenario::kMigrate, cfg, true, 0, 0);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->cases.size(), b->cases.size());
  for (std::size_t i = 0; i < a->cases.size(); ++i) EXPECT_EQ(a->cases[i].id, b->cases[i].id);
  auto c = find_case(Scenario::kMigrate, cfg, a->cases[17].id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->plan, a->cases[17].plan);
  auto r1 = find_case(Scenario::kMigrate, cfg, "random.9.4");
  auto r2 = find_case(Scenario::kMigrate, cfg, "random.9.4");
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->plan, r2->plan);
}

TEST(Matrix, RandomCaseIdsMustFit) {
  EXPECT_EQ(parse_random_case_id("random.9.4").value(),
            (std::pair<std::uint64_t, std::uint64_t>{9, 4}));
  for (auto id : {"random.1.99999999999999999999", "random.-1.2", "random.1", "random.1.2x",
                  "random..2", "random.1.2.3"})
    EXPECT_FALSE(parse_random_case_id(id)) << id;
}

// Each traced operation gets its cases, so the trace of the clean run is bounded: a run with
// more operations than Injector::kMaxTrace (here 8 MiB in 64-byte reads) is refused, not
// enumerated into millions of cases.
TEST(Matrix, ARunTooLongToEnumerateIsRefused) {
  CaseConfig cfg;
  cfg.profile = "plain";
  cfg.state_size = 8 << 20;
  cfg.buffer_size = 64;
  auto e = enumerate_cases(Scenario::kSave, cfg, true, 0, 0);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, EOVERFLOW);
  EXPECT_NE(e.error().message.find("more than 100000 operations"), std::string::npos)
      << e.error().message;
}

TEST(Matrix, ShardsPartitionTheCases) {
  MatrixOptions o;
  o.scenarios = {Scenario::kSave};
  o.profiles = {"mtty"};
  auto whole = run_matrix(o);
  ASSERT_TRUE(whole);
  std::size_t sum = 0;
  for (std::size_t k = 0; k < 3; ++k) {
    o.shard_index = k;
    o.shard_count = 3;
    auto part = run_matrix(o);
    ASSERT_TRUE(part);
    sum += part->cases.size();
  }
  EXPECT_EQ(sum, whole->cases.size());
}

TEST(Matrix, OraclesCatchASilentlyWrongDestination) {
  Observation o;
  o.success = true;
  o.source_image = {1, 100};
  o.dst.present = true;
  o.dst.state = uapi::State::kRunning;
  o.dst.image = {2, 100};
  auto j = judge(o);
  EXPECT_EQ(j.verdict, Verdict::kFail);
  o.dst.image = o.source_image;
  EXPECT_EQ(judge(o).verdict, Verdict::kPass);
  o.dst.open_sessions = 1;
  EXPECT_EQ(judge(o).verdict, Verdict::kFail);
}

// A case whose plan never fired exercised nothing: counted apart and noted, so a run on devices
// that no longer repeat the clean run's calls does not pass silently.
TEST(Matrix, CasesWhosePlanNeverFiredAreCounted) {
  CaseSpec spec;
  spec.id = "late";
  spec.plan = "read side=src nth=1000000 -> errno=EIO";
  auto r = run_watched(spec, CaseConfig{}, WatchdogOptions{});
  EXPECT_EQ(r.judgement.verdict, Verdict::kPass);
  ASSERT_FALSE(r.judgement.notes.empty());
  EXPECT_NE(r.judgement.notes.back().find("never fired"), std::string::npos);
  MatrixResult m;
  m.cases = {r};
  EXPECT_EQ(tally(m).never_fired, 1u);
  EXPECT_NE(summary_line(tally(m)).find(", 1 never fired"), std::string::npos);
  spec.plan = "read side=src nth=1 -> errno=EIO";
  m.cases = {run_watched(spec, CaseConfig{}, WatchdogOptions{})};
  EXPECT_EQ(tally(m).never_fired, 0u);
}

}  // namespace
}  // namespace vfio::faults
