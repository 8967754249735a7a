// cli/supervisor.h: the verdict reaches the caller whether the child ends, crashes, or cannot
// end at all (here: an exit handler that never returns, as a thread stuck in the kernel keeps a
// real process from ending).
#include "cli/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli/commands.h"

namespace vfio::cli {
namespace {

// The child's pid, which the work sends through `pids` (the test's own pipe).
pid_t sent_pid(int pids[2]) {
  pid_t child = 0;
  EXPECT_EQ(::read(pids[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  ::close(pids[0]);
  ::close(pids[1]);
  return child;
}

void send_pid(int fd) {
  const pid_t self = ::getpid();
  (void)!::write(fd, &self, sizeof self);
}

TEST(Supervisor, ReturnsTheChildsCodeAndReapsIt) {
  int pids[2];
  ASSERT_EQ(::pipe(pids), 0);
  ::testing::internal::CaptureStdout();
  const int code = run_supervised("test", [&] {
    send_pid(pids[1]);
    std::printf("from the child\n");
    return 3;
  });
  const std::string out = ::testing::internal::GetCapturedStdout();
  const pid_t child = sent_pid(pids);
  EXPECT_EQ(code, 3);
  EXPECT_NE(child, ::getpid());
  EXPECT_EQ(out, "from the child\n");
  // Reaped already: no such child of ours.
  EXPECT_EQ(::waitpid(child, nullptr, WNOHANG), -1);
}

TEST(Supervisor, ACrashBeforeTheVerdictIs128PlusTheSignal) {
  ::testing::internal::CaptureStderr();
  const int code = run_supervised("test", [] {
    ::signal(SIGABRT, SIG_DFL);
    std::abort();
    return 0;
  });
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 128 + SIGABRT);
  EXPECT_NE(err.find("died of SIGABRT before reporting"), std::string::npos) << err;
}

// The child reports 1, then cannot end: the parent returns 1 anyway, names the process left
// behind, and the child's output is /dev/null by then (a reader of it is not kept waiting).
TEST(Supervisor, AChildThatCannotEndStillGivesItsVerdict) {
  int pids[2];
  ASSERT_EQ(::pipe(pids), 0);
  ::testing::internal::CaptureStderr();
  const int code = run_supervised("test", [&] {
    send_pid(pids[1]);
    std::atexit([] {
      for (;;) ::pause();
    });
    return kExitFailed;
  });
  const std::string err = ::testing::internal::GetCapturedStderr();
  const pid_t child = sent_pid(pids);
  EXPECT_EQ(code, kExitFailed);
  EXPECT_EQ(::waitpid(child, nullptr, WNOHANG), 0) << "the child should still be there";
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(child) + "/fd/1"), "/dev/null");
  EXPECT_NE(err.find("process " + std::to_string(child) +
                     " (the device work) cannot end; "
                     "thread " +
                     std::to_string(child) + " (state S)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("its exit code 1 reported without waiting for it"), std::string::npos) << err;
  ::kill(child, SIGKILL);
  EXPECT_EQ(::waitpid(child, nullptr, 0), child);
}

}  // namespace
}  // namespace vfio::cli
