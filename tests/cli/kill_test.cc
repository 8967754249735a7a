// The built vfio-mig killed in the middle of save, load, migrate and demo over FUSE: SIGINT,
// SIGTERM and SIGKILL at seeded random moments once the operation is under way. After each:
// the process ends (none stays in D state), no mount of it is left (after SIGKILL: once the
// next vfio-mig start has cleaned up), a handled signal exits with 128+signal and one line,
// and an interrupted save leaves the previous output byte for byte, with no temporary file
// (unless the signal came after the new output was in place, which the one line says).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "simdev/fuse_cleanup.h"
#include "simdev/sim_mount.h"
#include "tests/cli/cli_run.h"

extern char** environ;

namespace vfio::cli::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
// Only against hangs; never a verdict. A whole clean run (the demo under ASan) takes longer.
constexpr auto kWatchdog = std::chrono::seconds(30);
constexpr auto kRunWatchdog = std::chrono::seconds(300);
constexpr const char* kSize = "256M";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The mounts named after `pid` (the owner tag starts with it).
bool has_mount_of(pid_t pid) {
  const std::string tag = fmt::format("{}{}.", sim::fuse_cleanup::kMountPrefix, pid);
  for (const auto& m : sim::fuse_cleanup::sim_mounts())
    if (m.mountpoint.find(tag) != std::string::npos) return true;
  return false;
}

// States of the process's threads, e.g. "DS"; empty once it is gone or a zombie.
std::string thread_states(pid_t pid) {
  std::string out;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    const std::string stat = slurp(t.path() / "stat");
    const auto close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z')
      out += stat[close + 2];
  }
  return out;
}

pid_t spawn(const std::vector<std::string>& args, const fs::path& out, const fs::path& err) {
  std::vector<char*> argv;
  const std::string bin = VFIO_MIG_BINARY;
  argv.push_back(const_cast<char*>(bin.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  if (posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for the exit status, at most `limit`; nullopt when the process did not end.
std::optional<int> wait_exit(pid_t pid, Clock::duration limit = kWatchdog) {
  const auto deadline = Clock::now() + limit;
  int status = 0;
  while (Clock::now() < deadline) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return std::nullopt;
}

// Runs vfio-mig to its end; the exit code (-1 on a hang or a signal).
int run_to_end(const std::vector<std::string>& args, const fs::path& dir) {
  const pid_t pid = spawn(args, dir / "run.out", dir / "run.err");
  auto st = wait_exit(pid, kRunWatchdog);
  if (!st) {
    ::kill(pid, SIGKILL);
    return -1;
  }
  return WIFEXITED(*st) ? WEXITSTATUS(*st) : -1;
}

class KillTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (auto ok = sim::SimMount::fuse_available(); !ok)
      GTEST_SKIP() << "FUSE unavailable: " << ok.error().describe();
  }

  struct Tally {
    int kills = 0, handled = 0, completed_first = 0, stuck_before_cleanup = 0;
  };

  // One kill of `args` with `sig` after a seeded delay once its mount exists. `save_target`:
  // the save's output, whose previous content must survive.
  void kill_once(const std::vector<std::string>& args, int sig, std::mt19937& rng, Tally& tally,
                 const fs::path& save_target = {}) {
    std::string previous;
    if (!save_target.empty()) {
      previous = fmt::format("previous output {}\n", rng());
      std::ofstream(save_target, std::ios::binary) << previous;
    }
    const pid_t pid = spawn(args, dir_ / "kill.out", dir_ / "kill.err");
    ASSERT_GT(pid, 0);
    const auto deadline = Clock::now() + kWatchdog;
    while (!has_mount_of(pid) && ::waitpid(pid, nullptr, WNOHANG) == 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 150)(rng)));
    ::kill(pid, sig);
    ++tally.kills;
    const std::string what = fmt::format("{} by signal {}", fmt::join(args, " "), sig);

    if (sig == SIGKILL) {
      // Dead, or stuck for good on its own mount: wait until it is one or the other.
      std::string states;
      auto settled = [](const std::string& s) { return s.find_first_not_of('D') == s.npos; };
      while (!settled(states = thread_states(pid)) && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (!states.empty()) ++tally.stuck_before_cleanup;
      // The next start cleans up what the killed one left.
      EXPECT_EQ(run_to_end({"probe", "sim:plain,size=4K,transport=fuse"}, dir_), 0) << what;
    }
    auto status = wait_exit(pid);
    EXPECT_TRUE(status) << what << ": still running, threads " << thread_states(pid);
    if (!status) {
      ::kill(pid, SIGKILL);
      return;
    }
    EXPECT_FALSE(has_mount_of(pid)) << what << ": mount left";
    const std::string err = slurp(dir_ / "kill.err");
    bool interrupted = false;
    if (sig == SIGKILL) {
      EXPECT_TRUE(WIFSIGNALED(*status) || WEXITSTATUS(*status) == 0) << what;
    } else {
      ASSERT_TRUE(WIFEXITED(*status)) << what << ": died of signal " << WTERMSIG(*status);
      interrupted = WEXITSTATUS(*status) == 128 + sig;
      if (interrupted) {
        ++tally.handled;
        EXPECT_NE(err.find(fmt::format("interrupted by {}", sig == SIGINT ? "SIGINT" : "SIGTERM")),
                  std::string::npos)
            << what << ": " << err;
        EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << what << ": " << err;
      } else {
        EXPECT_EQ(WEXITSTATUS(*status), 0) << what << ": " << err;  // it had finished first
        ++tally.completed_first;
      }
    }
    if (!save_target.empty()) {
      const std::string now = slurp(save_target);
      // Interrupted: the old file, unless the signal came after the rename, which it says.
      if (interrupted && err.find("it had completed before the signal") == std::string::npos) {
        EXPECT_TRUE(now == previous)
            << what << ": previous output lost (" << now.size() << " bytes now): " << err;
      } else if (interrupted) {
        EXPECT_EQ(now.size(), full_save_size_) << what << ": " << err;
      }
      // Killed outright: the old file, or the new one complete (renamed just before the kill).
      if (sig == SIGKILL && now != previous) {
        EXPECT_EQ(now.size(), full_save_size_) << what << ": previous output lost";
      }
      for (const auto& e : fs::directory_iterator(dir_)) {
        const std::string name = e.path().filename().string();
        if (!name.ends_with(".tmp")) continue;
        // After SIGKILL a temporary file may remain, named after the dead process.
        EXPECT_EQ(sig, SIGKILL) << what << ": temporary file left: " << name;
        EXPECT_EQ(name, fmt::format(".{}.vfio-mig-{}.tmp", save_target.filename().string(), pid));
        fs::remove(e.path());
      }
    }
  }

  std::size_t full_save_size_ = 0;

  void kill_many(const std::vector<std::string>& args, std::uint32_t seed,
                 const fs::path& save_target = {}) {
    std::mt19937 rng(seed);
    Tally tally;
    for (int round = 0; round < 5; ++round)
      for (int sig : {SIGINT, SIGTERM, SIGKILL}) kill_once(args, sig, rng, tally, save_target);
    // The devices and the next run work.
    EXPECT_EQ(run_to_end(args, dir_), 0) << slurp(dir_ / "run.err");
    std::printf(
        "%s: %d kills, %d handled (128+signal), %d finished first, %d stuck in D until "
        "the next start cleaned up\n",
        args[0].c_str(), tally.kills, tally.handled, tally.completed_first,
        tally.stuck_before_cleanup);
    RecordProperty("kills", tally.kills);
    RecordProperty("stuck_before_cleanup", tally.stuck_before_cleanup);
  }
};

TEST_F(KillTest, Save) {
  const std::string dev = fmt::format("sim:mlx5,size={},transport=fuse", kSize);
  ASSERT_EQ(run_to_end({"save", dev, "-o", path("full.bin"), "-q"}, dir_), 0);
  full_save_size_ = fs::file_size(path("full.bin"));
  kill_many({"save", dev, "-o", path("out.bin"), "-q"}, 11, path("out.bin"));
}

TEST_F(KillTest, Load) {
  const std::string dev = fmt::format("sim:mlx5,size={},transport=fuse", kSize);
  ASSERT_EQ(run_to_end({"save", dev, "-o", path("stream.bin"), "-q"}, dir_), 0);
  kill_many({"load", dev + ",seed=7", "-i", path("stream.bin"), "-q"}, 12);
}

TEST_F(KillTest, Migrate) {
  const std::string dev = fmt::format("sim:mlx5,size={},transport=fuse", kSize);
  kill_many({"migrate", dev, dev, "-q"}, 13);
}

TEST_F(KillTest, Demo) {
  kill_many({"demo", "--size", kSize, "-q"}, 14);
}

}  // namespace
}  // namespace vfio::cli::testing
