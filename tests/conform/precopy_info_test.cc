// conform's precopy-info group: PRECOPY_INFO against a reader on another thread, and in
// PRE_COPY_P2P; each misbehaving device gets the figures wrong in one of those places.
#include <gtest/gtest.h>

#include <condition_variable>
#include <thread>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

using uapi::State;
using namespace std::chrono_literals;

constexpr const char* kSim = "sim:mlx5,size=64K,transport=direct";
constexpr std::array kIds = {"precopy-info/during-reads", "precopy-info/falls-in-PCP",
                             "precopy-info/kept-across-PC->PCP"};

// Remembers the newest PRE_COPY fd, and the one whose session a SET PC->PCP continued.
class WatchesSets : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<> feature(std::span<std::byte> arg) override {
    auto r = OpenedIn::feature(arg);
    const auto mig = set_state_arg(arg);
    if (!r || !mig) return r;
    std::lock_guard lock(mu_);
    if (mig->data_fd >= 0 && mig->device_state == static_cast<std::uint32_t>(State::kPreCopy))
      newest_pc_ = mig->data_fd;
    if (mig->device_state == static_cast<std::uint32_t>(State::kPreCopyP2p) && mig->data_fd < 0)
      moved_to_pcp_ = newest_pc_;  // PC->PCP: the PRE_COPY session goes on
    return r;
  }

 protected:
  // The PRE_COPY fd whose session a SET PC->PCP continued, if any.
  bool moved_to_pcp(int fd) {
    std::lock_guard lock(mu_);
    return fd == moved_to_pcp_;
  }

 private:
  std::mutex mu_;
  int newest_pc_ = -1, moved_to_pcp_ = -1;
};

// Broken: PRECOPY_INFO taken while a read is in flight counts the chunk being read twice (moved
// to the staging buffer, still counted where it came from). The first read of a PRE_COPY fd that
// another thread is asking PRECOPY_INFO about waits (at most 10 s) for a call to overlap it, so
// the race happens whatever the timing.
class CountsReadInFlight : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    {
      std::unique_lock lock(mu_);
      if (!raced_ && fd == info_fd_ && info_thread_ != std::this_thread::get_id() &&
          opened_in(fd) == State::kPreCopy) {
        in_flight_ = buf.size();
        cv_.wait_for(lock, 10s, [&] { return raced_; });
      }
    }
    auto r = inner_->read(fd, buf);
    std::lock_guard lock(mu_);
    in_flight_ = 0;
    return r;
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    auto r = inner_->precopy_info(fd, info);
    std::lock_guard lock(mu_);
    info_fd_ = fd;
    info_thread_ = std::this_thread::get_id();
    if (r && in_flight_) {
      info.initial_bytes += in_flight_;
      raced_ = true;
      cv_.notify_all();
    }
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int info_fd_ = -1;
  std::thread::id info_thread_;
  std::size_t in_flight_ = 0;
  bool raced_ = false;
};

// Broken: in a session begun in PRE_COPY_P2P, PRECOPY_INFO keeps answering its first figures
// (the P2P save path reads a buffer the ioctl does not look at).
class FrozenInPcp : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    auto r = inner_->precopy_info(fd, info);
    if (!r || opened_in(fd) != State::kPreCopyP2p) return r;
    std::lock_guard lock(mu_);
    auto [it, first] = first_.try_emplace(fd, info);
    info = it->second;
    return r;
  }

 private:
  std::mutex mu_;
  std::map<int, uapi::PrecopyInfo> first_;
};

// Broken: PC->PCP re-arms the initial data: PRECOPY_INFO counts what was read before again.
class RearmsOnPcp : public WatchesSets {
 public:
  using WatchesSets::WatchesSets;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    auto r = inner_->read(fd, buf);
    std::lock_guard lock(mu_);
    if (r && !moved_to_pcp(fd)) read_[fd] += *r;
    return r;
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    auto r = inner_->precopy_info(fd, info);
    std::lock_guard lock(mu_);
    if (r && moved_to_pcp(fd)) info.initial_bytes += read_[fd];
    return r;
  }

 private:
  std::mutex mu_;
  std::map<int, std::uint64_t> read_;  // before PC->PCP
};

// Broken: PC->PCP ends the session's data: reads on the PRE_COPY fd fail from then on.
class EndsSessionOnPcp : public WatchesSets {
 public:
  using WatchesSets::WatchesSets;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (moved_to_pcp(fd)) return fail(ENODEV, "session ended by PC->PCP");
    return inner_->read(fd, buf);
  }
};

TEST(PrecopyInfo, WellBehavedDevicesPass) {
  expect_verdicts({kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                   "sim:plain,size=64K,transport=direct"},
                  "precopy-info/", kIds);
}

TEST(PrecopyInfo, SkippedWithoutPrecopy) {
  expect_verdicts({"sim:stopcopy,size=64K,transport=direct", "sim:p2p,size=64K,transport=direct"},
                  "precopy-info/", kIds, Verdict::kSkip);
}

TEST(PrecopyInfo, AReadInFlightCountedTwiceFails) {
  EXPECT_NE(
      only_failure(check_broken<CountsReadInFlight>(kSim), kIds[0]).find("initial_bytes grew"),
      std::string::npos);
}

TEST(PrecopyInfo, FiguresFrozenInPreCopyP2pFail) {
  EXPECT_NE(only_failure(check_broken<FrozenInPcp>(kSim), kIds[1]).find("after reading"),
            std::string::npos);
}

TEST(PrecopyInfo, PcToPcpReArmingOrEndingTheSessionFails) {
  EXPECT_NE(only_failure(check_broken<RearmsOnPcp>(kSim), kIds[2]).find("re-armed"),
            std::string::npos);
  EXPECT_NE(only_failure(check_broken<EndsSessionOnPcp>(kSim), kIds[2]).find("did not go on"),
            std::string::npos);
}

}  // namespace
}  // namespace vfio::conform::testing
