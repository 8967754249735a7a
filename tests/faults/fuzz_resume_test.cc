// fuzz-resume's engine on simulated devices and decorators that misbehave: each oracle (hang,
// kernel log, a device that does not recover, accepted corrupted inputs) caught by a device made
// to trip it; determinism; the reproducers load.
#include "faults/fuzz_resume.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "core/feature.h"
#include "core/session.h"
#include "devices/device_spec.h"
#include "tests/eventually.h"
#include "tests/forwarding_device.h"

namespace vfio::faults {
namespace {

using testing::ForwardingDevice;
using uapi::State;

devices::OpenedDevice open(const std::string& spec) {
  auto arg = devices::parse_device_arg(spec);
  EXPECT_TRUE(arg) << arg.error().describe();
  auto opened = devices::open_device(*arg, 0);
  EXPECT_TRUE(opened) << opened.error().describe();
  return std::move(*opened);
}

// The target of a SET MIG_DEVICE_STATE in `arg`, if it is one.
std::optional<State> set_target(std::span<const std::byte> arg) {
  uapi::FeatureHeader h;
  uapi::MigState m;
  if (arg.size() < sizeof(h) + sizeof(m)) return std::nullopt;
  std::memcpy(&h, arg.data(), sizeof(h));
  std::memcpy(&m, arg.data() + sizeof(h), sizeof(m));
  if ((h.flags & uapi::kFeatureMask) !=
          static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) ||
      !(h.flags & uapi::kFeatureSet) || (h.flags & uapi::kFeatureProbe))
    return std::nullopt;
  return static_cast<State>(m.device_state);
}

// Counts the SETs into RESUMING (every input and every load makes one); `on_resume` sees the
// number of the one about to be sent, from 1, and `in_resume` each call of that session after it
// (writes into its data fd, and the SET that leaves RESUMING).
class CountsResumes : public ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;
  Result<> feature(std::span<std::byte> arg) override {
    const auto to = set_target(arg);
    if (to == State::kResuming) on_resume(++resumes_);
    if (to && to != State::kResuming && resuming_) in_resume(resumes_);
    auto r = ForwardingDevice::feature(arg);
    if (to) resuming_ = r && *to == State::kResuming;
    return r;
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    if (resuming_) in_resume(resumes_);
    return ForwardingDevice::write(fd, buf);
  }
  Result<> reset() override {
    resuming_ = false;
    return ForwardingDevice::reset();
  }

 protected:
  virtual void on_resume(int) {}
  virtual void in_resume(int) {}
  int resumes() const { return resumes_; }

 private:
  bool resuming_ = false;
  int resumes_ = 0;
};

class FuzzResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("vfio-mig-fuzz-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  FuzzResumeOptions options(std::uint64_t runs) const {
    FuzzResumeOptions o;
    o.seed = 5;
    o.max_inputs = runs;
    o.health_every = 10;
    o.out_dir = dir_.string();
    return o;
  }
  static std::uint64_t count(const FuzzResumeReport& r, ResumeOutcome o) {
    return r.outcomes.contains(o) ? r.outcomes.at(o) : 0;
  }
  static std::vector<std::byte> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return std::vector<std::byte>(reinterpret_cast<std::byte*>(c.data()),
                                  reinterpret_cast<std::byte*>(c.data()) + c.size());
  }
  std::filesystem::path dir_;
};

TEST_F(FuzzResumeTest, TheSimulatorRefusesEveryDamagedInputAndStaysHealthy) {
  for (const char* spec : {"sim:mtty,transport=direct", "sim:plain,size=4K,transport=direct",
                           "sim:mlx5,size=64K,transport=direct"}) {
    SCOPED_TRACE(spec);
    auto dev = open(spec);
    auto r = fuzz_resume(*dev.device, options(300));
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->inputs, 300u);
    EXPECT_EQ(count(*r, ResumeOutcome::kAccepted), 0u);
    EXPECT_EQ(r->accepted_corrupt, 0u);
    EXPECT_EQ(count(*r, ResumeOutcome::kRefused) + count(*r, ResumeOutcome::kWriteRefused), 300u);
    EXPECT_GT(count(*r, ResumeOutcome::kRefused), 0u);
    EXPECT_GT(count(*r, ResumeOutcome::kWriteRefused), 0u);
    EXPECT_TRUE(r->findings.empty()) << r->findings.front().detail;
    EXPECT_EQ(r->health_checks, 31u);  // every 10 inputs, and the final load of the first save
    EXPECT_EQ(r->layout, std::string(spec).substr(0, std::string(spec).find(',')));
    EXPECT_TRUE(std::filesystem::is_empty(dir_));
  }
}

// A device that never returns from its first call in the third RESUMING session (input 2: a write,
// or RESUMING -> STOP) until the test releases it.
class HangsOnThirdResume : public CountsResumes {
 public:
  using CountsResumes::CountsResumes;
  // Even when an assertion ended the test early: the hung call must leave this object first.
  ~HangsOnThirdResume() override {
    release();
    EXPECT_TRUE(testing::eventually([&] {
      std::lock_guard lock(mu_);
      return !entered_ || returned_;
    }));
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  Result<> feature(std::span<std::byte> arg) override {
    return leaving(CountsResumes::feature(arg));
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    return leaving(CountsResumes::write(fd, buf));
  }

 protected:
  void in_resume(int n) override {
    if (n != 3) return;
    std::unique_lock lock(mu_);
    if (entered_) return;
    entered_ = true;
    cv_.wait(lock, [&] { return released_; });
  }

 private:
  // The hung call has left the object only once the forwarded call behind in_resume returned
  // too: marked any earlier, the destructor could free the inner device under it.
  template <class R>
  R leaving(R r) {
    std::lock_guard lock(mu_);
    if (entered_ && released_) returned_ = true;
    return r;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, released_ = false, returned_ = false;
};

TEST_F(FuzzResumeTest, AHangIsReportedWithAReproducerAndTheRunEnds) {
  HangsOnThirdResume dev(std::move(open("sim:mtty,transport=direct").device));
  auto o = options(100);
  o.call_timeout = std::chrono::milliseconds(300);
  auto r = fuzz_resume(dev, o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_TRUE(r->device_abandoned);
  EXPECT_EQ(r->inputs, 3u);  // inputs 0 and 1 went through; input 2 hung
  EXPECT_EQ(count(*r, ResumeOutcome::kHang), 1u);
  ASSERT_EQ(r->findings.size(), 1u);
  const FuzzFinding& f = r->findings[0];
  EXPECT_EQ(f.kind, "hang");
  EXPECT_EQ(f.input, 2u);
  EXPECT_NE(f.detail.find("did not return within 0.3 s, during input 2;"), std::string::npos)
      << f.detail;
  EXPECT_FALSE(f.mutation.empty());
  // The reproducer is a stream of the device's id holding the input that hung.
  ASSERT_EQ(f.reproducer, (dir_ / "hang-000002.vfio-mig").string());
  auto stream = read_payload_stream(read_file(f.reproducer));
  ASSERT_TRUE(stream) << stream.error().describe();
  EXPECT_EQ(stream->device_id, dev.name());
}

// Takes any input: the bytes written in RESUMING are dropped and the device's own state goes in
// instead (as mtty takes any register bytes behind a good header).
class AcceptsAnything : public CountsResumes {
 public:
  AcceptsAnything(std::unique_ptr<Device> inner, std::vector<std::byte> own)
      : CountsResumes(std::move(inner)), own_(std::move(own)) {}
  Result<> feature(std::span<std::byte> arg) override {
    if (set_target(arg)) put_own();
    const auto to = set_target(arg);
    auto r = CountsResumes::feature(arg);
    if (r && to == State::kResuming) {
      uapi::MigState m;
      std::memcpy(&m, arg.data() + sizeof(uapi::FeatureHeader), sizeof(m));
      fd_ = m.data_fd;
    }
    return r;
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    return fd == fd_ ? Result<std::size_t>(buf.size()) : inner_->write(fd, buf);
  }
  Result<> close(int fd) override {
    if (fd == fd_) put_own();
    return CountsResumes::close(fd);
  }

 private:
  // Before the data fd closes or the device leaves RESUMING, whichever comes first.
  void put_own() {
    if (fd_ < 0) return;
    (void)inner_->write(fd_, own_);
    fd_ = -1;
  }
  std::vector<std::byte> own_;
  int fd_ = -1;
};

std::vector<std::byte> own_payload(Device& dev) {
  MemoryChannel out;
  Session s;
  s.add_device(dev, dev.name());
  EXPECT_TRUE(s.save(out));
  EXPECT_TRUE(s.resume_vm());
  auto p = read_payload_stream(out.data());
  EXPECT_TRUE(p) << p.error().describe();
  return p->data;
}

TEST_F(FuzzResumeTest, AcceptedCorruptInputsAreCountedApartWithReproducers) {
  auto sim = open("sim:mtty,transport=direct");
  auto own = own_payload(*sim.device);
  AcceptsAnything dev(std::move(sim.device), own);
  auto o = options(50);
  o.accepted_reproducers = 4;
  auto r = fuzz_resume(dev, o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->inputs, 50u);
  EXPECT_EQ(count(*r, ResumeOutcome::kAccepted), 50u);
  EXPECT_EQ(r->accepted_corrupt, 50u);
  EXPECT_TRUE(r->findings.empty()) << r->findings.front().detail;  // reported apart
  ASSERT_EQ(r->accepted.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r->accepted[i].kind, "accepted-corrupt");
    EXPECT_EQ(r->accepted[i].input, i);
    // The reproducer holds a damaged payload: never the device's own.
    auto stream = read_payload_stream(read_file(r->accepted[i].reproducer));
    ASSERT_TRUE(stream) << stream.error().describe();
    EXPECT_NE(stream->data, own);
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 4);
}

// A reset that fails from the fourth on: the device cannot come back to RUNNING.
class ResetFailsFromTheFourth : public CountsResumes {
 public:
  using CountsResumes::CountsResumes;
  Result<> reset() override {
    if (++resets_ >= 4) return fail(EIO, "reset failed");
    return CountsResumes::reset();
  }

 private:
  int resets_ = 0;
};

TEST_F(FuzzResumeTest, ADeviceThatDoesNotComeBackEndsTheRun) {
  ResetFailsFromTheFourth dev(std::move(open("sim:mtty,transport=direct").device));
  auto r = fuzz_resume(dev, options(100));
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->inputs, 4u);
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].kind, "unrecovered");
  EXPECT_EQ(r->findings[0].input, 3u);
  EXPECT_NE(r->findings[0].detail.find("not back in RUNNING: reset failed"), std::string::npos)
      << r->findings[0].detail;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "unrecovered-000003.vfio-mig"));
  EXPECT_FALSE(r->device_abandoned);
}

// Reads of its own state fail once it entered RESUMING a seventh time: its save is broken.
class SaveBreaksAfterSevenResumes : public CountsResumes {
 public:
  using CountsResumes::CountsResumes;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    if (resumes() >= 7) return fail(EIO, "read broken");
    return CountsResumes::read(fd, buf);
  }
};

TEST_F(FuzzResumeTest, TheHealthRoundTripCatchesADeviceThatCannotSaveAnyMore) {
  SaveBreaksAfterSevenResumes dev(std::move(open("sim:mtty,transport=direct").device));
  auto o = options(100);
  o.health_every = 5;
  auto r = fuzz_resume(dev, o);
  ASSERT_TRUE(r) << r.error().describe();
  // Inputs 0-4 are resumes 1-5 and the round trip after input 4 passes (its load is resume 6);
  // inputs 5-9 are resumes 7-11, and the round trip after input 9 cannot save.
  EXPECT_EQ(r->inputs, 10u);
  EXPECT_EQ(r->health_checks, 2u);
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].kind, "unrecovered");
  EXPECT_EQ(r->findings[0].input, 9u);
  EXPECT_NE(r->findings[0].detail.find("the health round trip after input 9 failed: its save "
                                       "failed"),
            std::string::npos)
      << r->findings[0].detail;
}

// Logs a kernel WARNING (a line in /dev/kmsg's record format) as it enters RESUMING the `when`th
// time.
class WarnsOnResume : public CountsResumes {
 public:
  WarnsOnResume(std::unique_ptr<Device> inner, std::filesystem::path log, int when)
      : CountsResumes(std::move(inner)), log_(std::move(log)), when_(when) {}

 protected:
  void on_resume(int n) override {
    if (n == when_)
      std::ofstream(log_, std::ios::app)
          << "4,900,5000,-;WARNING: CPU: 0 PID: 7 at mtty.c:99 mtty_load_state\n";
  }

 private:
  std::filesystem::path log_;
  int when_;
};

TEST_F(FuzzResumeTest, KernelTroubleDuringAnInputIsAFindingWithItsReproducer) {
  const auto log = dir_.parent_path() / fmt::format("vfio-mig-fuzz-kmsg-{}", ::getpid());
  std::ofstream(log) << "4,1,100,-;WARNING: CPU: 0 PID: 1 at old.c:1 before_the_run\n";
  // Resume 2 is input 1's.
  WarnsOnResume dev(std::move(open("sim:mtty,transport=direct").device), log, 2);
  auto o = options(20);
  o.kernel_log = log.string();
  auto r = fuzz_resume(dev, o);
  std::filesystem::remove(log);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->inputs, 20u);  // kernel trouble is reported; the run goes on
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].kind, "kernel-log");
  EXPECT_EQ(r->findings[0].input, 1u);
  EXPECT_NE(r->findings[0].detail.find("[warning] WARNING: CPU: 0 PID: 7 at mtty.c:99"),
            std::string::npos)
      << r->findings[0].detail;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "kernel-log-000001.vfio-mig"));
}

TEST_F(FuzzResumeTest, KernelTroubleDuringAHealthCheckIsAFindingWithoutAnInput) {
  const auto log = dir_.parent_path() / fmt::format("vfio-mig-fuzz-kmsg-h-{}", ::getpid());
  std::ofstream(log) << "";
  // Inputs 0-9 are resumes 1-10; resume 11 is the load of the round trip after input 9.
  WarnsOnResume dev(std::move(open("sim:mtty,transport=direct").device), log, 11);
  auto o = options(20);
  o.kernel_log = log.string();
  auto r = fuzz_resume(dev, o);
  std::filesystem::remove(log);
  ASSERT_TRUE(r) << r.error().describe();
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].kind, "kernel-log");
  EXPECT_FALSE(r->findings[0].input);
  EXPECT_EQ(r->findings[0].detail.rfind("during the health round trip after input 9: 1 kernel log "
                                        "trouble line(s); [warning] WARNING",
                                        0),
            0u)
      << r->findings[0].detail;
}

// The same seed gives the same inputs and verdicts; another seed other inputs.
TEST_F(FuzzResumeTest, TheSeedDecidesEverything) {
  auto run = [&](std::uint64_t seed) {
    auto sim = open("sim:plain,size=2K,transport=direct");
    auto own = own_payload(*sim.device);
    AcceptsAnything dev(std::move(sim.device), own);
    auto o = options(200);
    o.seed = seed;
    o.out_dir.clear();
    auto r = fuzz_resume(dev, o);
    EXPECT_TRUE(r) << r.error().describe();
    std::string mutations;
    for (const auto& f : r->accepted) mutations += f.mutation + "\n";
    auto strict = open("sim:plain,size=2K,transport=direct");
    auto s = fuzz_resume(*strict.device, o);
    EXPECT_TRUE(s) << s.error().describe();
    std::string verdicts;
    for (const auto& [name, n] : s->refused_errnos) verdicts += fmt::format("{} {}\n", name, n);
    for (const auto& [name, n] : s->write_errnos) verdicts += fmt::format("w {} {}\n", name, n);
    return std::pair(mutations, verdicts);
  };
  const auto a = run(11), b = run(11), c = run(12);
  EXPECT_EQ(a, b);
  EXPECT_NE(a.first, c.first);
  EXPECT_FALSE(a.second.empty());
}

TEST_F(FuzzResumeTest, TheDeviceEndsWithTheStateItHadBefore) {
  auto dev = open("sim:mtty,transport=direct");
  const auto before = own_payload(*dev.device);
  auto r = fuzz_resume(*dev.device, options(40));
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(own_payload(*dev.device), before);
}

TEST_F(FuzzResumeTest, ADeviceNotRunningIsRefusedUnlessResetFirst) {
  auto dev = open("sim:mtty,transport=direct");
  ASSERT_TRUE(request_device_state(*dev.device, State::kStop));
  auto r = fuzz_resume(*dev.device, options(5));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the first save of the device failed"), std::string::npos)
      << r.error().message;
  auto o = options(5);
  o.session.reset_first = true;
  EXPECT_TRUE(fuzz_resume(*dev.device, o));
}

// A cancel (the CLI's on SIGINT) stops after the current input; the device still gets its first
// state back.
TEST_F(FuzzResumeTest, ACancelStopsTheRunCleanly) {
  auto sim = open("sim:mtty,transport=direct");
  const auto before = own_payload(*sim.device);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  struct CancelsAtFive : CountsResumes {
    using CountsResumes::CountsResumes;
    std::shared_ptr<std::atomic<bool>> cancel;
    void on_resume(int n) override {
      if (n == 5) *cancel = true;
    }
  } dev(std::move(sim.device));
  dev.cancel = cancel;
  auto o = options(100);
  o.cancel = cancel;
  auto r = fuzz_resume(dev, o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_TRUE(r->cancelled);
  EXPECT_EQ(r->inputs, 5u);
  EXPECT_TRUE(r->findings.empty());
  EXPECT_EQ(own_payload(dev), before);
}

}  // namespace
}  // namespace vfio::faults
