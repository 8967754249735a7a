// Bad and outsized input to the vfio-mig program: each is a usage error (exit 2) with a message
// naming the limit, found before any work and without a large allocation.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/container.h"
#include "core/untrusted_text.h"
#include "faults/matrix.h"
#include "faults/plan.h"
#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;
using BoundedInputs = testing::TempDirTest;

constexpr auto kDevice = "sim:plain,size=4K";

// The process's peak RSS in KiB: it grows only if the call allocated beyond the earlier peak.
long peak_rss_kib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

void expect_usage(const testing::Run& r, std::string_view message) {
  EXPECT_EQ(r.code, kExitUsage) << r.err;
  EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");  // refused before anything ran
}

bool valid_utf8(std::string_view s) {
  while (!s.empty()) {
    auto n = utf8_sequence_length(s);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST_F(BoundedInputs, PlanFilesAreReadWithABound) {
  const long before = peak_rss_kib();
  expect_usage(run({"faults", "--plan", "/dev/zero", kDevice, kDevice}), "larger than 1 MiB");
  EXPECT_LT(peak_rss_kib() - before, 16 * 1024);

  std::ofstream(path("big.plan")) << std::string(faults::kMaxPlanBytes + 1, '#');
  expect_usage(run({"faults", "--plan", path("big.plan"), kDevice, kDevice}), "larger than 1 MiB");
  expect_usage(run({"faults", "--plan", dir_.string(), kDevice, kDevice}), "is a directory");
  expect_usage(run({"faults", "--plan", path("none.plan"), kDevice, kDevice}),
               "cannot open plan " + path("none.plan") + ": No such file");

  // At the limit a plan is still a plan.
  std::ofstream(path("ok.plan")) << "# a comment\n" + std::string(1000, '\n');
  auto ok = run({"faults", "--plan", path("ok.plan"), kDevice, kDevice});
  EXPECT_EQ(ok.code, kExitOk) << ok.err;
  EXPECT_NE(ok.out.find("verdict: pass"), std::string::npos) << ok.out;
}

TEST_F(BoundedInputs, RandomCaseCountIsCapped) {
  const long before = peak_rss_kib();
  expect_usage(run({"faults", "--matrix", "save", "--profile", "plain", "--random",
                    "18446744073709551615", "--list"}),
               "--random: at most 100000 cases");
  expect_usage(run({"faults", "--matrix", "save", "--random", "100001", "--list"}),
               "at most 100000");
  EXPECT_LT(peak_rss_kib() - before, 16 * 1024);
  expect_usage(run({"faults", "--matrix", "save", "--random", "18446744073709551616"}),
               "is too large");
  // The library refuses too, for callers other than the CLI.
  faults::CaseConfig cfg;
  auto e =
      faults::enumerate_cases(faults::Scenario::kSave, cfg, false, faults::kMaxRandomCases + 1, 1);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("at most 100000"), std::string::npos);
}

TEST_F(BoundedInputs, StateSizesStopAtTheSimulatorsMaximum) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"save", "sim:plain,size=65G", "-o", path("s.bin")},
           {"load", "sim:mlx5,size=1T", "-i", path("s.bin")},
           {"probe", "sim:plain,size=68719476737"},
           {"migrate", "sim:plain,size=65G", "sim:plain,size=65G"},
           {"conform", "sim:p2p,size=100G"},
           {"demo", "--size", "1T"},
           {"faults", "--matrix", "save", "--size", "65G"},
           {"faults", "--fault", "", "sim:plain,size=65G", kDevice}}) {
    auto r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("above the maximum of 64 GiB"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(path("s.bin")));
}

TEST_F(BoundedInputs, SingleValuedOptionsOnlyOnce) {
  expect_usage(run({"load", "-i", "bad", "-i", "good", kDevice}), "--input given twice");
  expect_usage(run({"faults", "--matrix", "save", "--matrix=load"}), "--matrix given twice");
  expect_usage(run({"demo", "--size", "1M", "--size", "2M"}), "--size given twice");
}

TEST_F(BoundedInputs, NumbersThatOverflowAreRefused) {
  constexpr auto kHuge = "99999999999999999999";
  expect_usage(run({"faults", "--matrix", "save", "--case", "random.1.99999999999999999999"}),
               "bad random case id");
  expect_usage(run({"faults", "--matrix", "save", "--case", "random.-1.2"}), "bad random case id");
  expect_usage(run({"faults", "--matrix", "save", "--seed", kHuge}), "too large");
  expect_usage(run({"faults", "--matrix", "save", "--jobs", kHuge}), "--jobs");
  expect_usage(run({"faults", "--matrix", "save", "--shard", "1/99999999999999999999"}), "--shard");
  expect_usage(run({"demo", "--downtime-ms", kHuge}), "--downtime-ms");
  expect_usage(run({"demo", "--max-iterations", kHuge}), "--max-iterations");
  expect_usage(run({"demo", "--buffer-size", "99999999999999999999K"}), "too large");
  expect_usage(run({"probe", "sim:plain,seed=99999999999999999999"}), "seed=");
}

TEST_F(BoundedInputs, ReportPathsAreCheckedBeforeTheOperation) {
  ASSERT_EQ(run({"save", kDevice, "-o", path("s.bin")}).code, kExitOk);
  expect_usage(run({"load", kDevice, "-i", path("s.bin"), "--json", "/nonexistent/x.json"}),
               "--json /nonexistent/x.json: no directory /nonexistent");
  expect_usage(run({"load", kDevice, "-i", path("s.bin"), "--json", dir_.string()}),
               "is a directory");
  expect_usage(run({"save", kDevice, "-o", path("t.bin"), "--json", path("no/dir/x.json")}),
               "no directory");
  EXPECT_FALSE(std::filesystem::exists(path("t.bin")));  // the save never started
  expect_usage(
      run({"faults", "--matrix", "save", "--profile", "plain", "--junit", "/nonexistent/j.xml"}),
      "--junit /nonexistent/j.xml");
  expect_usage(run({"conform", kDevice, "--json", "/nonexistent/c.json"}), "no directory");
  expect_usage(run({"probe", kDevice, "--json", ""}), "an empty path");
  // A file name alone goes to the working directory, which exists.
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  auto r = run({"probe", kDevice, "--json", "p.json"});
  std::filesystem::current_path(cwd);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(std::filesystem::exists(path("p.json")));
}

TEST_F(BoundedInputs, OverviewSummariesAreWholeLines) {
  auto help = run({"--help"});
  ASSERT_EQ(help.code, kExitOk);
  for (const auto& c : all_commands()) {
    auto first = c.spec.summary.substr(0, c.spec.summary.find('\n'));
    EXPECT_TRUE(first.ends_with('.')) << c.spec.name << ": " << first;
    EXPECT_LE(first.size() + 14, 100u) << c.spec.name;
    EXPECT_NE(help.out.find(fmt::format("  {:<11} {}\n", c.spec.name, first)), std::string::npos)
        << help.out;
    // COMMAND --help carries all of it.
    auto own = run({std::string(c.spec.name), "--help"});
    EXPECT_NE(own.out.find(c.spec.summary), std::string::npos) << own.out;
  }
}

// A header naming 64 devices with 256-byte ids that try to retitle the terminal, and bytes that
// are not UTF-8: the error is one short printable line, the JSON report valid UTF-8.
TEST_F(BoundedInputs, HostileDeviceIdsAreEscapedAndShortened) {
  container::Header header;
  for (int i = 0; i < 64; ++i) {
    std::string id = "\x1b]0;pwned\x07\xff\xc3";
    id.resize(container::kMaxIdLength, 'A');
    header.device_ids.push_back(id);
  }
  {
    auto file = AtomicFile::create(path("hostile.bin"));
    ASSERT_TRUE(file);
    FdChannel channel(file->fd(), file->path(), /*owns_fd=*/false);
    StreamWriter out(channel);
    container::write_header(out, header);
    ASSERT_TRUE(out.flush());
    ASSERT_TRUE(file->commit());
  }
  auto r = run({"load", kDevice, "-i", path("hostile.bin"), "--json", path("r.json")});
  EXPECT_EQ(r.code, kExitFailed) << r.err;
  EXPECT_NE(r.err.find("(+60 more)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\\x1b]0;pwned\\x07\\xff\\xc3AAA"), std::string::npos) << r.err;
  EXPECT_LT(r.err.size(), 1024u);
  EXPECT_TRUE(valid_utf8(r.err));
  for (char c : r.err.substr(0, r.err.size() - 1))
    EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "control byte on the terminal";
  const std::string json = read_file(path("r.json"));
  EXPECT_TRUE(valid_utf8(json));
  EXPECT_NE(json.find("\"ok\": false"), std::string::npos) << json;
  for (char c : json.substr(0, json.size() - 1)) EXPECT_GE(static_cast<unsigned char>(c), 0x20);
}

}  // namespace
}  // namespace vfio::cli
