// The vfio-mig program end to end, in process: exit codes, messages, files.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "cli/commands.h"
#include "tests/cli/cli_run.h"

namespace vfio::cli {
namespace {

using testing::run;
using testing::slurp;
using ProgramTest = testing::TempDirTest;

TEST_F(ProgramTest, HelpAndVersion) {
  auto help = run({"--help"});
  EXPECT_EQ(help.code, kExitOk);
  for (auto* cmd : {"demo", "probe", "save", "load", "migrate"})
    EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
  EXPECT_EQ(run({}).code, kExitUsage);
  auto version = run({"--version"});
  EXPECT_EQ(version.code, kExitOk);
  EXPECT_EQ(version.out.rfind("vfio-mig ", 0), 0u);
  auto save_help = run({"save", "--help"});
  EXPECT_EQ(save_help.code, kExitOk);
  EXPECT_NE(save_help.out.find("--output FILE"), std::string::npos);
  // A command that takes a device lists the device forms; demo takes none.
  EXPECT_NE(save_help.out.find("\ndevices:\n  sim:PROFILE"), std::string::npos) << save_help.out;
  EXPECT_EQ(run({"demo", "--help"}).out.find("devices:"), std::string::npos);
}

TEST_F(ProgramTest, UsageErrorsExitTwoWithOneLine) {
  for (auto args : std::vector<std::vector<std::string>>{{"teleport"},
                                                         {"save", "sim:mlx5"},
                                                         {"migrate", "sim:mlx5"},
                                                         {"probe", "sim:unknown-profile"},
                                                         {"demo", "--size", "lots"},
                                                         {"demo", "--buffer-size", "0"}}) {
    auto r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << args[0];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(ProgramTest, DemoMigratesAndVerifies) {
  auto r = run({"demo", "--size", "3M", "--json", path("demo.json")});
  ASSERT_EQ(r.code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("verified: destination state equals the source byte for byte"),
            std::string::npos);
  std::ifstream json(path("demo.json"));
  std::string text((std::istreambuf_iterator<char>(json)), {});
  EXPECT_NE(text.find("\"ok\": true"), std::string::npos);
  EXPECT_NE(text.find("\"verified\": true"), std::string::npos);
  // Each side's thread CPU time is reported, and it is not zero: both did work.
  EXPECT_TRUE(
      std::regex_search(text, std::regex("\"source\": \\{[^}]*\"cpu_seconds\": 0\\.0*[1-9]")))
      << text;
  EXPECT_TRUE(
      std::regex_search(text, std::regex("\"destination\": \\{[^}]*\"cpu_seconds\": 0\\.0*[1-9]")))
      << text;
}

TEST_F(ProgramTest, ProbeShowsFlags) {
  auto r = run({"probe", "sim:mtty"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("STOP_COPY|P2P|PRE_COPY"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RUNNING"), std::string::npos);
}

TEST_F(ProgramTest, SaveThenLoadRoundTrips) {
  auto saved = run({"save", "sim:p2p,size=1M,seed=5", "-o", path("s.bin")});
  ASSERT_EQ(saved.code, kExitOk) << saved.err;
  EXPECT_GT(std::filesystem::file_size(path("s.bin")), 1u << 20);
  auto loaded = run({"load", "sim:p2p,size=1M,seed=9", "-i", path("s.bin")});
  EXPECT_EQ(loaded.code, kExitOk) << loaded.err;
}

TEST_F(ProgramTest, SaveIsStopAndCopyUnlessAskedToPrecopy) {
  // mtty offers PRE_COPY with its 24-byte header; the 72 port bytes wait for STOP_COPY.
  auto plain = run({"save", "sim:mtty", "-o", path("plain.bin"), "--json", path("plain.json")});
  ASSERT_EQ(plain.code, kExitOk) << plain.err;
  EXPECT_NE(slurp(path("plain.json")).find("\"precopy_bytes\": 0, \"stop_copy_bytes\": 96"),
            std::string::npos)
      << slurp(path("plain.json"));
  auto pre = run(
      {"save", "sim:mtty", "--precopy", "auto", "-o", path("pre.bin"), "--json", path("pre.json")});
  ASSERT_EQ(pre.code, kExitOk) << pre.err;
  EXPECT_NE(slurp(path("pre.json")).find("\"precopy_bytes\": 24, \"stop_copy_bytes\": 72"),
            std::string::npos)
      << slurp(path("pre.json"));
  EXPECT_EQ(run({"load", "sim:mtty", "-i", path("pre.bin")}).code, kExitOk);
  auto bad = run({"save", "sim:mtty", "--precopy", "always", "-o", path("x.bin")});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_NE(bad.err.find("--precopy must be auto or off"), std::string::npos) << bad.err;
}

TEST_F(ProgramTest, ASaveThatRunsOutOfSpaceKeepsTheOldFile) {
  // A 64 KiB file system: the 1 MiB stream cannot fit, the write fails midway with ENOSPC.
  const auto small = dir_ / "small";
  std::filesystem::create_directories(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  const auto target = (small / "existing.bin").string();
  std::ofstream(target, std::ios::binary) << "the previous stream";
  auto r = run({"save", "sim:mlx5,size=1M,transport=direct", "-o", target, "-q"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("No space left"), std::string::npos) << r.err;
  std::ifstream in(target, std::ios::binary);
  std::string now((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(now, "the previous stream");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(small), {}), 1);  // no temp file
  ::umount2(small.c_str(), MNT_DETACH);
}

TEST_F(ProgramTest, LoadRejectsDamagedStreamsClearly) {
  ASSERT_EQ(run({"save", "sim:p2p,size=64K", "-o", path("s.bin")}).code, kExitOk);
  std::filesystem::resize_file(path("s.bin"), std::filesystem::file_size(path("s.bin")) / 2);
  auto truncated = run({"load", "sim:p2p", "-i", path("s.bin")});
  EXPECT_EQ(truncated.code, kExitFailed);
  EXPECT_NE(truncated.err.find("truncated"), std::string::npos) << truncated.err;

  std::ofstream(path("junk.bin")) << "this is not a migration stream at all";
  auto junk = run({"load", "sim:p2p", "-i", path("junk.bin")});
  EXPECT_EQ(junk.code, kExitFailed);
  EXPECT_NE(junk.err.find("not a vfio-mig stream"), std::string::npos) << junk.err;

  auto missing = run({"load", "sim:p2p", "-i", path("nope.bin")});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_NE(missing.err.find("nope.bin"), std::string::npos);
}

TEST_F(ProgramTest, MigrateBetweenProfilesThatDifferFails) {
  auto r = run({"migrate", "sim:mlx5,size=1M", "sim:stopcopy,size=1M"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("destination"), std::string::npos) << r.err;
}

TEST_F(ProgramTest, MigrateWithVerify) {
  auto r = run({"migrate", "--verify", "sim:mtty", "sim:mtty", "--json", path("m.json")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("verified"), std::string::npos);
}

TEST_F(ProgramTest, MigrateSeveralPairsWithPrecopy) {
  auto r = run({"migrate", "--verify", "--switchover-ack", "--downtime-ms", "1",
                "sim:mlx5,size=2M,dirty=16K/read", "sim:mlx5,size=2M", "sim:plain,size=1M",
                "sim:plain,size=1M", "--json", path("multi.json")});
  ASSERT_EQ(r.code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("pre-copy:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("verified"), std::string::npos);
  std::ifstream json(path("multi.json"));
  std::string text((std::istreambuf_iterator<char>(json)), {});
  EXPECT_NE(text.find("\"precopy_iterations\": "), std::string::npos);

  auto odd = run({"migrate", "sim:p2p", "sim:p2p", "sim:p2p"});
  EXPECT_EQ(odd.code, kExitUsage);
  auto blocked = run({"migrate", "sim:stopcopy,size=64K", "sim:stopcopy,size=64K",
                      "sim:stopcopy,size=64K", "sim:stopcopy,size=64K"});
  EXPECT_EQ(blocked.code, kExitFailed);
  EXPECT_NE(blocked.err.find("multiple VFIO devices"), std::string::npos) << blocked.err;
  auto bad = run({"migrate", "--precopy", "sometimes", "sim:p2p", "sim:p2p"});
  EXPECT_EQ(bad.code, kExitUsage);
}

// The issue's own example: two default mlx5 devices (256 MiB), over FUSE when it is usable.
TEST_F(ProgramTest, MigrateTwoDefaultMlx5Devices) {
  auto r = run({"migrate", "--verify", "sim:mlx5", "sim:mlx5"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("moved 256.0 MiB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("verified"), std::string::npos);
}

TEST_F(ProgramTest, UnopenableKernelDeviceFailsWithReason) {
  auto r = run({"probe", "/dev/vfio/devices/vfio999"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("vfio999"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace vfio::cli
