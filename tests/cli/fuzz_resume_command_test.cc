// `vfio-mig fuzz-resume`: usage errors exit 2, the same seed gives the same JSON, a corpus of
// saved streams is fuzzed, --json - owns stdout (the engine itself: tests/faults).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;
using testing::slurp;

class FuzzResumeCommand : public testing::TempDirTest {
 protected:
  // The JSON without its timing line, the one part that differs between equal runs.
  static std::string untimed(std::string json) {
    const auto at = json.find("  \"timing\"");
    return at == std::string::npos ? json : json.substr(0, at);
  }
};

TEST_F(FuzzResumeCommand, UsageErrorsExit2) {
  const std::string dev = "sim:mtty,transport=direct";
  const std::string out = path("out");
  std::filesystem::create_directories(path("empty"));
  std::filesystem::create_directories(path("junk"));
  std::ofstream(path("junk/x"), std::ios::binary) << "not a stream";
  const std::vector<std::vector<std::string>> bad = {
      {"fuzz-resume"},
      {"fuzz-resume", dev, "--runs", "0"},
      {"fuzz-resume", dev, "--seconds", "x"},
      {"fuzz-resume", dev, "--seed", "abc"},
      {"fuzz-resume", dev, "--health-every", "0"},
      {"fuzz-resume", dev, "--call-timeout", "soon"},
      {"fuzz-resume", dev, "--corpus", path("missing")},
      {"fuzz-resume", dev, "--corpus", path("empty")},
      {"fuzz-resume", dev, "--corpus", path("junk")},
      {"fuzz-resume", dev, "--out", path("junk/x")},
      {"fuzz-resume", "sim:nosuch", "--runs", "1"},
  };
  for (auto args : bad) {
    if (args.size() > 2 && args[2] != "--out") args.insert(args.end(), {"--out", out});
    auto r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << args.back() << ": " << r.err;
    EXPECT_NE(r.err.find("vfio-mig fuzz-resume: "), std::string::npos) << r.err;
  }
  auto help = run({"fuzz-resume", "--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("--corpus DIR"), std::string::npos) << help.out;
}

TEST_F(FuzzResumeCommand, TheSameSeedGivesTheSameJson) {
  auto once = [&](const std::string& seed, const std::string& json) {
    auto r = run({"fuzz-resume", "sim:plain,size=2K,transport=direct", "--runs", "300", "--seed",
                  seed, "--out", path("out"), "--json", path(json)});
    EXPECT_EQ(r.code, kExitOk) << r.out << r.err;
    EXPECT_NE(r.out.find("fuzz-resume: 300 inputs in"), std::string::npos) << r.out;
    return untimed(slurp(path(json)));
  };
  const auto a = once("9", "a.json"), b = once("9", "b.json"), c = once("10", "c.json");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a.find("\"inputs\": 300,"), std::string::npos) << a;
  EXPECT_NE(a.find("\"accepted_corrupt\": 0,"), std::string::npos) << a;
  EXPECT_NE(a.find("\"layout\": \"sim:plain\""), std::string::npos) << a;
}

TEST_F(FuzzResumeCommand, FuzzesACorpusOfSavedStreams) {
  std::filesystem::create_directories(path("corpus"));
  for (const char* seed : {"1", "2"}) {
    auto s = run({"save", std::string("sim:mtty,transport=direct,seed=") + seed, "-o",
                  path(std::string("corpus/") + seed + ".vfio-mig"), "-q"});
    ASSERT_EQ(s.code, kExitOk) << s.err;
  }
  auto r = run({"fuzz-resume", "sim:mtty,transport=direct", "--corpus", path("corpus"), "--runs",
                "200", "--seed", "1", "--out", path("out"), "--json", "-"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  // stdout holds the JSON alone; what the user reads went to stderr.
  EXPECT_EQ(r.out.rfind("{\n  \"command\": \"fuzz-resume\"", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\"seeds\": 2,"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("fuzz-resume: 200 inputs"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace vfio::cli
