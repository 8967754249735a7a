// conform's positional-io group: pread and pwrite at offsets on the data fds. Over FUSE the data
// fds are real files (nonseekable, as the kernel's stream_open makes them); direct has no files.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cerrno>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

constexpr const char* kFuse = "sim:mlx5,size=64K,transport=fuse";

bool fuse_available() {
  return bool(devices::transport_available(devices::Transport::kFuse));
}

TEST(Positional, WellBehavedDeviceRefusesEveryPositionOverFuse) {
  if (!fuse_available()) GTEST_SKIP() << "no FUSE here";
  const Report r = check_spec(kFuse);
  const auto got = verdicts(r, "positional-io/");
  EXPECT_EQ(got.size(), 11u);
  for (const auto& [id, v] : got) EXPECT_EQ(v, Verdict::kPass) << id;
  EXPECT_TRUE(failures(r).empty()) << describe(failures(r));
  EXPECT_NE(r.find("positional-io/pread-SC-at-1")->detail.find("ESPIPE"), std::string::npos);
}

TEST(Positional, DirectDataFdsAreNoFilesAndSkip) {
  const auto got = verdicts(check_spec("sim:mlx5,size=64K,transport=direct"), "positional-io/");
  EXPECT_EQ(got.size(), 11u);
  for (const auto& [id, v] : got) EXPECT_EQ(v, Verdict::kSkip) << id;
}

// A seekable data file at one position, for fds of one kind: a pread there answers 0 (its end
// of file), a pwrite there claims the bytes (and keeps them out of the stream). Everywhere else
// the file refuses, as a stream does.
class SeekableAt : public OpenedIn {
 public:
  SeekableAt(std::unique_ptr<Device> inner, uapi::State kind, std::int64_t at)
      : OpenedIn(std::move(inner)), kind_(kind), at_(at) {}
  std::optional<Result<std::size_t>> read_at(int fd, std::span<std::byte> buf,
                                             std::int64_t off) override {
    if (off == at_ && opened_in(fd) == kind_) return std::size_t{0};
    return inner_->read_at(fd, buf, off);
  }
  std::optional<Result<std::size_t>> write_at(int fd, std::span<const std::byte> buf,
                                              std::int64_t off) override {
    if (off == at_ && opened_in(fd) == kind_) return buf.size();
    return inner_->write_at(fd, buf, off);
  }

 private:
  uapi::State kind_;
  std::int64_t at_;
};

TEST(Positional, EachPositionAcceptedOnEachFdFailsExactlyItsCheck) {
  if (!fuse_available()) GTEST_SKIP() << "no FUSE here";
  using uapi::State;
  const std::pair<std::string_view, std::int64_t> positions[] = {
      {"at-1", 1}, {"at-2^40", std::int64_t{1} << 40}, {"near-2^63", INT64_MAX - 4096}};
  const std::pair<State, std::string_view> kinds[] = {{State::kStopCopy, "pread-SC"},
                                                      {State::kPreCopy, "pread-PC"},
                                                      {State::kResuming, "pwrite-RS"}};
  for (const auto& [kind, call] : kinds) {
    for (const auto& [pos, at] : positions) {
      const std::string id = fmt::format("positional-io/{}-{}", call, pos);
      const Report r = check_spec(kFuse, [kind, at](std::unique_ptr<Device> d, bool) {
        return std::make_unique<SeekableAt>(std::move(d), kind, at);
      });
      const auto failed = failures(r);
      ASSERT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
      ASSERT_TRUE(failed.contains(id)) << id << "\n" << describe(failed);
      EXPECT_NE(failed.at(id).find("instead of"), std::string::npos) << failed.at(id);
    }
  }
}

// Refuses a pread, but only after taking the bytes from the stream (its read path ran with the
// position before the check that refuses it).
class ConsumesRefusedPread : public Decorator {
 public:
  using Decorator::Decorator;
  std::optional<Result<std::size_t>> read_at(int fd, std::span<std::byte> buf,
                                             std::int64_t) override {
    (void)inner_->read(fd, buf);
    return fail(ESPIPE, "pread refused (after reading)");
  }
};

TEST(Positional, PreadMovingDataFailsExactlySaveStreamIntact) {
  if (!fuse_available()) GTEST_SKIP() << "no FUSE here";
  const Report r = check_spec(kFuse, [](std::unique_ptr<Device> d, bool) {
    return std::make_unique<ConsumesRefusedPread>(std::move(d));
  });
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 1u) << describe(failed);
  ASSERT_TRUE(failed.contains("positional-io/save-stream-intact")) << describe(failed);
  EXPECT_NE(failed.at("positional-io/save-stream-intact").find("moved data"), std::string::npos);
}

// Refuses a pwrite, but only after writing the bytes into the stream.
class TakesRefusedPwrite : public Decorator {
 public:
  using Decorator::Decorator;
  std::optional<Result<std::size_t>> write_at(int fd, std::span<const std::byte> buf,
                                              std::int64_t) override {
    (void)inner_->write(fd, buf);
    return fail(ESPIPE, "pwrite refused (after writing)");
  }
};

TEST(Positional, PwriteMovingDataFailsExactlyResumeIntact) {
  if (!fuse_available()) GTEST_SKIP() << "no FUSE here";
  const Report r = check_spec(kFuse, [](std::unique_ptr<Device> d, bool) {
    return std::make_unique<TakesRefusedPwrite>(std::move(d));
  });
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 1u) << describe(failed);
  ASSERT_TRUE(failed.contains("positional-io/resume-intact")) << describe(failed);
  EXPECT_NE(failed.at("positional-io/resume-intact").find("refused pwrites"), std::string::npos)
      << failed.at("positional-io/resume-intact");
}

}  // namespace
}  // namespace vfio::conform::testing
