// conform's overflow group: resumes longer than the device's state.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <set>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

constexpr const char* kSpec = "sim:mlx5,size=64K,transport=direct";

TEST(Overflow, WellBehavedDeviceRefusesAndRecovers) {
  const Report r = check_spec(kSpec);
  const auto got = verdicts(r, "overflow/");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.at("overflow/past-state-size"), Verdict::kPass);
  EXPECT_EQ(got.at("overflow/huge-write"), Verdict::kPass);
  EXPECT_EQ(got.at("overflow/recovers"), Verdict::kPass);
  EXPECT_TRUE(failures(r).empty()) << describe(failures(r));
}

// Accepts unbounded writes: once the device finds a stream too long, it claims to take all of
// it and everything after.
class AcceptsUnboundedWrites : public Decorator {
 public:
  using Decorator::Decorator;
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (overflowed_.contains(fd)) return buf.size();
    auto n = inner_->write(fd, buf);
    if (n || n.error().code != ENOMEM) return n;
    overflowed_.insert(fd);
    return buf.size();
  }

 private:
  std::set<int> overflowed_;
};

TEST(Overflow, UnboundedWritesFailExactlyTheOverflowChecks) {
  const Report r = check_spec(kSpec, [](std::unique_ptr<Device> d, bool) {
    return std::make_unique<AcceptsUnboundedWrites>(std::move(d));
  });
  const auto got = verdicts(r, "overflow/");
  EXPECT_NE(got.at("overflow/past-state-size"), Verdict::kPass);
  EXPECT_NE(got.at("overflow/huge-write"), Verdict::kPass);
  EXPECT_EQ(got.at("overflow/recovers"), Verdict::kPass);
  for (const auto& [id, detail] : failures(r))
    EXPECT_TRUE(id.starts_with("overflow/")) << id << ": " << detail;
}

// After an overflowing write the resume path stays broken, through resets (every later write
// fails ENODEV).
class BrokenAfterOverflow : public Decorator {
 public:
  using Decorator::Decorator;
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (broken_) return fail(ENODEV, "broken since an overflow");
    auto n = inner_->write(fd, buf);
    if (!n && n.error().code == ENOMEM) broken_ = true;
    return n;
  }

 private:
  std::atomic<bool> broken_ = false;  // the concurrency checks write from two threads
};

TEST(Overflow, DeviceNotRecoveredByResetFailsTheRecoveryCheck) {
  const Report r = check_spec(
      kSpec,
      [](std::unique_ptr<Device> d, bool) {
        return std::make_unique<BrokenAfterOverflow>(std::move(d));
      },
      /*with_reopen=*/false);
  const auto got = verdicts(r, "overflow/");
  EXPECT_EQ(got.at("overflow/past-state-size"), Verdict::kPass);
  EXPECT_EQ(got.at("overflow/recovers"), Verdict::kFail);
  // Only the overflow group and the resumes after it (the reopen group's) are affected.
  for (const auto& [id, detail] : failures(r))
    EXPECT_TRUE(id.starts_with("overflow/") || id.starts_with("reopen/")) << id << ": " << detail;
}

}  // namespace
}  // namespace vfio::conform::testing
