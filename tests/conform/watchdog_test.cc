// Every device call runs under the watchdog: a call that does not return is a failed
// watchdog/kernel-hang check naming it, the checks stop, and the device is never touched again.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "conform/checker.h"
#include "core/feature.h"
#include "core/watched_device.h"
#include "devices/device_spec.h"
#include "simdev/sim_device.h"
#include "tests/conform/support.h"
#include "tests/eventually.h"

namespace vfio::conform {
namespace {

using namespace std::chrono_literals;

// Counts the calls inside the device, so a test knows when an abandoned thread has left it;
// with `hang_reads`, the first data read calls `on_hang` and blocks until release().
class Watched : public Forwarding {
 public:
  Watched(std::unique_ptr<Device> inner, bool hang_reads, std::function<void()> on_hang = {})
      : Forwarding(std::move(inner)), hang_reads_(hang_reads), on_hang_(std::move(on_hang)) {}
  Result<> feature(std::span<std::byte> arg) override {
    Inside in(this);
    return Forwarding::feature(arg);
  }
  Result<> reset() override {
    Inside in(this);
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    Inside in(this);
    if (hang_reads_) {
      if (on_hang_) on_hang_();
      std::unique_lock lock(mu_);
      released_cv_.wait(lock, [this] { return released_; });
    }
    return Forwarding::read(fd, buf);
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    released_cv_.notify_all();
  }
  int inside() const { return inside_; }

 private:
  struct Inside {
    explicit Inside(Watched* w) : w(w) { ++w->inside_; }
    ~Inside() { --w->inside_; }
    Watched* w;
  };
  bool hang_reads_;
  std::function<void()> on_hang_;
  std::atomic<int> inside_ = 0;
  std::mutex mu_;
  std::condition_variable released_cv_;
  bool released_ = false;
};

Options short_watchdog() {
  Options o;
  o.strict_resume_validation = true;
  o.send_hanging_arcs = true;
  o.call_timeout = 200ms;
  return o;
}

void expect_stopped_at_hang(const Report& r, const std::string& call) {
  EXPECT_TRUE(r.device_abandoned);
  ASSERT_FALSE(r.checks.empty());
  const Check& hang = r.checks.back();
  EXPECT_EQ(hang.id, "watchdog/kernel-hang");
  EXPECT_EQ(hang.verdict, Verdict::kFail);
  EXPECT_GE(hang.elapsed, 200ms);  // the stuck call's wait, at least the limit
  EXPECT_NE(hang.detail.find("kernel-hang: " + call + " did not return within 0.2 s"),
            std::string::npos)
      << hang.detail;
  EXPECT_EQ(r.counts().failed, 1u) << failures(r);
}

// The simulator's Linux 6.12 hang: SET SC->PC blocks (for a minute) in the device.
TEST(Watchdog, AHangingSetIsAKernelHangAndTheChecksStopThere) {
  auto opened = devices::open_device(
      *devices::parse_device_arg("sim:mlx5,size=64K,hang-sc-pc=1,transport=direct"), 0);
  ASSERT_TRUE(opened) << opened.error().describe();
  Watched dev(std::move(opened->device), /*hang_reads=*/false);
  auto report = check_device(dev, short_watchdog());
  ASSERT_TRUE(report) << report.error().describe();
  EXPECT_EQ(opened->model->hung_arcs(), 1u);  // sent once, and nothing after it
  expect_stopped_at_hang(*report, "SET MIG_DEVICE_STATE SC->PC");
  EXPECT_NE(report->find("arc/SC->R"), nullptr);    // ran before the hang
  EXPECT_EQ(report->find("arc/SC->PCP"), nullptr);  // would have run after it
  EXPECT_EQ(report->find("header/unknown-feature"), nullptr);
  opened->model->release_hangs();
  EXPECT_TRUE(testing::eventually([&] { return dev.inside() == 0; }));
  EXPECT_EQ(opened->model->hung_arcs(), 1u);
}

TEST(Watchdog, AHangingDataReadIsAKernelHang) {
  Watched dev(open_sim("sim:mlx5,size=64K"), /*hang_reads=*/true);
  auto report = check_device(dev, short_watchdog());
  ASSERT_TRUE(report) << report.error().describe();
  expect_stopped_at_hang(*report, "read(data fd 1000, 1048576 bytes)");
  EXPECT_NE(report->checks.back().detail.find(", after migration/flags;"), std::string::npos)
      << report->checks.back().detail;
  dev.release();
  EXPECT_TRUE(testing::eventually([&] { return dev.inside() == 0; }));
}

// The verdict on a stuck call quotes what the kernel logged meanwhile (on a real kernel, the soft
// lockup of the spinning CPU): here a read that logs one and blocks.
TEST(Watchdog, TheKernelHangVerdictQuotesTheLockup) {
  const std::string lockup = "watchdog: BUG: soft lockup - CPU#1 stuck for 3s! [vfio-mig:160]";
  const auto log = std::filesystem::temp_directory_path() /
                   ("vfio-mig-watchdog-kmsg-" + std::to_string(::getpid()));
  std::ofstream(log) << "4,1,100,-;WARNING: CPU: 0 PID: 1 at old.c:1 before_conform\n";
  Watched dev(open_sim("sim:mlx5,size=64K"), /*hang_reads=*/true,
              [&] { std::ofstream(log, std::ios::app) << "0,901,6000,-;" << lockup << "\n"; });
  auto o = short_watchdog();
  o.kernel_log = log.string();
  auto report = check_device(dev, o);
  ASSERT_TRUE(report) << report.error().describe();
  expect_stopped_at_hang(*report, "read(data fd 1000, 1048576 bytes)");
  EXPECT_NE(report->checks.back().detail.find("so no later check ran; kernel log: 1 trouble "
                                              "line(s) during this check; [soft lockup] " +
                                              lockup),
            std::string::npos)
      << report->checks.back().detail;
  dev.release();
  EXPECT_TRUE(testing::eventually([&] { return dev.inside() == 0; }));
  std::filesystem::remove(log);
}

// Calls from several threads (the concurrency checks) are tracked at once: the oldest still in
// flight is the one to name, though another thread's calls begin and end meanwhile.
TEST(Watchdog, TracksTheCallsOfEveryThread) {
  Watched dev(open_sim("sim:mlx5,size=64K"), /*hang_reads=*/true);
  WatchedDevice watched(dev);
  std::array<std::byte, 16> buf{};
  std::thread reader([&] { (void)watched.read(7, buf); });
  ASSERT_TRUE(testing::eventually([&] { return watched.oldest_in_flight().has_value(); }));
  const auto hung = *watched.oldest_in_flight();
  EXPECT_EQ(hung.what, "read(data fd 7, 16 bytes)");
  EXPECT_TRUE(query_device_state(watched));  // this thread's call, begun and ended meanwhile
  const auto still = watched.oldest_in_flight();
  ASSERT_TRUE(still);
  EXPECT_EQ(still->seq, hung.seq);
  EXPECT_EQ(still->what, hung.what);
  dev.release();
  reader.join();
  EXPECT_FALSE(watched.oldest_in_flight());
}

TEST(Watchdog, ANonPositiveLimitIsAnError) {
  auto dev = open_sim("sim:mtty");
  Options o;
  o.call_timeout = 0ms;
  EXPECT_FALSE(check_device(*dev, o));
}

}  // namespace
}  // namespace vfio::conform
