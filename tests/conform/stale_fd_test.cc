// conform's stale-fd group: data fds kept after their session ended, while a new session of the
// same kind runs; each misbehaving device lets the old fd reach the new session in one way.
#include <gtest/gtest.h>

#include <set>

#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

using uapi::State;

constexpr const char* kSim = "sim:mlx5,size=64K,transport=direct";
constexpr std::array kIds = {"stale-fd/read-old-SC",  "stale-fd/close-old-SC",
                             "stale-fd/read-old-PC",  "stale-fd/info-old-PC",
                             "stale-fd/write-old-RS", "stale-fd/read-after-PCP->RP"};

// Remembers the newest data fd opened in each state (-1: none yet).
class Newest : public OpenedIn {
 public:
  using OpenedIn::OpenedIn;
  Result<> feature(std::span<std::byte> arg) override {
    auto r = OpenedIn::feature(arg);
    if (auto fd = ::vfio::testing::new_data_fd(r, arg)) {
      std::lock_guard lock(mu_);
      newest_[fd->second] = fd->first;
    }
    return r;
  }

 protected:
  int newest(State s) {
    std::lock_guard lock(mu_);
    auto it = newest_.find(s);
    return it == newest_.end() ? -1 : it->second;
  }
  // Whether `fd`, opened in `s`, has been replaced by a newer session of that kind.
  bool replaced(int fd, State s) {
    const int now = newest(s);
    return opened_in(fd) == s && now >= 0 && now != fd;
  }

 private:
  std::mutex mu_;  // the concurrency checks call from several threads
  std::map<State, int> newest_;
};

enum class Op { kRead, kWrite, kInfo };

// Broken: a call of kind `op` on a stale fd opened in `kind` reaches the newest session of that
// kind, as a file that looks up the device's current migration file instead of its own.
class StaleReachesNewest : public Newest {
 public:
  StaleReachesNewest(std::unique_ptr<Device> inner, State kind, Op op)
      : Newest(std::move(inner)), kind_(kind), op_(op) {}
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    auto r = inner_->read(fd, buf);
    if (op_ == Op::kRead && stale(r, fd)) return inner_->read(newest(kind_), buf);
    return r;
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    auto r = inner_->write(fd, buf);
    if (op_ == Op::kWrite && stale(r, fd)) return inner_->write(newest(kind_), buf);
    return r;
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    auto r = inner_->precopy_info(fd, info);
    if (op_ == Op::kInfo && stale(r, fd)) return inner_->precopy_info(newest(kind_), info);
    return r;
  }

 private:
  template <class T>
  bool stale(const Result<T>& r, int fd) {
    return !r && r.error().code == ENODEV && replaced(fd, kind_);
  }
  State kind_;
  Op op_;
};

// Broken: closing a STOP_COPY fd that a newer STOP_COPY session replaced ends the newer one (a
// release() that disables the device's current file rather than its own).
class ClosingStaleEndsCurrent : public Newest {
 public:
  using Newest::Newest;
  Result<> close(int fd) override {
    {
      std::lock_guard lock(mu_);
      dead_.erase(fd);
      if (replaced(fd, State::kStopCopy)) dead_.insert(newest(State::kStopCopy));
    }
    return inner_->close(fd);
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    {
      std::lock_guard lock(mu_);
      if (dead_.contains(fd)) return fail(ENODEV, "session ended by closing a stale fd");
    }
    return inner_->read(fd, buf);
  }

 private:
  std::mutex mu_;
  std::set<int> dead_;
};

// Broken: a PRE_COPY_P2P fd still gives data after PCP->RP (the driver ends sessions on PC->R
// only): reads on it that the device refuses answer zeros.
class KeepsPcpSessionOnRp : public Newest {
 public:
  using Newest::Newest;
  Result<> feature(std::span<std::byte> arg) override {
    auto r = Newest::feature(arg);
    const auto mig = set_state_arg(arg);
    if (r && mig && mig->device_state == static_cast<std::uint32_t>(State::kRunningP2p)) {
      std::lock_guard lock(mu_);
      kept_ = newest(State::kPreCopyP2p);
    }
    return r;
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    auto r = inner_->read(fd, buf);
    std::lock_guard lock(mu_);
    if (r || fd != kept_) return r;
    std::ranges::fill(buf, std::byte{0});
    return buf.size();
  }

 private:
  std::mutex mu_;
  int kept_ = -1;
};

TEST(StaleFd, WellBehavedDevicesPass) {
  expect_verdicts({kSim, "sim:mlx5,size=64K,transport=fuse", "sim:mtty,transport=direct",
                   "sim:plain,size=64K,transport=direct"},
                  "stale-fd/", kIds);
}

TEST(StaleFd, WithoutPrecopyOnlyTheStopCopyAndResumeChecksRun) {
  const auto got = verdicts(check_spec("sim:stopcopy,size=64K,transport=direct"), "stale-fd/");
  for (auto id : kIds) {
    const bool runs = std::string_view(id).ends_with("SC") || std::string_view(id).ends_with("RS");
    EXPECT_EQ(got.at(id), runs ? Verdict::kPass : Verdict::kSkip) << id;
  }
}

TEST(StaleFd, EachStaleCallReachingTheNewSessionFailsExactlyItsCheck) {
  const struct {
    State kind;
    Op op;
    const char* id;
  } cases[] = {{State::kStopCopy, Op::kRead, "stale-fd/read-old-SC"},
               {State::kPreCopy, Op::kRead, "stale-fd/read-old-PC"},
               {State::kPreCopy, Op::kInfo, "stale-fd/info-old-PC"},
               {State::kResuming, Op::kWrite, "stale-fd/write-old-RS"}};
  for (const auto& c : cases)
    EXPECT_NE(only_failure(check_broken<StaleReachesNewest>(kSim, c.kind, c.op), c.id)
                  .find("expected an error"),
              std::string::npos)
        << c.id;
}

TEST(StaleFd, ClosingTheOldFdMustNotEndTheNewSession) {
  EXPECT_NE(only_failure(check_broken<ClosingStaleEndsCurrent>(kSim), "stale-fd/close-old-SC")
                .find("failed with ENODEV"),
            std::string::npos);
}

TEST(StaleFd, APreCopyP2pSessionLeftOpenByPcpToRpFails) {
  EXPECT_NE(only_failure(check_broken<KeepsPcpSessionOnRp>(kSim), "stale-fd/read-after-PCP->RP")
                .find("got 4096 bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace vfio::conform::testing
