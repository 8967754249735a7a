// conform's fd-direction group: a save fd is read-only, a resume fd write-only; each misbehaving
// device lets one kind of fd be used the wrong way.
#include <gtest/gtest.h>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

using uapi::State;

constexpr const char* kSim = "sim:mlx5,size=64K,transport=direct";
constexpr std::array kIds = {"fd-direction/write-SC-fd", "fd-direction/write-PC-fd",
                             "fd-direction/read-RS-fd", "fd-direction/info-RS-fd"};

// Broken: a save fd opened in `kind` claims writes (one file type for both directions, whose
// write path drops the bytes).
class SaveFdTakesWrites : public OpenedIn {
 public:
  SaveFdTakesWrites(std::unique_ptr<Device> inner, State kind)
      : OpenedIn(std::move(inner)), kind_(kind) {}
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (opened_in(fd) == kind_) return buf.size();
    return inner_->write(fd, buf);
  }

 private:
  State kind_;
};

// Broken: a write on a STOP_COPY fd is refused, but only after it moved the stream's cursor by
// its length (the shared buffer's position advanced before the direction was checked).
class RefusedWriteMovesCursor : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (opened_in(fd) != State::kStopCopy) return inner_->write(fd, buf);
    std::vector<std::byte> skipped(buf.size());
    (void)inner_->read(fd, skipped);
    return fail(EBADF, "save fds are read-only");
  }
};

// Broken: a resume fd answers read() with 0 (end of file) instead of refusing it.
class ResumeFdReads : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (opened_in(fd) == State::kResuming) return std::size_t{0};
    return inner_->read(fd, buf);
  }
};

// Broken: a resume fd answers PRECOPY_INFO (a shared ioctl handler reading a save buffer).
class ResumeFdAnswersInfo : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    if (opened_in(fd) != State::kResuming) return inner_->precopy_info(fd, info);
    info.flags = 0;
    info.initial_bytes = info.dirty_bytes = 0;
    return {};
  }
};

TEST(FdDirection, WellBehavedDevicesPass) {
  expect_verdicts({kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                   "sim:plain,size=64K,transport=direct"},
                  "fd-direction/", kIds);
  const auto got = verdicts(check_spec("sim:stopcopy,size=64K,transport=direct"), "fd-direction/");
  EXPECT_EQ(got.at("fd-direction/write-PC-fd"), Verdict::kSkip);
}

TEST(FdDirection, SaveFdTakingWritesFails) {
  for (auto [kind, id] :
       {std::pair{State::kStopCopy, kIds[0]}, std::pair{State::kPreCopy, kIds[1]}})
    EXPECT_NE(only_failure(check_broken<SaveFdTakesWrites>(kSim, kind), id).find("bytes taken"),
              std::string::npos)
        << id;
}

TEST(FdDirection, RefusedWriteThatMovedTheStreamFails) {
  const auto detail = only_failure(check_broken<RefusedWriteMovesCursor>(kSim), kIds[0]);
  EXPECT_NE(detail.find("refused with EBADF"), std::string::npos) << detail;
  EXPECT_NE(detail.find("differing from a session before at byte 0"), std::string::npos) << detail;
}

TEST(FdDirection, ResumeFdAnsweringReadOrInfoFails) {
  EXPECT_NE(only_failure(check_broken<ResumeFdReads>(kSim), kIds[2]).find("got 0"),
            std::string::npos);
  EXPECT_NE(only_failure(check_broken<ResumeFdAnswersInfo>(kSim), kIds[3]).find("initial_bytes 0"),
            std::string::npos);
}

}  // namespace
}  // namespace vfio::conform::testing
