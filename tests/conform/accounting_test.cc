// conform's precopy-accounting group: PRECOPY_INFO against the data the save fd gives, on
// devices with and without dirty data, and on devices whose reports are wrong.
#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "tests/conform/support.h"

namespace vfio::conform {
namespace {

// Forwarding that counts the bytes read on each data fd and lets a subclass rewrite
// PRECOPY_INFO from the true report and that count.
class MisreportsPrecopy : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    auto r = Forwarding::read(fd, buf);
    std::lock_guard lock(mu_);  // precopy-info/during-reads asks from another thread
    if (r) read_[fd] += *r;
    return r;
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    auto r = Forwarding::precopy_info(fd, info);
    std::lock_guard lock(mu_);
    if (r) info.initial_bytes = initial(info.initial_bytes, read_[fd]);
    return r;
  }

 protected:
  virtual std::uint64_t initial(std::uint64_t truth, std::uint64_t read) const = 0;

 private:
  std::mutex mu_;
  std::map<int, std::uint64_t> read_;
};

// Broken: initial_bytes counts only the progress in the current 16 KiB buffer (buffers read
// to the end are forgotten), so it jumps back up at every buffer boundary.
struct InitialCountsCurrentBuffer : MisreportsPrecopy {
  using MisreportsPrecopy::MisreportsPrecopy;
  std::uint64_t initial(std::uint64_t truth, std::uint64_t read) const override {
    constexpr std::uint64_t kBuffer = 16 << 10;
    return truth + read - read % kBuffer;
  }
};

// Broken: what was read is subtracted twice, so the report loses bytes nobody read.
struct CountsReadsTwice : MisreportsPrecopy {
  using MisreportsPrecopy::MisreportsPrecopy;
  std::uint64_t initial(std::uint64_t truth, std::uint64_t read) const override {
    return truth > read ? truth - read : 0;
  }
};

// Broken (mlx5 2023-like under-reporting): initial_bytes leaves out the stream's 64-byte
// header, so the device has more to send than it says.
struct OmitsStreamHeader : MisreportsPrecopy {
  using MisreportsPrecopy::MisreportsPrecopy;
  std::uint64_t initial(std::uint64_t truth, std::uint64_t) const override {
    return truth > 64 ? truth - 64 : 0;
  }
};

constexpr const char* kSim = "sim:plain,size=64K";
constexpr std::array kIds = {"precopy-accounting/initial-never-grows",
                             "precopy-accounting/follows-reads",
                             "precopy-accounting/covers-readable"};

TEST(PrecopyAccounting, PassesOnPrecopyDevicesWithoutDirtyData) {
  for (const char* spec : {"sim:plain,size=64K", "sim:mtty", "sim:mlx5,size=1M"}) {
    auto dev = open_sim(spec);
    auto report = run_checks(*dev);
    for (auto id : kIds) EXPECT_EQ(verdict_of(report, id), Verdict::kPass) << spec << " " << id;
  }
}

TEST(PrecopyAccounting, SkippedWithoutPrecopy) {
  auto dev = open_sim("sim:stopcopy,size=64K");
  auto report = run_checks(*dev);
  for (auto id : kIds) EXPECT_EQ(verdict_of(report, id), Verdict::kSkip) << id;
}

// The guest dirties 4 KiB before every read: the reports grow, which is no failure, and what
// the device sends beyond its first report is new dirt, not judged.
TEST(PrecopyAccounting, HoldsWithDirtyData) {
  for (const char* spec : {"sim:plain,size=64K,dirty=4K/read", "sim:mlx5,size=64K,dirty=4K/read"}) {
    auto dev = open_sim(spec);
    Options options;
    options.stream_limit = 4 << 20;  // pre-copy data never ends while the guest writes
    auto report = run_checks(*dev, true, options);
    EXPECT_EQ(verdict_of(report, kIds[0]), Verdict::kPass) << spec;
    EXPECT_EQ(verdict_of(report, kIds[1]), Verdict::kPass) << spec;
    const Check* c = report.find(kIds[2]);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->verdict, Verdict::kDeviation) << spec;
    EXPECT_NE(c->detail.find("dirtied while reading"), std::string::npos) << c->detail;
  }
}

TEST(PrecopyAccounting, GrowingInitialBytesFail) {
  InitialCountsCurrentBuffer dev(open_sim(kSim));
  auto report = run_checks(dev);
  // A figure that grows with reads alone grows under a concurrent asker too, which sees it when
  // it happens to ask on both sides of a buffer boundary.
  auto failed = failed_ids(report);
  EXPECT_TRUE(failed.contains(kIds[0])) << failures(report);
  failed.erase("precopy-info/during-reads");
  EXPECT_EQ(failed, std::set<std::string>{kIds[0]}) << failures(report);
  EXPECT_NE(report.find(kIds[0])->detail.find("grew from"), std::string::npos);
}

TEST(PrecopyAccounting, ReportLosingUnreadBytesFails) {
  CountsReadsTwice dev(open_sim(kSim));
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{kIds[1]}) << failures(report);
  EXPECT_NE(report.find(kIds[1])->detail.find("dropped from the report unread"), std::string::npos);
}

TEST(PrecopyAccounting, UnderReportingFails) {
  OmitsStreamHeader dev(open_sim(kSim));
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{kIds[2]}) << failures(report);
  EXPECT_NE(report.find(kIds[2])->detail.find("under-reports"), std::string::npos);
}

}  // namespace
}  // namespace vfio::conform
