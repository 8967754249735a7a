// conform's concurrency group: a reset racing data-fd I/O, two threads on one data fd. Each
// misbehaving device forces its race (a rendezvous of the racing calls), so the verdicts do not
// depend on scheduling.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "core/feature.h"
#include "tests/conform/support.h"

namespace vfio::conform {
namespace {

using std::chrono_literals::operator""s;

// Forwarding that tells the checker's own thread (the one making the first call, GET
// MIGRATION, before any check starts a thread) from the threads a check starts.
class Threaded : public Forwarding {
 public:
  using Forwarding::Forwarding;
  Result<> feature(std::span<std::byte> arg) override {
    std::call_once(first_call_, [this] { checker_ = std::this_thread::get_id(); });
    return Forwarding::feature(arg);
  }

 protected:
  bool on_check_thread() const { return std::this_thread::get_id() != checker_; }

 private:
  std::once_flag first_call_;
  std::thread::id checker_;
};

// The first call a check's thread makes on a data fd waits for a second such call on the same
// fd (the race a misbehaving device needs), or until the fd goes stale (a reset), at most
// kHoldLimit. Later calls on that fd pass.
class Rendezvous {
 public:
  static constexpr auto kHoldLimit = 10s;  // never reached by a check that races as designed
  enum class Met { kPassed, kFirst, kSecond };
  Met meet(int fd) {
    std::unique_lock lock(mu_);
    if (stale_.contains(fd)) return Met::kPassed;
    if (!seen_.insert(fd).second) {
      if (waiting_ != fd) return Met::kPassed;
      waiting_ = -1;
      ++paired_;
      cv_.notify_all();
      return Met::kSecond;
    }
    waiting_ = fd;
    cv_.notify_all();
    const auto paired = paired_;
    cv_.wait_for(lock, kHoldLimit, [&] { return paired_ != paired || waiting_ != fd; });
    if (paired_ != paired) return Met::kFirst;
    if (waiting_ == fd) waiting_ = -1;
    return Met::kPassed;
  }
  // A reset: the fds open now are stale; a call waiting on one goes on alone.
  void reset(const std::set<int>& open) {
    std::lock_guard lock(mu_);
    stale_.insert(open.begin(), open.end());
    if (stale_.contains(waiting_)) waiting_ = -1;
    cv_.notify_all();
  }
  // Waits (at most kHoldLimit) for a call to wait, and lets it go on alone; whether one did.
  bool release_waiting() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kHoldLimit, [&] { return waiting_ >= 0; })) return false;
    waiting_ = -1;
    cv_.notify_all();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> seen_, stale_;
  int waiting_ = -1;
  std::uint64_t paired_ = 0;
};

// Broken (pds-like): a reset that arrives while a read or write is in flight is lost: the
// device stays where it was and the fd keeps working. A check's reset waits for the call. With
// `only`, just for fds opened in that state.
class LosesResetRacingIo : public Threaded {
 public:
  explicit LosesResetRacingIo(std::unique_ptr<Device> inner,
                              std::optional<uapi::State> only = std::nullopt)
      : Threaded(std::move(inner)), only_(only) {}
  // A SET from a check's thread (one ending the session under a read) makes the fds stale too.
  Result<> feature(std::span<std::byte> arg) override {
    if (on_check_thread()) meeting_.reset(open_);
    return Threaded::feature(arg);
  }
  Result<> reset() override {
    const bool racing = std::any_of(open_.begin(), open_.end(), [&](int fd) { return broken(fd); });
    if (on_check_thread() && racing && meeting_.release_waiting()) return {};
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (on_check_thread() && broken(fd)) meeting_.meet(fd);
    return Forwarding::read(fd, buf);
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (on_check_thread() && broken(fd)) meeting_.meet(fd);
    return Forwarding::write(fd, buf);
  }

 private:
  bool broken(int fd) const { return !only_ || opened_in(fd) == only_; }
  Rendezvous meeting_;
  std::optional<uapi::State> only_;
};

// Broken: a SET ending the session (SC->S, PC->R) while a read is in flight on an fd opened in
// `only` leaves that fd producing data (zeros) for good, session or not.
class LosesSessionEndRacingRead : public Threaded {
 public:
  LosesSessionEndRacingRead(std::unique_ptr<Device> inner, uapi::State only)
      : Threaded(std::move(inner)), only_(only) {}
  Result<> feature(std::span<std::byte> arg) override {
    uapi::FeatureHeader h{};
    std::memcpy(&h, arg.data(), std::min(arg.size(), sizeof(h)));
    const bool set = (h.flags & uapi::kFeatureSet) &&
                     (h.flags & uapi::kFeatureMask) ==
                         static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState);
    std::optional<int> racing;
    for (int fd : open_)
      if (opened_in(fd) == only_) racing = fd;
    if (set && racing && on_check_thread() && meeting_.release_waiting()) {
      std::lock_guard lock(mu_);
      survivors_.insert(*racing);
    }
    return Threaded::feature(arg);
  }
  Result<> reset() override {
    meeting_.reset(open_);
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (!on_check_thread() || opened_in(fd) != only_) return Forwarding::read(fd, buf);
    {
      std::lock_guard lock(mu_);
      if (survivors_.contains(fd)) {
        std::fill(buf.begin(), buf.end(), std::byte{0});
        return buf.size();
      }
    }
    meeting_.meet(fd);
    return Forwarding::read(fd, buf);
  }

 private:
  uapi::State only_;
  Rendezvous meeting_;
  std::mutex mu_;
  std::set<int> survivors_;
};

// Broken: a read begun on an fd a reset made stale waits for data that never comes (the reset
// does not wake it). Released when the test ends.
class HangsStaleReads : public Threaded {
 public:
  using Threaded::Threaded;
  ~HangsStaleReads() override {
    std::unique_lock lock(mu_);
    released_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return inside_ == 0; });
  }
  Result<> reset() override {
    {
      std::lock_guard lock(mu_);
      stale_.insert(open_.begin(), open_.end());
    }
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (!on_check_thread()) return Forwarding::read(fd, buf);
    {
      std::unique_lock lock(mu_);
      ++inside_;  // until the call is done with the device the destructor waits for
      if (stale_.contains(fd)) cv_.wait(lock, [&] { return released_; });
    }
    auto r = Forwarding::read(fd, buf);
    std::lock_guard lock(mu_);
    --inside_;
    cv_.notify_all();
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> stale_;
  bool released_ = false;
  int inside_ = 0;
};

// Broken: two reads racing on one save fd both read at the same position (the file offset
// taken before the lock): both get the same chunk.
class DuplicatesRacingReads : public Threaded {
 public:
  // With `only`, just on fds opened in that state.
  explicit DuplicatesRacingReads(std::unique_ptr<Device> inner,
                                 std::optional<uapi::State> only = std::nullopt)
      : Threaded(std::move(inner)), only_(only) {}
  Result<> feature(std::span<std::byte> arg) override {
    if (on_check_thread()) meeting_.reset(open_);
    return Threaded::feature(arg);
  }
  Result<> reset() override {
    meeting_.reset(open_);
    return Forwarding::reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (!on_check_thread() || (only_ && opened_in(fd) != only_)) return Forwarding::read(fd, buf);
    switch (meeting_.meet(fd)) {
      case Rendezvous::Met::kPassed:
        return Forwarding::read(fd, buf);
      case Rendezvous::Met::kFirst: {
        auto r = Forwarding::read(fd, buf);
        std::lock_guard lock(mu_);
        shared_ = r ? Result<std::vector<std::byte>>(
                          std::vector<std::byte>(buf.begin(), buf.begin() + *r))
                    : std::unexpected(r.error());
        cv_.notify_all();
        return r;
      }
      case Rendezvous::Met::kSecond:
        break;
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return shared_.has_value(); });
    auto got = *std::exchange(shared_, std::nullopt);
    if (!got) return std::unexpected(got.error());
    std::copy(got->begin(), got->end(), buf.begin());
    return got->size();
  }

 private:
  Rendezvous meeting_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Result<std::vector<std::byte>>> shared_;
  std::optional<uapi::State> only_;
};

// Broken (qat-like): the resume buffer's bound is checked before the lock. Two writes that
// each fit alone both pass the check, then both land: the device takes more than its size.
// (The simulator underneath refuses the second; the broken driver copies it past its buffer.)
class BoundsBeforeLock : public Threaded {
 public:
  BoundsBeforeLock(std::unique_ptr<Device> inner, std::uint64_t bound)
      : Threaded(std::move(inner)), bound_(bound) {}
  Result<> reset() override {
    {
      std::lock_guard lock(mu_);
      taken_.clear();
    }
    meeting_.reset(open_);
    return Forwarding::reset();
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    std::uint64_t taken;
    {
      std::lock_guard lock(mu_);
      if (!open_.contains(fd)) return Forwarding::write(fd, buf);
      taken = taken_[fd];
    }
    if (taken + buf.size() > bound_) return fail(ENOMEM, "write: past the resume buffer");
    if (on_check_thread() && taken + buf.size() == bound_) meeting_.meet(fd);
    auto r = Forwarding::write(fd, buf);
    if (!r && r.error().code != ENOMEM) return r;
    std::lock_guard lock(mu_);
    taken_[fd] += buf.size();
    return buf.size();
  }

 private:
  std::uint64_t bound_;
  Rendezvous meeting_;
  std::mutex mu_;
  std::map<int, std::uint64_t> taken_;
};

constexpr const char* kSim = "sim:plain,size=64K";

void expect_concurrency_passes(Device& dev, bool hanging_arcs = true) {
  Options options;
  options.strict_resume_validation = true;
  options.send_hanging_arcs = hanging_arcs;
  auto checked = check_device(dev, options);
  ASSERT_TRUE(checked);
  const Report& report = *checked;
  EXPECT_EQ(report.counts().failed, 0u) << failures(report);
  for (auto id : {"concurrency/reset-during-read-SC", "concurrency/reset-during-write-RS",
                  "concurrency/two-readers", "concurrency/two-writers"})
    EXPECT_EQ(verdict_of(report, id), Verdict::kPass) << id;
}

TEST(Concurrency, WellBehavedSimulatorsPass) {
  for (const char* spec :
       {"sim:plain,size=64K", "sim:mtty", "sim:mlx5,size=1M", "sim:stopcopy,size=64K"}) {
    SCOPED_TRACE(spec);
    auto dev = open_sim(spec);
    ASSERT_NE(dev, nullptr);
    expect_concurrency_passes(*dev);
  }
}

// Through real syscalls: the threads share one fd of the FUSE-served device.
TEST(Concurrency, WellBehavedSimulatorPassesOnTheSyscallPath) {
  if (!devices::transport_available(devices::Transport::kFuse)) GTEST_SKIP() << "no FUSE";
  auto opened =
      devices::open_device(*devices::parse_device_arg("sim:mlx5,size=64K,transport=fuse"), 0);
  ASSERT_TRUE(opened) << opened.error().describe();
  expect_concurrency_passes(*opened->device, /*hanging_arcs=*/false);  // KernelDevice refuses
}

TEST(Concurrency, ResetLostWhileIoIsInFlightFails) {
  LosesResetRacingIo dev(open_sim(kSim));
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report),
            (std::set<std::string>{
                "concurrency/reset-during-read-PC", "concurrency/reset-during-read-PCP",
                "concurrency/reset-during-read-SC", "concurrency/reset-during-write-RS"}))
      << failures(report);
  EXPECT_NE(report.find("concurrency/reset-during-read-SC")->detail.find("expected RUNNING"),
            std::string::npos);
}

// A session ended by a SET racing a read: the fd keeps giving data. Only that check fails.
TEST(Concurrency, SessionEndLostWhileReadingFailsExactlyItsCheck) {
  for (auto [state, id] : {std::pair{uapi::State::kStopCopy, "concurrency/set-during-read-SC"},
                           std::pair{uapi::State::kPreCopy, "concurrency/set-during-read-PC"}}) {
    LosesSessionEndRacingRead dev(open_sim(kSim), state);
    auto report = run_checks(dev);
    EXPECT_EQ(failed_ids(report), std::set<std::string>{id}) << failures(report);
    EXPECT_NE(report.find(id)->detail.find("outlived the session"), std::string::npos)
        << report.find(id)->detail;
  }
}

// Only a PRE_COPY_P2P session loses the racing reset: only its check fails.
TEST(Concurrency, ResetLostWhileReadingInPrecopyP2pFailsExactlyItsCheck) {
  LosesResetRacingIo dev(open_sim(kSim), uapi::State::kPreCopyP2p);
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{"concurrency/reset-during-read-PCP"})
      << failures(report);
}

// The stale read never returns: the watchdog names it, abandons the device and reports the
// checks so far; the concurrency group stops at its first check.
TEST(Concurrency, ReadHangingAfterResetIsKernelHang) {
  HangsStaleReads dev(open_sim(kSim));
  Options options;
  options.call_timeout = 1s;
  auto report = run_checks(dev, true, options);
  EXPECT_TRUE(report.device_abandoned);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{"watchdog/kernel-hang"}) << failures(report);
  ASSERT_FALSE(report.checks.empty());
  const std::string& detail = report.checks.back().detail;
  EXPECT_TRUE(detail.starts_with("kernel-hang: read(data fd ")) << detail;
  EXPECT_NE(detail.find(", 4096 bytes) did not return within 1 s"), std::string::npos) << detail;
  EXPECT_EQ(report.find("concurrency/reset-during-read-SC"), nullptr);
  EXPECT_EQ(report.find("precopy-accounting/initial-never-grows"), nullptr);
}

TEST(Concurrency, RacingReadsGivingOneChunkTwiceFail) {
  DuplicatesRacingReads dev(open_sim(kSim));
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report),
            (std::set<std::string>{"concurrency/two-readers", "concurrency/two-readers-PC"}))
      << failures(report);
  EXPECT_NE(report.find("concurrency/two-readers")->detail.find("do not tile"), std::string::npos);
}

// Only in PRE_COPY: only the pre-copy readers' check fails.
TEST(Concurrency, RacingPrecopyReadsGivingOneChunkTwiceFailExactlyTheirCheck) {
  DuplicatesRacingReads dev(open_sim(kSim), uapi::State::kPreCopy);
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{"concurrency/two-readers-PC"})
      << failures(report);
  EXPECT_NE(report.find("concurrency/two-readers-PC")->detail.find("do not tile"),
            std::string::npos);
}

TEST(Concurrency, BoundCheckedOutsideTheLockFails) {
  auto inner = open_sim(kSim);
  auto bound = query_stop_copy_size(*inner);  // RUNNING: the length of a stream of the state
  ASSERT_TRUE(bound);
  BoundsBeforeLock dev(std::move(inner), *bound);
  auto report = run_checks(dev);
  EXPECT_EQ(failed_ids(report), std::set<std::string>{"concurrency/two-writers"})
      << failures(report);
  EXPECT_NE(report.find("concurrency/two-writers")->detail.find("more than the device's bound"),
            std::string::npos);
}

TEST(Concurrency, DeviceWithoutABoundSkipsTheWriterRace) {
  // A device that takes any number of bytes has no bound to race for.
  struct TakesExtraBytes : Forwarding {
    using Forwarding::Forwarding;
    Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
      auto r = Forwarding::write(fd, buf);
      return r || r.error().code != ENOMEM ? r : Result<std::size_t>(buf.size());
    }
  } dev(open_sim(kSim));
  auto report = run_checks(dev);
  EXPECT_EQ(verdict_of(report, "concurrency/two-writers"), Verdict::kSkip);
}

}  // namespace
}  // namespace vfio::conform
