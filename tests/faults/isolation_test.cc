// The isolating runner: records arrive in order, and a child that crashes, never ends, or is
// stuck in a system call is told apart by how it ended.
#include "faults/isolation.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <csignal>

#include "core/feature.h"
#include "simdev/profile.h"
#include "simdev/sim_mount.h"
#include "tests/faults/stuck_fuse.h"

namespace vfio::faults {
namespace {

using namespace std::chrono_literals;

void no_core_dump() {
  rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
}

TEST(Isolation, RecordsArriveInOrderAndAnExitIsAnExit) {
  std::vector<std::string> got;
  auto end = run_isolated(
      [](int fd) {
        for (const char* r : {"one", "", "three"}) (void)write_record(fd, r);
      },
      [&](std::string r) { got.push_back(std::move(r)); }, {});
  ASSERT_TRUE(end) << end.error().describe();
  EXPECT_EQ(end->kind, ChildEnd::kExited);
  EXPECT_EQ(end->exit_code, 0);
  EXPECT_EQ(got, (std::vector<std::string>{"one", "", "three"}));
}

TEST(Isolation, ACrashIsReportedWithItsSignalAfterTheRecordsBeforeIt) {
  std::vector<std::string> got;
  auto end = run_isolated(
      [](int fd) {
        (void)write_record(fd, "before");
        no_core_dump();
        // A sanitizer's own SIGSEGV handler would turn the signal into its report and an abort.
        std::signal(SIGSEGV, SIG_DFL);
        std::raise(SIGSEGV);
      },
      [&](std::string r) { got.push_back(std::move(r)); }, {});
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, ChildEnd::kCrashed);
  EXPECT_EQ(end->signal, SIGSEGV);
  EXPECT_EQ(end->describe(), "crashed: SIGSEGV");
  EXPECT_EQ(got, std::vector<std::string>{"before"});
}

TEST(Isolation, AChildThatNeverEndsIsKilledAtTheDeadline) {
  IsolationLimits limits;
  limits.deadline = 300ms;  // generous for a child that only sleeps
  int records = 0;
  auto end = run_isolated(
      [](int fd) {
        (void)write_record(fd, "started");
        for (;;) ::pause();
      },
      [&](std::string) { ++records; }, limits);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, ChildEnd::kTimeout) << end->describe();
  EXPECT_EQ(records, 1);
  EXPECT_NE(::kill(end->pid, 0), 0) << "the child was reaped";
}

TEST(Isolation, AChildStuckInASystemCallIsAKernelHangLeftBehind) {
  if (!test::can_mount_fuse()) GTEST_SKIP() << "needs root and /dev/fuse";
  IsolationLimits limits;
  limits.deadline = 1s;
  limits.kill_grace = 1s;
  auto end = run_isolated([](int) { test::block_in_fuse_request(); }, [](std::string) {}, limits);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, ChildEnd::kKernelHang) << end->describe();
  bool in_openat = false;
  for (const auto& t : end->stuck) in_openat |= t.state == 'D' && t.syscall == "openat";
  EXPECT_TRUE(in_openat) << end->describe();
  EXPECT_NE(end->describe().find("cannot be killed"), std::string::npos);
  // Left behind: still there until its FUSE connection is aborted.
  EXPECT_EQ(::kill(end->pid, 0), 0);
  test::release_stuck_fuse(end->pid);
  int status = 0;
  EXPECT_EQ(::waitpid(end->pid, &status, 0), end->pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

// The simulator's Linux 6.12 hang (SET STOP_COPY -> PRE_COPY spins in the kernel) served over
// FUSE: the child is stuck in the ioctl on the device file, and the report names both.
TEST(Isolation, TheSimulatedKernelHangIsNamedByItsCallAndDevice) {
  if (!sim::SimMount::fuse_available()) GTEST_SKIP() << "needs FUSE";
  IsolationLimits limits;
  limits.deadline = 5s;  // mounting can take a while on a loaded machine
  limits.kill_grace = 1s;
  auto end = run_isolated(
      [](int) {
        sim::SimOptions options;
        options.hang_stop_copy_to_precopy = true;
        auto model = std::make_shared<sim::SimDevice>(*sim::find_profile("mlx5"), options);
        auto mount = sim::SimMount::create();
        if (!mount) return;
        auto path = (*mount)->add_device(model, "hangs");
        if (!path) return;
        auto dev = sim::SimMount::open_device(*path, "hangs");
        if (!dev) return;
        (*dev)->allow_hanging_arcs(true);
        (void)request_device_state(**dev, uapi::State::kStopCopy);
        (void)request_device_state(**dev, uapi::State::kPreCopy);
      },
      [](std::string) {}, limits);
  ASSERT_TRUE(end);
  // Another process's stale-mount cleanup may abort the mount of a killed owner first (as it
  // should): the child then ends after all, and there is nothing left to look at.
  if (end->kind == ChildEnd::kTimeout) GTEST_SKIP() << "a parallel process freed the mount";
  ASSERT_EQ(end->kind, ChildEnd::kKernelHang) << end->describe();
  bool named = false;
  for (const auto& t : end->stuck)
    named |= t.state == 'D' && t.syscall == "ioctl" && t.file.find("/hangs") != std::string::npos;
  EXPECT_TRUE(named) << end->describe();
  // Left behind; its mount aborted, it can die.
  EXPECT_EQ(test::release_sim_mounts_of(end->pid), 1);
  EXPECT_EQ(::waitpid(end->pid, nullptr, 0), end->pid);
}

TEST(Isolation, SignalNames) {
  EXPECT_EQ(signal_name(SIGABRT), "SIGABRT");
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
}

}  // namespace
}  // namespace vfio::faults
