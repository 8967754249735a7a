// The isolating runner: records arrive in order, and a child that crashes, never ends, or is
// stuck in a system call is told apart by how it ended.
#include "faults/isolation.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <csignal>

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

TEST(Isolation, SignalNames) {
  EXPECT_EQ(signal_name(SIGABRT), "SIGABRT");
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
}

}  // namespace
}  // namespace vfio::faults
