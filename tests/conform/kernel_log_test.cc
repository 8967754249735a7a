// Kernel trouble logged during a check fails that check, with the line attached; the other
// checks are untouched, and a regex can accept known lines.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "conform/checker.h"
#include "tests/conform/support.h"

namespace vfio::conform {
namespace {

constexpr const char* kWarning =
    "WARNING: CPU: 1 PID: 42 at drivers/vfio/vfio_main.c:1234 vfio_ioctl_device_feature";

// Logs a kernel WARNING (appends it to a file in /dev/kmsg's record format) when it is asked for
// feature 0x3f with GET alone: the call of check header/unknown-feature.
class WarnsOnUnknownFeature : public Forwarding {
 public:
  WarnsOnUnknownFeature(std::unique_ptr<Device> inner, std::filesystem::path log)
      : Forwarding(std::move(inner)), log_(std::move(log)) {}
  Result<> feature(std::span<std::byte> arg) override {
    uapi::FeatureHeader h;
    std::memcpy(&h, arg.data(), sizeof(h));
    if (h.flags == (0x3fu | uapi::kFeatureGet))
      std::ofstream(log_, std::ios::app) << "4,900,5000,"
                                         << "-;" << kWarning << "\n";
    return Forwarding::feature(arg);
  }

 private:
  std::filesystem::path log_;
};

class ConformKernelLog : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("vfio-mig-conform-kmsg-{}-{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    // Trouble from before the run is not the device's doing.
    std::ofstream(path_) << "4,1,100,-;WARNING: CPU: 0 PID: 1 at old.c:1 before_conform\n";
  }
  void TearDown() override { std::filesystem::remove(path_); }
  Options options() const {
    Options o;
    o.strict_resume_validation = true;
    o.send_hanging_arcs = true;
    o.kernel_log = path_.string();
    return o;
  }
  std::filesystem::path path_;
};

TEST_F(ConformKernelLog, AWarningDuringACheckFailsThatCheck) {
  WarnsOnUnknownFeature dev(open_sim("sim:mlx5,size=64K"), path_);
  auto report = check_device(dev, options());
  ASSERT_TRUE(report) << report.error().describe();
  const Check* c = report->find("header/unknown-feature");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->verdict, Verdict::kFail);
  EXPECT_NE(c->detail.find("GET feature 0x3f: ENOTTY; kernel log: 1 trouble line(s) during this "
                           "check; [warning] " +
                           std::string(kWarning)),
            std::string::npos)
      << c->detail;
  EXPECT_EQ(report->counts().failed, 1u) << failures(*report);
}

TEST_F(ConformKernelLog, IgnoredLinesAndAQuietLogPass) {
  WarnsOnUnknownFeature dev(open_sim("sim:mlx5,size=64K"), path_);
  auto o = options();
  o.kernel_log_ignore = "vfio_main\\.c:1234";
  auto report = check_device(dev, o);
  ASSERT_TRUE(report) << report.error().describe();
  EXPECT_EQ(report->counts().failed, 0u) << failures(*report);

  auto quiet = open_sim("sim:mlx5,size=64K");
  auto clean = check_device(*quiet, options());
  ASSERT_TRUE(clean);
  EXPECT_EQ(clean->counts().failed, 0u) << failures(*clean);
}

TEST_F(ConformKernelLog, AMissingLogOrABadRegexIsAnError) {
  auto dev = open_sim("sim:mtty");
  auto o = options();
  o.kernel_log = path_.string() + ".missing";
  EXPECT_FALSE(check_device(*dev, o));
  o = options();
  o.kernel_log_ignore = "((";
  EXPECT_FALSE(check_device(*dev, o));
}

}  // namespace
}  // namespace vfio::conform
