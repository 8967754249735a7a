// conform's chunked-io group: odd-sized reads and writes of the data fd.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

constexpr const char* kSpec = "sim:mlx5,size=64K,transport=direct";

TEST(ChunkedIo, WellBehavedDevicePassesEveryCheck) {
  const Report r = check_spec(kSpec);
  const auto got = verdicts(r, "chunked-io/");
  EXPECT_EQ(got.size(), 11u);
  for (const auto& [id, v] : got) EXPECT_EQ(v, Verdict::kPass) << id;
  EXPECT_TRUE(failures(r).empty()) << describe(failures(r));
}

// Ignores the file offset on every second read shorter than a page: serves the previous read's
// bytes again (the hisi_acc bug fixed in 2024). Locked: the concurrency checks read from two
// threads.
class RepeatsSmallReads : public Decorator {
 public:
  using Decorator::Decorator;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (buf.size() >= 4096) return inner_->read(fd, buf);
    std::lock_guard lock(mu_);
    auto& last = last_[fd];
    if (++small_[fd] % 2 == 0 && !last.empty()) {
      const auto n = std::min(buf.size(), last.size());
      std::copy_n(last.begin(), n, buf.begin());
      return n;
    }
    auto n = inner_->read(fd, buf);
    if (n) last.assign(buf.begin(), buf.begin() + *n);
    return n;
  }

 private:
  std::mutex mu_;
  std::map<int, std::vector<std::byte>> last_;
  std::map<int, int> small_;
};

// concurrency/two-readers and two-readers-PC read in chunks below a page too (1/32 of this
// stream), so they catch the repeats as well.
TEST(ChunkedIo, DuplicatedDataOnSmallReadsFailsExactlyTheSmallReadChecks) {
  const Report r = check_spec(kSpec, [](std::unique_ptr<Device> d, bool) {
    return std::make_unique<RepeatsSmallReads>(std::move(d));
  });
  std::map<std::string, std::string> want = {{"chunked-io/read-1", "differ"},
                                             {"chunked-io/read-3", "differ"},
                                             {"chunked-io/read-4095", "differ"},
                                             {"chunked-io/precopy-read-1", "differ"},
                                             {"chunked-io/precopy-read-3", "differ"},
                                             {"chunked-io/precopy-read-4095", "differ"},
                                             {"concurrency/two-readers", "do not tile"},
                                             {"concurrency/two-readers-PC", "do not tile"}};
  auto failed = failures(r);
  for (auto& [id, detail] : failed) {
    ASSERT_TRUE(want.contains(id)) << id << ": " << detail;
    EXPECT_NE(detail.find(want[id]), std::string::npos) << detail;
  }
  for (const auto& [id, _] : want) EXPECT_TRUE(failed.contains(id)) << id;
}

// In PRE_COPY only, and only on reads of `size` bytes: every second one serves the previous
// one's bytes again (a pre-copy read path that loses its offset).
class RepeatsPrecopyReadsOf : public OpenedIn {
 public:
  RepeatsPrecopyReadsOf(std::unique_ptr<Device> inner, std::size_t size)
      : OpenedIn(std::move(inner)), size_(size) {}
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (buf.size() != size_ || opened_in(fd) != uapi::State::kPreCopy) return inner_->read(fd, buf);
    std::lock_guard lock(mu_);
    auto& last = last_[fd];
    if (++count_[fd] % 2 == 0 && !last.empty()) {
      std::copy(last.begin(), last.end(), buf.begin());
      return last.size();
    }
    auto n = inner_->read(fd, buf);
    if (n) last.assign(buf.begin(), buf.begin() + *n);
    return n;
  }

 private:
  std::size_t size_;
  std::mutex mu_;
  std::map<int, std::vector<std::byte>> last_;
  std::map<int, int> count_;
};

TEST(ChunkedIo, PrecopyReadsLosingTheirOffsetFailExactlyTheirSize) {
  for (std::size_t size : {1, 3, 4095, 4097, (1 << 20) + 1}) {
    // Big enough for two reads of every size.
    const Report r =
        check_spec("sim:mlx5,size=4M,transport=direct", [size](std::unique_ptr<Device> d, bool) {
          return std::make_unique<RepeatsPrecopyReadsOf>(std::move(d), size);
        });
    const std::string id = fmt::format("chunked-io/precopy-read-{}", size);
    const auto failed = failures(r);
    ASSERT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
    ASSERT_TRUE(failed.contains(id)) << describe(failed);
    EXPECT_NE(failed.at(id).find("differ at byte"), std::string::npos) << failed.at(id);
  }
}

// Takes 3-byte writes and drops them: a resume in odd chunks loses bytes.
class DropsThreeByteWrites : public Decorator {
 public:
  using Decorator::Decorator;
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (buf.size() == 3) return buf.size();
    return inner_->write(fd, buf);
  }
};

TEST(ChunkedIo, ResumeLosingOddChunksFailsExactlyTheResumeCheck) {
  const Report r = check_spec(kSpec, [](std::unique_ptr<Device> d, bool) {
    return std::make_unique<DropsThreeByteWrites>(std::move(d));
  });
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 1u) << describe(failed);
  EXPECT_TRUE(failed.contains("chunked-io/resume-odd-writes")) << describe(failed);
}

}  // namespace
}  // namespace vfio::conform::testing
