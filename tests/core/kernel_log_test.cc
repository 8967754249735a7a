// The kernel-health oracle: trouble lines logged after the mark are found, with their kind;
// older lines, harmless lines, continuation lines and ignored lines are not.
#include "core/kernel_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

namespace vfio {
namespace {

class KernelLogFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("vfio-mig-kmsg-{}-{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    append("6,1,100,-;mtty: loaded\n4,2,200,-;WARNING: CPU: 0 PID: 1 at old.c:1 before_mark\n");
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void append(const std::string& text) { std::ofstream(path_, std::ios::app) << text; }
  std::vector<std::string> kinds(const std::vector<KernelTrouble>& t) {
    std::vector<std::string> out;
    for (const auto& x : t) out.push_back(x.kind);
    return out;
  }
  std::filesystem::path path_;
};

TEST_F(KernelLogFile, FindsEachKindOfTroubleLoggedAfterTheMark) {
  auto log = KernelLog::open(path_);
  ASSERT_TRUE(log) << log.error().describe();
  // The lines the kernel lane's dmesg check is tested with, and the other kinds.
  append(
      "6,3,300,-;vfio_pci 0000:00:04.0: enabling device\n"
      "4,4,310,-;WARNING: CPU: 0 PID: 88 at drivers/vfio/vfio_main.c:1234 vfio_x+0x1/0x2\n"
      " SUBSYSTEM=pci\n"
      " DEVICE=+pci:0000:00:04.0\n"
      "0,5,320,-;watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vfio-mig:91]\n"
      "1,6,330,-;Oops: 0002 [#1] SMP\n"
      "3,7,340,-;BUG: KASAN: slab-use-after-free in vfio_device_fops_release+0x10/0x20\n"
      "3,8,350,-;UBSAN: array-index-out-of-bounds in drivers/vfio/pci/mlx5/cmd.c:10:2\n"
      "4,9,360,-;WARNING: possible circular locking dependency detected\n"
      "4,10,370,-;=============================\n"
      "4,11,380,-;WARNING: suspicious RCU usage\n"
      "3,12,390,-;INFO: task vfio-mig:77 blocked for more than 10 seconds.\n"
      "4,13,400,-;refcount_t: underflow; use-after-free.\n"
      "6,14,410,-;mtty: PCI config write @0x8 of 4 bytes not handled\n"
      "3,15,420,-;rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n");
  auto t = log->since_mark();
  ASSERT_TRUE(t) << t.error().describe();
  EXPECT_EQ(kinds(*t), (std::vector<std::string>{"warning", "soft lockup", "oops", "kasan", "ubsan",
                                                 "lockdep", "lockdep", "hung task", "refcount",
                                                 "not handled", "rcu stall"}));
  EXPECT_EQ((*t)[0].message,
            "WARNING: CPU: 0 PID: 88 at drivers/vfio/vfio_main.c:1234 vfio_x+0x1/0x2");
  EXPECT_EQ(kernel_trouble_kind("kernel BUG at mm/slub.c:123!"), "bug");
  EXPECT_EQ(kernel_trouble_kind("vfio-pci 0000:00:04.0: WARN_ON_ONCE skipped"), std::nullopt);
  // The mark moved: nothing new, nothing again.
  t = log->since_mark();
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->empty());
}

TEST_F(KernelLogFile, IgnoredLinesAndHalfWrittenRecordsAreNotReported) {
  auto log = KernelLog::open(path_, R"(mtty: PCI config write @0x8 )");
  ASSERT_TRUE(log);
  append("6,3,300,-;mtty: PCI config write @0x8 of 4 bytes not handled\n4,4,310,-;WARNING: CP");
  auto t = log->since_mark();
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->empty()) << (*t)[0].message;
  append("U: 1 PID: 2 at x.c:3\n6,5,320,-;mtty: PCI config write @0xc of 4 bytes not handled\n");
  t = log->since_mark();
  ASSERT_TRUE(t);
  EXPECT_EQ(kinds(*t), (std::vector<std::string>{"warning", "not handled"}));
  EXPECT_EQ((*t)[0].message, "WARNING: CPU: 1 PID: 2 at x.c:3");
}

TEST_F(KernelLogFile, ABadIgnoreRegexOrAMissingLogIsAnError) {
  auto bad = KernelLog::open(path_, "([unclosed");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_FALSE(parse_kernel_log_ignore("(("));
  EXPECT_TRUE(parse_kernel_log_ignore("mtty|vfio"));
  auto missing = KernelLog::open(path_.string() + ".missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
}

// Root can write to /dev/kmsg: the real log, read through the real interface.
TEST(KernelLog, FindsALineInjectedIntoTheRealKernelLog) {
  const int w = ::open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
  auto log = KernelLog::open("/dev/kmsg");
  if (w < 0 || !log) {
    if (w >= 0) ::close(w);
    GTEST_SKIP() << "needs a readable and writable /dev/kmsg (root)";
  }
  const std::string tag = fmt::format("vfio-mig kernel_log_test {}", ::getpid());
  const std::string line = fmt::format("<4>{}: WARNING: injected by a test, ignore\n", tag);
  ASSERT_EQ(::write(w, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  ::close(w);
  auto t = log->since_mark();
  ASSERT_TRUE(t) << t.error().describe();
  bool found = false;
  for (const auto& x : *t) found |= x.message.starts_with(tag) && x.kind == "warning";
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace vfio
