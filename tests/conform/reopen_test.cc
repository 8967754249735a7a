// conform's reopen group: a device opened again starts afresh; abandoned pre-copy sessions
// leave nothing behind.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include "core/feature.h"
#include "core/uapi.h"
#include "tests/conform/torture_support.h"

namespace vfio::conform::testing {
namespace {

void expect_all_pass(const Report& r) {
  const auto got = verdicts(r, "reopen/");
  ASSERT_EQ(got.size(), 8u);
  for (const auto& [id, v] : got) EXPECT_EQ(v, Verdict::kPass) << id;
  EXPECT_TRUE(failures(r).empty()) << describe(failures(r));
}

TEST(Reopen, WellBehavedDevicePassesDirect) {
  expect_all_pass(check_spec("sim:mlx5,size=64K,transport=direct"));
}

// The reopen goes to the same file on the mount, so the same model.
TEST(Reopen, WellBehavedDevicePassesOverFuse) {
  if (!devices::transport_available(devices::Transport::kFuse)) GTEST_SKIP() << "no FUSE here";
  expect_all_pass(check_spec("sim:mlx5,size=64K,transport=fuse"));
}

TEST(Reopen, WithoutReopenTheReopenChecksSkip) {
  const auto got =
      verdicts(check_spec("sim:mlx5,size=64K,transport=direct", nullptr, false), "reopen/");
  EXPECT_EQ(got.at("reopen/precopy-cycles"), Verdict::kPass);
  EXPECT_EQ(got.at("reopen/second-stream"), Verdict::kSkip);
  EXPECT_EQ(got.at("reopen/fresh-open-running"), Verdict::kSkip);
}

// mtty keeps its migration state across close and open (keep-state=1, sim:mtty's default).
TEST(Reopen, StateKeptAcrossCloseFailsExactlyFreshOpen) {
  const Report r = check_spec("sim:mtty,transport=direct");
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 6u) << describe(failed);
  ASSERT_TRUE(failed.contains("reopen/fresh-open-running"));
  EXPECT_NE(failed.at("reopen/fresh-open-running").find("GET SC"), std::string::npos);
  for (std::string_view s : {"S", "RS", "RP", "PC", "PCP"})
    EXPECT_NE(
        failed.at(fmt::format("reopen/fresh-open-from-{}", s)).find(fmt::format("GET {},", s)),
        std::string::npos)
        << s;
  expect_all_pass(check_spec("sim:mtty,keep-state=0,transport=direct"));
}

// Keeps the state it was closed in, but only one state: the next open finds the device there.
struct ClosedIn {
  std::optional<uapi::State> state;
};
class KeepsOneStateOnClose : public Decorator {
 public:
  KeepsOneStateOnClose(std::unique_ptr<Device> inner, uapi::State kept,
                       std::shared_ptr<ClosedIn> closed)
      : Decorator(std::move(inner)), kept_(kept), closed_(std::move(closed)) {}
  ~KeepsOneStateOnClose() override {
    auto now = query_device_state(*inner_);
    closed_->state = now ? std::optional(*now) : std::nullopt;
  }
  // The first call on a new open puts it back in the state kept.
  void restore() {
    if (closed_->state != kept_) return;
    if (auto fd = request_device_state(*inner_, kept_); fd && *fd >= 0) (void)inner_->close(*fd);
  }

 private:
  uapi::State kept_;
  std::shared_ptr<ClosedIn> closed_;
};

TEST(Reopen, EachStateKeptAcrossCloseFailsExactlyItsFreshOpen) {
  using uapi::State;
  for (State kept : {State::kStopCopy, State::kStop, State::kResuming, State::kRunningP2p,
                     State::kPreCopy, State::kPreCopyP2p}) {
    const std::string short_name(uapi::state_short_name(kept));
    const std::string id = kept == State::kStopCopy ? "reopen/fresh-open-running"
                                                    : "reopen/fresh-open-from-" + short_name;
    auto closed = std::make_shared<ClosedIn>();
    const Report r =
        check_spec("sim:mlx5,size=64K,transport=direct",
                   [kept, closed](std::unique_ptr<Device> d, bool reopened) {
                     auto dev = std::make_unique<KeepsOneStateOnClose>(std::move(d), kept, closed);
                     if (reopened) dev->restore();
                     return dev;
                   });
    const auto failed = failures(r);
    ASSERT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
    ASSERT_TRUE(failed.contains(id)) << describe(failed);
    EXPECT_NE(failed.at(id).find("GET " + short_name + ","), std::string::npos) << failed.at(id);
  }
}

// A flag set by the first complete transfer and not cleared on open: every save after a reopen
// is empty (the hisi_acc bug fixed in 2026).
struct Transferred {
  std::atomic<bool> once = false;  // the concurrency checks read from two threads
};
class ForgetsToClearOnOpen : public Decorator {
 public:
  ForgetsToClearOnOpen(std::unique_ptr<Device> inner, std::shared_ptr<Transferred> t, bool reopened)
      : Decorator(std::move(inner)), t_(std::move(t)), reopened_(reopened) {}
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (reopened_ && t_->once) return 0;
    auto n = inner_->read(fd, buf);
    if (n && *n == 0) t_->once = true;
    return n;
  }

 private:
  std::shared_ptr<Transferred> t_;
  bool reopened_;
};

TEST(Reopen, EmptySecondStreamAfterReopenFailsExactlySecondStream) {
  auto t = std::make_shared<Transferred>();
  const Report r =
      check_spec("sim:mlx5,size=64K,transport=direct", [t](std::unique_ptr<Device> d, bool re) {
        return std::make_unique<ForgetsToClearOnOpen>(std::move(d), t, re);
      });
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 1u) << describe(failed);
  ASSERT_TRUE(failed.contains("reopen/second-stream"));
  EXPECT_NE(failed.at("reopen/second-stream").find("empty stream"), std::string::npos);
}

// Does not rewind its save cursor when a session is closed part way (only a reset does): the
// next session starts where the abandoned one stopped. Locked: the concurrency checks read from
// two threads.
class KeepsCursorAcrossSessions : public Decorator {
 public:
  using Decorator::Decorator;
  Result<> reset() override {
    std::lock_guard lock(mu_);
    carried_ = 0;
    read_.clear();
    return inner_->reset();
  }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    std::lock_guard lock(mu_);
    if (!read_.contains(fd) && carried_ > 0) {  // a new session: skip what the last one read
      std::vector<std::byte> skip(carried_);
      if (auto n = inner_->read(fd, skip); !n) return n;
      carried_ = 0;
    }
    auto n = inner_->read(fd, buf);
    if (n) read_[fd] += *n;
    return n;
  }
  Result<> close(int fd) override {
    std::lock_guard lock(mu_);
    carried_ += read_[fd];
    read_.erase(fd);
    return inner_->close(fd);
  }

 private:
  std::mutex mu_;
  std::uint64_t carried_ = 0;
  std::map<int, std::uint64_t> read_;
};

TEST(Reopen, CursorKeptAcrossPrecopySessionsFailsExactlyPrecopyCycles) {
  const Report r =
      check_spec("sim:mlx5,size=64K,transport=direct", [](std::unique_ptr<Device> d, bool) {
        return std::make_unique<KeepsCursorAcrossSessions>(std::move(d));
      });
  const auto failed = failures(r);
  ASSERT_EQ(failed.size(), 1u) << describe(failed);
  EXPECT_TRUE(failed.contains("reopen/precopy-cycles")) << describe(failed);
}

}  // namespace
}  // namespace vfio::conform::testing
