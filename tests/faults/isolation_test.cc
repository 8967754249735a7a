// The isolating runner: records arrive in order, and a child that crashes, never ends, or is
// stuck in a system call is told apart by how it ended.
#include "faults/isolation.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <thread>

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

// Another holder mid-work (it could hold an allocator's lock): the fork waits for its turn to end.
TEST(ForkTurn, AForkWaitsWhileAnotherHolderWorks) {
  std::atomic<bool> worked{false};
  std::promise<void> holding;
  std::thread other([&] {
    ForkTurn turn;
    holding.set_value();
    std::this_thread::sleep_for(300ms);
    worked = true;
  });
  holding.get_future().wait();
  bool forked_after_the_work = false;
  auto end = run_isolated([](int fd) { (void)write_record(fd, "forked"); },
                          [&](std::string) { forked_after_the_work = worked; }, {});
  other.join();
  ASSERT_TRUE(end) << end.error().describe();
  EXPECT_TRUE(forked_after_the_work);
}

// A holder waiting on its child is not working: another holder forks meanwhile. Here the first
// child ends only once the second child has run.
TEST(ForkTurn, AHolderWaitingOnItsChildLetsAnotherFork) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  IsolationLimits limits;
  limits.deadline = 10s;  // a second fork held back until then fails the first child
  std::promise<void> first_started;
  Result<ChildEnd> first, second;
  std::thread a([&] {
    ForkTurn turn;
    first = run_isolated(
        [&](int fd) {
          (void)write_record(fd, "started");
          char c;
          ::_exit(::read(fds[0], &c, 1) == 1 ? 0 : 1);
        },
        [&](std::string) { first_started.set_value(); }, limits);
  });
  std::thread b([&] {
    first_started.get_future().wait();  // not holding a turn: waiting is not working
    ForkTurn turn;
    second = run_isolated([&](int) { (void)!::write(fds[1], "x", 1); }, [](std::string) {}, limits);
  });
  a.join();
  b.join();
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(first) << first.error().describe();
  ASSERT_TRUE(second) << second.error().describe();
  EXPECT_EQ(first->describe(), "exited 0");
  EXPECT_EQ(second->describe(), "exited 0");
}

}  // namespace
}  // namespace vfio::faults
