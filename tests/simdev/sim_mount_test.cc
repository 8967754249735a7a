// The simulator over FUSE: the engine's real syscalls (KernelDevice) against SimMount.
// Every test checks that this process leaves no vfio-mig-sim mount behind; all skip with the
// reason when FUSE cannot be used here.
#include "simdev/sim_mount.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/channel.h"
#include "core/cpu_pin.h"
#include "core/feature.h"
#include "core/retry.h"
#include "core/session.h"
#include "simdev/direct_device.h"
#include "simdev/fuse_cleanup.h"
#include "simdev/profile.h"
#include "tests/eventually.h"

namespace vfio::sim {
namespace {

using uapi::State;
using Clock = std::chrono::steady_clock;

// Mounts whose name carries this process's owner tag.
std::vector<std::string> our_mounts() {
  std::vector<std::string> out;
  const std::string tag = std::string(fuse_cleanup::kMountPrefix) + fuse_cleanup::owner_tag();
  for (const auto& m : fuse_cleanup::sim_mounts()) {
    if (m.mountpoint.find(tag) != std::string::npos) out.push_back(m.mountpoint);
  }
  return out;
}

bool is_mounted(const std::string& mountpoint) {
  for (const auto& m : fuse_cleanup::sim_mounts()) {
    if (m.mountpoint == mountpoint) return true;
  }
  return false;
}

std::shared_ptr<SimDevice> make(std::string_view profile, std::optional<std::uint64_t> size,
                                std::uint64_t seed) {
  return std::make_shared<SimDevice>(*find_profile(profile),
                                     SimOptions{.state_size = size, .seed = seed});
}

// After all tests: nothing of ours is mounted. On SIGINT/SIGTERM/SIGABRT (a ctest timeout, a
// failed assertion in a sanitizer) abort our connections first, so the process can die
// instead of hanging on its own mount.
class NoMountLeftBehind : public ::testing::Environment {
 public:
  void SetUp() override {
    for (int sig : {SIGINT, SIGTERM, SIGABRT}) std::signal(sig, on_fatal_signal);
  }
  void TearDown() override {
    const auto left = our_mounts();
    EXPECT_TRUE(left.empty()) << "left behind: " << left.front();
  }

 private:
  static void on_fatal_signal(int sig) {
    SimMount::abort_all_connections_of_this_process();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
};
[[maybe_unused]] const auto* const kNoMountLeftBehind =
    ::testing::AddGlobalTestEnvironment(new NoMountLeftBehind);

class SimMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto ok = SimMount::fuse_available(); !ok)
      GTEST_SKIP() << "FUSE unavailable: " << ok.error().describe();
    auto m = SimMount::create();
    ASSERT_TRUE(m) << m.error().describe();
    mount_ = std::move(*m);
  }

  void TearDown() override {
    if (mount_) {
      const std::string mp = mount_->mountpoint();
      auto r = mount_->unmount();
      EXPECT_TRUE(r) << r.error().describe();
      mount_.reset();
      EXPECT_FALSE(std::filesystem::exists(mp)) << mp;
    }
    EXPECT_TRUE(our_mounts().empty()) << "left behind: " << our_mounts().front();
  }

  // A device on the mount, opened through the kernel.
  std::unique_ptr<KernelDevice> serve(const std::shared_ptr<SimDevice>& sim, std::string name,
                                      SimMount* on = nullptr) {
    auto path = (on ? on : mount_.get())->add_device(sim, name);
    EXPECT_TRUE(path) << path.error().describe();
    auto dev = SimMount::open_device(*path, name + " (fuse)", sim);
    EXPECT_TRUE(dev) << dev.error().describe();
    return std::move(*dev);
  }

  std::unique_ptr<SimMount> mount_;
};

int err(const Result<>& r) {
  return r ? 0 : r.error().code;
}
template <class T>
int err(const Result<T>& r) {
  return r ? 0 : r.error().code;
}

TEST_F(SimMountTest, EveryProfileRoundTripsThroughTheEngine) {
  for (const auto& profile : all_profiles()) {
    SCOPED_TRACE(std::string(profile.name));
    const auto size =
        profile.name == "mtty" ? std::nullopt : std::optional<std::uint64_t>((3 << 20) + 12345);
    auto src_sim = make(profile.name, size, 3), dst_sim = make(profile.name, size, 4);
    auto src = serve(src_sim, std::string(profile.name) + "-src");
    auto dst = serve(dst_sim, std::string(profile.name) + "-dst");
    ASSERT_NE(src_sim->image(), dst_sim->image());
    ASSERT_TRUE(src->config_write(0x40, std::as_bytes(std::span("tag"))));

    MemoryChannel stream;
    Session source;
    source.add_device(*src, "dev");
    auto saved = source.save(stream);
    ASSERT_TRUE(saved) << saved.error().describe();
    EXPECT_EQ(saved->device_bytes, src_sim->stream_size());
    EXPECT_EQ(src_sim->state(), State::kStop);

    Session destination;
    destination.add_device(*dst, "dev");
    auto loaded = destination.load(stream);
    ASSERT_TRUE(loaded) << loaded.error().describe();
    EXPECT_EQ(dst_sim->image(), src_sim->image());
    EXPECT_EQ(dst_sim->config(), src_sim->config());
    EXPECT_EQ(dst_sim->state(), State::kRunning);
  }
}

Result<Report> save_and_load(KernelDevice& src, KernelDevice& dst) {
  MemoryChannel stream;
  Session source, destination;
  source.add_device(src, "dev");
  destination.add_device(dst, "dev");
  auto saved = source.save(stream);
  if (!saved) return saved;
  return destination.load(stream);
}

// Below the device seam: the server answers ioctls, data reads and writes and config accesses
// with EINTR, EAGAIN and short counts, and the engine's syscall path absorbs every one.
TEST_F(SimMountTest, TheEngineAbsorbsEintrEagainAndShortCountsFromTheServer) {
  auto src_sim = make("mlx5", 1 << 20, 3), dst_sim = make("mlx5", 1 << 20, 4);
  auto src = serve(src_sim, "flaky-src"), dst = serve(dst_sim, "flaky-dst");
  mount_->set_fault(*src_sim, flaky_server(3, 5, 2));
  mount_->set_fault(*dst_sim, flaky_server(4, 3, 2));
  auto loaded = save_and_load(*src, *dst);
  ASSERT_TRUE(loaded) << loaded.error().describe();
  EXPECT_EQ(dst_sim->image(), src_sim->image());
  EXPECT_EQ(dst_sim->config(), src_sim->config());
  EXPECT_EQ(dst_sim->state(), State::kRunning);
}

// The same server with an engine that does not repeat EAGAIN (the retry seam off): it fails,
// so the test above does reach the engine's retries.
TEST_F(SimMountTest, AnEngineThatGivesUpOnEagainFailsBelowTheSeam) {
  auto src_sim = make("mlx5", 1 << 20, 3), dst_sim = make("mlx5", 1 << 20, 4);
  auto src = serve(src_sim, "intolerant-src"), dst = serve(dst_sim, "intolerant-dst");
  mount_->set_fault(*src_sim, flaky_server(1000, 5, 1000));
  set_transient_retry_limit(0);
  auto loaded = save_and_load(*src, *dst);
  set_transient_retry_limit(kMaxTransientRetries);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, EAGAIN) << loaded.error().describe();
  mount_->set_fault(*src_sim, {});
}

// Opening and closing the device file reach the model: a device that keeps its state (mtty)
// still has it when opened again; one that does not is reset when its last user closes it.
TEST_F(SimMountTest, CloseAndOpenReachTheModel) {
  auto kept = make("mtty", std::nullopt, 1), dropped = make("mlx5", 4096, 2);
  for (const auto& sim : {kept, dropped}) {
    auto dev = serve(sim, std::string(sim->profile().name));
    auto fd = request_device_state(*dev, State::kStopCopy);
    ASSERT_TRUE(fd) << fd.error().describe();
    ASSERT_TRUE(dev->close(*fd));
  }
  // The kernel sends FUSE's RELEASE after close() returns: wait for it to arrive.
  EXPECT_TRUE(vfio::testing::eventually([&] { return dropped->state() == State::kRunning; }));
  EXPECT_EQ(kept->state(), State::kStopCopy);
  auto again = SimMount::open_device(mount_->mountpoint() + "/mtty", "mtty again");
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(query_device_state(**again), State::kStopCopy);
}

// FUSE carries only an errno; the model's reason still reaches the message (take_refusal),
// for a device that rejects the data at RESUMING -> STOP and for one that refuses a write.
TEST_F(SimMountTest, RefusalsNameTheDevicesOwnReasonOverFuse) {
  MemoryChannel mlx5_stream, stopcopy_stream;
  {
    auto src = serve(make("mlx5", 4096, 1), "reason-src");
    Session source;
    source.add_device(*src, "mlx5");
    ASSERT_TRUE(source.save(mlx5_stream));
  }
  {
    auto src = serve(make("stopcopy", 4096, 2), "reason-src2");
    Session source;
    source.add_device(*src, "stopcopy");
    ASSERT_TRUE(source.save(stopcopy_stream));
  }
  struct Case {
    std::string profile;
    MemoryChannel* stream;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      // plain takes the bytes and judges them at RESUMING -> STOP.
      {"plain",
       &mlx5_stream,
       {"the destination device rejected the loaded data: the arc RESUMING -> STOP failed",
        "resume stream header", "another device or profile"}},
      // mlx5 refuses the first write of a stream from another profile.
      {"mlx5",
       &stopcopy_stream,
       {"DEV_DATA_STATE chunk of", "at stream offset", "the device refused it", "write to data fd",
        "malformed stream header"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.profile);
    c.stream->rewind();
    auto dst_sim = make(c.profile, 4096, 3);
    auto dst = serve(dst_sim, c.profile + "-reason-dst");
    Session destination;
    destination.add_device(*dst, "dst");
    auto r = destination.load(*c.stream);
    ASSERT_FALSE(r);
    for (const auto& text : c.expected)
      EXPECT_NE(r.error().describe().find(text), std::string::npos) << r.error().describe();
    EXPECT_EQ(dst_sim->state(), State::kRunning);
  }
}

// The same reads through DirectDevice and through FUSE return the same counts and bytes,
// short ones included: a 1 MiB read() returns only what the model produced.
TEST_F(SimMountTest, ShortReadsReachTheCallerExactly) {
  const std::uint64_t size = (2 << 20) + 777;  // mlx5: 4 MiB records, so reads end at records
  auto fuse_sim = make("mlx5", size, 7);
  auto fuse = serve(fuse_sim, "mlx5");
  DirectDevice direct(make("mlx5", size, 7), "direct");
  auto fd = request_device_state(*fuse, State::kStopCopy);
  auto dd = request_device_state(direct, State::kStopCopy);
  ASSERT_TRUE(fd && dd);
  std::vector<std::byte> a(1 << 20), b(1 << 20);
  bool saw_short = false;
  for (;;) {
    auto n = ::read(*fd, a.data(), a.size());
    auto m = direct.read(*dd, b);
    ASSERT_TRUE(m);
    ASSERT_EQ(n, static_cast<ssize_t>(*m));
    ASSERT_TRUE(std::equal(a.begin(), a.begin() + n, b.begin()));
    if (n == 0) break;
    saw_short |= n > 0 && static_cast<std::size_t>(n) < a.size();
  }
  EXPECT_TRUE(saw_short);
  // Precopy: ENOMSG at the temporary end of data is an errno, not a short read.
  ::close(*fd);
  ASSERT_TRUE(request_device_state(*fuse, State::kRunning));
  auto pc = request_device_state(*fuse, State::kPreCopy);
  ASSERT_TRUE(pc);
  while (::read(*pc, a.data(), a.size()) > 0) {
  }
  EXPECT_EQ(errno, ENOMSG);
  ::close(*pc);
}

TEST_F(SimMountTest, WriteErrorsReachTheCallerExactly) {
  auto mtty = serve(make("mtty", std::nullopt, 1), "mtty");
  auto fd = request_device_state(*mtty, State::kResuming);
  ASSERT_TRUE(fd);
  std::vector<std::byte> junk(100, std::byte{0x5a});
  EXPECT_EQ(::write(*fd, junk.data(), junk.size()), -1);
  EXPECT_EQ(errno, EFAULT);  // mtty's answer to a bad header
  ::close(*fd);
  // A 3 MiB write is split into 1 MiB requests; the model takes all of it.
  auto sim = make("plain", 3 << 20, 2);
  auto src = make("plain", 3 << 20, 2);
  auto dst = serve(sim, "plain");
  auto in = request_device_state(*dst, State::kResuming);
  ASSERT_TRUE(in);
  std::vector<std::byte> stream(src->stream_size());
  render_stream(src->profile(), src->image(), 0, stream);
  EXPECT_EQ(::write(*in, stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
  EXPECT_TRUE(request_device_state(*dst, State::kRunning));
  ::close(*in);
}

TEST_F(SimMountTest, OldDataFdFailsEnodevAfterReset) {
  auto dev = serve(make("mlx5", 1 << 20, 1), "mlx5");
  auto fd = request_device_state(*dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(dev->reset());
  EXPECT_EQ(*query_device_state(*dev), State::kRunning);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(err(dev->read(*fd, buf)), ENODEV);
  EXPECT_TRUE(dev->close(*fd));
}

TEST_F(SimMountTest, PrecopyInfoOnTheDataFd) {
  auto sim = make("plain", 1 << 20, 1);
  auto dev = serve(sim, "plain");
  auto fd = request_device_state(*dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  ASSERT_TRUE(dev->precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, sim->stream_size());
  std::vector<std::byte> buf(1000);
  ASSERT_EQ(*dev->read(*fd, buf), 1000u);
  ASSERT_TRUE(dev->precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, sim->stream_size() - 1000);
  info.argsz = 23;
  EXPECT_EQ(err(dev->precopy_info(*fd, info)), EINVAL);
  // Not on the device fd.
  info.argsz = sizeof(info);
  EXPECT_EQ(err(dev->precopy_info(dev->device_fd(), info)), ENOTTY);
  ASSERT_TRUE(request_device_state(*dev, State::kStopCopy));  // same session continues
  info.argsz = sizeof(info);
  EXPECT_EQ(err(dev->precopy_info(*fd, info)), EINVAL);
  EXPECT_TRUE(dev->close(*fd));
}

TEST_F(SimMountTest, DataFdIsCloseOnExecAndNew) {
  auto dev = serve(make("p2p", 4096, 1), "p2p");
  auto fd = request_device_state(*dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  EXPECT_GE(*fd, 0);
  EXPECT_NE(*fd, dev->device_fd());
  EXPECT_TRUE(::fcntl(*fd, F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(*request_device_state(*dev, State::kStopCopy), -1);  // no new fd
  EXPECT_TRUE(dev->close(*fd));
}

TEST_F(SimMountTest, FeatureErrnosPassThrough) {
  auto dev = serve(make("stopcopy", 4096, 1), "stopcopy");
  struct {
    uapi::FeatureHeader h;
    uapi::MigState s;
  } arg{};
  auto call = [&](std::uint32_t argsz, std::uint32_t flags) {
    arg.h = {argsz, flags};
    return err(dev->feature(std::as_writable_bytes(std::span(&arg, 1))));
  };
  const std::uint32_t state = static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState);
  EXPECT_EQ(call(4, state | uapi::kFeatureGet), EINVAL);
  EXPECT_EQ(call(sizeof(arg), 33 | uapi::kFeatureGet), ENOTTY);
  EXPECT_EQ(call(sizeof(arg), 6 | uapi::kFeatureSet), ENOTTY);  // no DMA logging
  EXPECT_EQ(call(sizeof(arg), state | uapi::kFeatureGet | uapi::kFeatureSet), EINVAL);
  EXPECT_EQ(call(sizeof(arg), state | uapi::kFeatureGet), 0);
  EXPECT_EQ(arg.s.device_state, static_cast<std::uint32_t>(State::kRunning));
  EXPECT_EQ(call(1 << 20, state | uapi::kFeatureGet), EFAULT);  // beyond what we expose
  EXPECT_EQ(::ioctl(dev->device_fd(), 0x3B00 + 99), -1);
  EXPECT_EQ(errno, ENOTTY);
  // Refused SET: the struct comes back with data_fd -1 and the requested state.
  arg.s = {static_cast<std::uint32_t>(State::kPreCopy), 1234};
  EXPECT_EQ(call(sizeof(arg), state | uapi::kFeatureSet), EINVAL);
  EXPECT_EQ(arg.s.data_fd, -1);
  EXPECT_EQ(arg.s.device_state, static_cast<std::uint32_t>(State::kPreCopy));
}

TEST_F(SimMountTest, ConfigRegionAndDeviceInfo) {
  auto sim = make("plain", 4096, 5);
  auto dev = serve(sim, "plain");
  auto info = dev->device_info();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->flags, uapi::kDeviceFlagsPci | uapi::kDeviceFlagsReset);
  EXPECT_EQ(info->num_regions, 9u);
  auto region = dev->region_info(uapi::kPciConfigRegionIndex);
  ASSERT_TRUE(region);
  EXPECT_EQ(region->size, sim->config().size());
  EXPECT_EQ(region->offset, 7ULL << 40);
  EXPECT_EQ(region->flags, uapi::kRegionFlagRead | uapi::kRegionFlagWrite);
  EXPECT_EQ(err(dev->region_info(9)), EINVAL);

  std::vector<std::byte> cfg(sim->config().size());
  ASSERT_EQ(*dev->config_read(0, cfg), cfg.size());
  EXPECT_EQ(cfg, sim->config());
  ASSERT_TRUE(dev->config_write(0x40, std::as_bytes(std::span("hello"))));
  ASSERT_EQ(*dev->config_read(0, cfg), cfg.size());
  EXPECT_EQ(cfg, sim->config());
  std::vector<std::byte> tail(64);
  EXPECT_EQ(*dev->config_read(cfg.size() - 16, tail), 16u);  // clipped at the region's end
}

TEST_F(SimMountTest, ManyDevicesPerMountAndTwoMounts) {
  auto second = SimMount::create();
  ASSERT_TRUE(second) << second.error().describe();
  EXPECT_NE((*second)->mountpoint(), mount_->mountpoint());
  std::vector<std::shared_ptr<SimDevice>> sims;
  std::vector<std::unique_ptr<KernelDevice>> devs;
  for (int i = 0; i < 6; ++i) {
    sims.push_back(make("p2p", 100000 + i, 10 + i));
    devs.push_back(serve(sims.back(), fmt::format("dev{}", i), i % 2 ? second->get() : nullptr));
  }
  EXPECT_EQ(err(mount_->add_device(sims[0], "dev0")), EEXIST);
  EXPECT_EQ(err(mount_->add_device(sims[0], ".data")), EINVAL);
  // Data fds open on several devices at once, copied across the two mounts.
  for (int i = 0; i < 6; i += 2) {
    ASSERT_NE(sims[i]->image(), sims[i + 1]->image());
    auto out = request_device_state(*devs[i], State::kStopCopy);
    auto in = request_device_state(*devs[i + 1], State::kResuming);
    ASSERT_TRUE(out && in);
    std::vector<std::byte> buf(65536);
    for (;;) {
      auto n = devs[i]->read(*out, buf);
      ASSERT_TRUE(n);
      if (*n == 0) break;
      ASSERT_EQ(*devs[i + 1]->write(*in, std::span(buf).first(*n)), *n);
    }
    ASSERT_TRUE(request_device_state(*devs[i + 1], State::kStop));
    EXPECT_EQ(sims[i + 1]->image(), sims[i]->image());
    ASSERT_TRUE(devs[i]->close(*out));
    ASSERT_TRUE(devs[i + 1]->close(*in));
  }
  devs.clear();
  EXPECT_TRUE((*second)->unmount());
}

// A mount placed on a CPU serves every request there, even when its caller runs elsewhere.
TEST_F(SimMountTest, APlacedMountServesOnItsCpu) {
  const auto cpus = allowed_cpus(2);
  if (cpus.empty()) GTEST_SKIP() << "this process may use only one CPU";
  SimMountOptions options;
  options.cpu = cpus[1];
  auto placed = SimMount::create(options);
  ASSERT_TRUE(placed) << placed.error().describe();
  auto sim = make("plain", 4 << 20, 1);
  auto dev = serve(sim, "plain", placed->get());
  std::mutex mu;
  std::set<int> served_on;
  (*placed)->set_fault(*sim, [&](FuseRequest, std::size_t) {
    std::lock_guard lock(mu);
    served_on.insert(::sched_getcpu());
    return FuseAnswer{};
  });
  {
    CpuPin caller(cpus[0]);  // a server left to the scheduler would often wake here
    auto fd = request_device_state(*dev, State::kStopCopy);
    ASSERT_TRUE(fd);
    std::vector<std::byte> buf(64 << 10);
    for (auto n = dev->read(*fd, buf); n && *n > 0; n = dev->read(*fd, buf)) {
    }
    ASSERT_TRUE(dev->close(*fd));
    ASSERT_TRUE(request_device_state(*dev, State::kRunning));
  }
  (*placed)->set_fault(*sim, {});
  EXPECT_EQ(served_on, std::set<int>{cpus[1]});
  dev.reset();
  EXPECT_TRUE((*placed)->unmount());
}

TEST_F(SimMountTest, UnmountWithFdsStillOpenDoesNotHang) {
  auto sim = make("mlx5", 1 << 20, 1);
  auto dev = serve(sim, "mlx5");
  auto fd = request_device_state(*dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  const std::string mp = mount_->mountpoint();
  auto done = std::async(std::launch::async, [&] { return mount_->unmount(); });
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "hung";
  EXPECT_TRUE(done.get());
  EXPECT_FALSE(is_mounted(mp));
  EXPECT_FALSE(std::filesystem::exists(mp));
  // The caller's fds are dead, not hanging; the session was released.
  std::vector<std::byte> buf(16);
  EXPECT_EQ(err(dev->read(*fd, buf)), ENOTCONN);
  EXPECT_EQ(err(query_device_state(*dev)), ENOTCONN);
  EXPECT_TRUE(dev->close(*fd));
  dev.reset();
  EXPECT_TRUE(mount_->unmount());  // idempotent
}

// The unprivileged way: no fusectl. Requests in flight just before unmount (the RELEASE of a
// closed fd, a lookup) must not make it hang, whichever way the race goes.
TEST_F(SimMountTest, UnmountWithoutFusectlDoesNotHang) {
  for (int i = 0; i < 40; ++i) {
    SCOPED_TRACE(i);
    auto m = SimMount::create(SimMountOptions{.use_fusectl = false});
    ASSERT_TRUE(m) << m.error().describe();
    auto dev = serve(make("p2p", 4096, 1), "p2p", m->get());
    auto fd = request_device_state(*dev, State::kStopCopy);
    ASSERT_TRUE(fd);
    int kept = -1;
    if (i % 2) {
      ASSERT_TRUE(dev->close(*fd));  // its RELEASE is sent asynchronously
    } else {
      kept = *fd;  // left open over the unmount
    }
    const std::string mp = (*m)->mountpoint();
    auto done = std::async(std::launch::async, [&] { return (*m)->unmount(); });
    if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      SimMount::abort_all_connections_of_this_process();  // unstick, then report
      FAIL() << "unmount hung";
    }
    EXPECT_TRUE(done.get());
    EXPECT_FALSE(is_mounted(mp));
    if (kept >= 0) {
      std::vector<std::byte> buf(16);
      EXPECT_EQ(err(dev->read(kept, buf)), ENOTCONN);
      EXPECT_TRUE(dev->close(kept));
    }
  }
}

TEST_F(SimMountTest, StaleMountOfAKilledProcessIsCleaned) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    auto m = SimMount::create();
    std::string mp = m ? (*m)->mountpoint() : std::string();
    mp += '\n';
    (void)!::write(pipefd[1], mp.data(), mp.size());
    // Hold the mount until killed; a crash never unmounts.
    if (m) (void)m->release();
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  std::string mp;
  char c;
  while (::read(pipefd[0], &c, 1) == 1 && c != '\n') mp += c;
  ::close(pipefd[0]);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_FALSE(mp.empty()) << "the child could not mount";
  // ctest runs other FUSE tests in parallel processes, and their create() cleans stale mounts
  // too: the dead child's mount may already be gone, which is the behaviour under test as well.
  if (is_mounted(mp)) {
    EXPECT_FALSE(fuse_cleanup::owner_alive(mp));
  }

  auto another = SimMount::create();  // cleans up before mounting
  ASSERT_TRUE(another);
  EXPECT_FALSE(is_mounted(mp));
  EXPECT_FALSE(std::filesystem::exists(mp));
  EXPECT_TRUE(fuse_cleanup::owner_alive((*another)->mountpoint()));
  EXPECT_TRUE((*another)->unmount());
}

// A FUSE server that takes a read and never answers it, in a child that reads through it
// itself: killed with SIGKILL, the server thread dies and the reading thread stays in D state
// (request_wait_answer) for as long as the connection lives, as a vfio-mig process killed in the
// middle of a transfer does. Mounted under the simulator's name and owner tag so that the
// stale-mount cleanup considers it.
namespace stuck {
int g_ready_fd = -1;
void op_lookup(fuse_req_t req, fuse_ino_t, const char*) {
  fuse_entry_param e{};
  e.ino = 2;
  e.attr.st_ino = 2;
  e.attr.st_mode = S_IFREG | 0600;
  e.attr.st_nlink = 1;
  fuse_reply_entry(req, &e);
}
void op_open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}
void op_read(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*) {
  (void)!::write(g_ready_fd, "r", 1);  // the read is in flight
  for (;;) ::pause();
}
fuse_lowlevel_ops ops() {
  fuse_lowlevel_ops o{};
  o.lookup = op_lookup;
  o.open = op_open;
  o.read = op_read;
  return o;
}

[[noreturn]] void child_main(int ready_fd) {
  g_ready_fd = ready_fd;
  std::string dir =
      fmt::format("/tmp/{}{}.XXXXXX", fuse_cleanup::kMountPrefix, fuse_cleanup::owner_tag());
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&args, "stuck");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, fmt::format("fsname={}", fuse_cleanup::kFsName).c_str());
  const fuse_lowlevel_ops o = ops();
  fuse_session* se =
      ::mkdtemp(dir.data()) ? fuse_session_new(&args, &o, sizeof(o), nullptr) : nullptr;
  if (!se || fuse_session_mount(se, dir.c_str()) != 0) ::_exit(1);
  std::thread([se] { fuse_session_loop(se); }).detach();
  const int fd = ::open((dir + "/f").c_str(), O_RDONLY);
  char buf[16];
  (void)!::read(fd, buf, sizeof(buf));  // never answered
  ::_exit(2);
}
}  // namespace stuck

char proc_state(pid_t pid) {
  std::FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (!f) return 0;
  char state = 0;
  (void)!std::fscanf(f, "%*d (%*[^)]) %c", &state);
  std::fclose(f);
  return state;
}

TEST_F(SimMountTest, MountOfAnOwnerStuckInDStateIsFreed) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    stuck::child_main(ready[1]);
  }
  ::close(ready[1]);
  char c;
  const bool in_flight = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  std::string mp;
  unsigned long dev = 0;
  for (const auto& m : fuse_cleanup::sim_mounts()) {
    if (m.mountpoint.find(fmt::format("{}{}.", fuse_cleanup::kMountPrefix, child)) !=
        std::string::npos) {
      mp = m.mountpoint;
      dev = m.dev;
    }
  }
  ::kill(child, SIGKILL);
  ASSERT_TRUE(in_flight) << "the child could not mount";
  ASSERT_FALSE(mp.empty());
  // The child now waits for an answer no one will give: D state, SIGKILL pending. (A parallel
  // test process's cleanup may free it first; then it is gone already.)
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (proc_state(child) != 'D' && is_mounted(mp) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (is_mounted(mp)) {
    EXPECT_FALSE(fuse_cleanup::owner_alive(mp));
  }

  fuse_cleanup::cleanup_stale_mounts();
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(child, &status, WNOHANG)) == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(reaped, child) << "the child is still stuck in state " << proc_state(child);
  const bool mounted = is_mounted(mp);
  EXPECT_FALSE(mounted);
  if (!mounted) {
    EXPECT_FALSE(std::filesystem::exists(mp));  // stat only once no server can be stuck
  } else {                                      // do not leave it stuck for ever
    (void)fuse_cleanup::abort_connection(dev);
    ::umount2(mp.c_str(), MNT_DETACH);
    ::waitpid(child, nullptr, 0);
  }
}

TEST_F(SimMountTest, AbortAllConnectionsUnblocksEverything) {
  auto dev = serve(make("plain", 4096, 1), "plain");
  const std::string mp = mount_->mountpoint();
  SimMount::abort_all_connections_of_this_process();
  EXPECT_FALSE(is_mounted(mp));
  EXPECT_EQ(err(query_device_state(*dev)), ENOTCONN);
  dev.reset();
  EXPECT_TRUE(mount_->unmount());
}

// Numbers for the report, not assertions: run with --gtest_also_run_disabled_tests.
TEST_F(SimMountTest, DISABLED_Benchmark) {
  auto sim = make("mlx5", std::nullopt, 1);  // 256 MiB
  auto dev = serve(sim, "mlx5");
  constexpr int kCalls = 10000;
  auto t0 = Clock::now();
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(query_device_state(*dev));
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kCalls;

  class NullChannel final : public Channel {
   public:
    Result<std::size_t> write(std::span<const std::byte> d) override { return d.size(); }
    Result<std::size_t> read(std::span<std::byte>) override { return 0; }
    const std::string& name() const override { return name_; }
    std::string name_ = "null";
  } null;
  SessionOptions o;
  o.migration.data_buffer_size = 1 << 20;
  Session s(o);
  s.add_device(*dev, "mlx5");
  t0 = Clock::now();
  auto r = s.save(null);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(r) << r.error().describe();
  DirectDevice direct(make("mlx5", std::nullopt, 1), "direct");
  Session ds(o);
  ds.add_device(direct, "mlx5");
  t0 = Clock::now();
  ASSERT_TRUE(ds.save(null));
  const double direct_secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("FUSE ioctl round trip (GET MIG_DEVICE_STATE): %.2f us/call over %d calls\n", us,
              kCalls);
  std::printf("FUSE save of %llu bytes (mlx5, 1 MiB buffers): %.3f s, %.0f MiB/s\n",
              static_cast<unsigned long long>(r->device_bytes), secs,
              r->device_bytes / secs / (1 << 20));
  std::printf("direct transport, same save: %.3f s, %.0f MiB/s\n", direct_secs,
              r->device_bytes / direct_secs / (1 << 20));
}

}  // namespace
}  // namespace vfio::sim
