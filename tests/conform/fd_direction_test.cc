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

template <class Broken, class... Args>
std::map<std::string, std::string> failures_with(Args... args) {
  return failures(check_spec(kSim, [=](std::unique_ptr<Device> d, bool) -> std::unique_ptr<Device> {
    return std::make_unique<Broken>(std::move(d), args...);
  }));
}

TEST(FdDirection, WellBehavedDevicesPass) {
  for (const char* spec : {kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                           "sim:plain,size=64K,transport=direct"}) {
    if (std::string(spec).find("fuse") != std::string::npos &&
        !devices::transport_available(devices::Transport::kFuse))
      continue;
    const auto got = verdicts(check_spec(spec), "fd-direction/");
    EXPECT_EQ(got.size(), kIds.size()) << spec;
    for (auto id : kIds) EXPECT_EQ(got.at(id), Verdict::kPass) << spec << " " << id;
  }
  const auto got = verdicts(check_spec("sim:stopcopy,size=64K,transport=direct"), "fd-direction/");
  EXPECT_EQ(got.at("fd-direction/write-PC-fd"), Verdict::kSkip);
}

TEST(FdDirection, SaveFdTakingWritesFails) {
  for (auto [kind, id] :
       {std::pair{State::kStopCopy, kIds[0]}, std::pair{State::kPreCopy, kIds[1]}}) {
    const auto failed = failures_with<SaveFdTakesWrites>(kind);
    EXPECT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
    ASSERT_TRUE(failed.contains(id)) << id << "\n" << describe(failed);
    EXPECT_NE(failed.at(id).find("bytes taken"), std::string::npos);
  }
}

TEST(FdDirection, RefusedWriteThatMovedTheStreamFails) {
  const auto failed = failures_with<RefusedWriteMovesCursor>();
  EXPECT_EQ(failed.size(), 1u) << describe(failed);
  ASSERT_TRUE(failed.contains(kIds[0])) << describe(failed);
  EXPECT_NE(failed.at(kIds[0]).find("refused with EBADF"), std::string::npos);
  EXPECT_NE(failed.at(kIds[0]).find("differing from a session before at byte 0"), std::string::npos)
      << failed.at(kIds[0]);
}

TEST(FdDirection, ResumeFdAnsweringReadOrInfoFails) {
  auto failed = failures_with<ResumeFdReads>();
  EXPECT_EQ(failed.size(), 1u) << describe(failed);
  EXPECT_TRUE(failed.contains(kIds[2])) << describe(failed);
  failed = failures_with<ResumeFdAnswersInfo>();
  EXPECT_EQ(failed.size(), 1u) << describe(failed);
  EXPECT_TRUE(failed.contains(kIds[3])) << describe(failed);
}

}  // namespace
}  // namespace vfio::conform::testing
