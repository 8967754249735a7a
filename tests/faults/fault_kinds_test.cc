// Each fault kind, proven to fire through FaultDevice and FaultChannel, on both transports:
// DirectDevice in-process and the FUSE-served simulator reached with real syscalls.
#include <gtest/gtest.h>

#include <cerrno>
#include <thread>

#include "core/feature.h"
#include "devices/device_spec.h"
#include "faults/fault_channel.h"
#include "faults/fault_device.h"
#include "faults/sim_hooks.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

using uapi::State;

class FaultKinds : public ::testing::TestWithParam<devices::Transport> {
 protected:
  void SetUp() override {
    if (auto ok = devices::transport_available(GetParam()); !ok)
      GTEST_SKIP() << "transport " << devices::transport_name(GetParam())
                   << " not usable here: " << ok.error().describe();
  }

  // A device with `plan` around it, moved to STOP_COPY with its save fd open.
  void start(std::string_view plan_text) {
    auto plan = parse_plan(plan_text);
    ASSERT_TRUE(plan) << plan.error().message;
    injector_ = std::make_unique<Injector>(*plan);
    sim::SimOptions o;
    o.state_size = 64 * 1024;
    o.seed = 5;
    auto h = devices::open_sim(GetParam(), *sim::find_profile("plain"), o, "kinds");
    ASSERT_TRUE(h) << h.error().describe();
    sim_ = std::move(*h);
    hooks_ = std::make_unique<SimHooks>(sim_.model);
    dev_ = std::make_unique<FaultDevice>(*sim_.device, *injector_, Side::kSource, hooks_.get());
  }

  int open_save() {
    EXPECT_TRUE(request_device_state(*dev_, State::kStop));
    auto fd = request_device_state(*dev_, State::kStopCopy);
    EXPECT_TRUE(fd) << fd.error().describe();
    return fd.value_or(-1);
  }

  std::vector<std::byte> clean_stream() {
    std::vector<std::byte> out(sim_.model->stream_size());
    sim::render_stream(sim_.model->profile(), sim_.model->image(), 0, out);
    return out;
  }

  std::unique_ptr<Injector> injector_;
  devices::OpenedDevice sim_;
  std::unique_ptr<SimHooks> hooks_;
  std::unique_ptr<FaultDevice> dev_;
};

TEST_P(FaultKinds, ErrnoFailsWithoutReachingTheDevice) {
  start("read nth=1 -> errno=ENODEV");
  int fd = open_save();
  std::vector<std::byte> buf(100);
  auto r = dev_->read(fd, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  auto again = dev_->read(fd, buf);
  ASSERT_TRUE(again);
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), clean_stream().begin()));  // nothing consumed
  EXPECT_EQ(injector_->fired().size(), 1u);
  EXPECT_TRUE(dev_->close(fd));
}

TEST_P(FaultKinds, ShortTransfersAtMostK) {
  start("read nth=1 -> short=10");
  int fd = open_save();
  std::vector<std::byte> buf(100);
  EXPECT_EQ(dev_->read(fd, buf).value_or(0), 10u);
  EXPECT_EQ(dev_->read(fd, buf).value_or(0), 100u);
  EXPECT_TRUE(dev_->close(fd));
}

TEST_P(FaultKinds, DelayWaits) {
  start("get:data-size -> delay=30ms");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(query_stop_copy_size(*dev_));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(30));
}

TEST_P(FaultKinds, LandLeavesTheDeviceInTheStateAndFails) {
  start("set:S>SC -> land=ERROR");
  ASSERT_TRUE(request_device_state(*dev_, State::kStop));
  auto r = request_device_state(*dev_, State::kStopCopy);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_EQ(sim_.model->state(), State::kError);
  EXPECT_TRUE(dev_->reset());
  EXPECT_EQ(sim_.model->state(), State::kRunning);
}

TEST_P(FaultKinds, AsyncResetMakesTheFdStale) {
  start("read nth=2 -> async-reset");
  int fd = open_save();
  std::vector<std::byte> buf(100);
  ASSERT_TRUE(dev_->read(fd, buf));
  auto r = dev_->read(fd, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_EQ(sim_.model->state(), State::kRunning);
  EXPECT_TRUE(dev_->close(fd));
}

TEST_P(FaultKinds, CorruptDropDupTransform) {
  start("read nth=1 -> corrupt=3; read nth=2 -> drop=4; read nth=3 -> dup=5");
  int fd = open_save();
  auto clean = clean_stream();
  std::vector<std::byte> buf(100);
  ASSERT_EQ(dev_->read(fd, buf).value_or(0), 100u);
  int diff = 0;
  for (int i = 0; i < 100; ++i) diff += buf[i] != clean[i];
  EXPECT_EQ(diff, 3);
  EXPECT_EQ(dev_->read(fd, buf).value_or(0), 96u);
  EXPECT_EQ(dev_->read(fd, buf).value_or(0), 100u);  // 95 read + 5 repeated
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 5, buf.begin() + 95));
  EXPECT_TRUE(dev_->close(fd));
}

TEST_P(FaultKinds, TruncateEndsTheStreamEofOnlyOnce) {
  start("read nth=1 -> eof; read nth=3 -> truncate");
  int fd = open_save();
  std::vector<std::byte> buf(100);
  EXPECT_EQ(dev_->read(fd, buf).value_or(1), 0u);
  EXPECT_EQ(dev_->read(fd, buf).value_or(0), 100u);
  EXPECT_EQ(dev_->read(fd, buf).value_or(1), 0u);
  EXPECT_EQ(dev_->read(fd, buf).value_or(1), 0u);
  EXPECT_TRUE(dev_->close(fd));
}

TEST_P(FaultKinds, HangBlocksUntilCancelled) {
  start("get:migration -> hang");
  Result<std::uint64_t> r = 0;
  std::thread t([&] { r = query_migration_flags(*dev_); });
  while (!injector_->hanging()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  injector_->cancel();
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
}

TEST_P(FaultKinds, CancelCallsTheHookAndProceeds) {
  start("get:migration -> cancel");
  Side seen = Side::kAny;
  injector_->set_cancel_hook([&](Side s) { seen = s; });
  EXPECT_TRUE(query_migration_flags(*dev_));
  EXPECT_EQ(seen, Side::kSource);
}

TEST_P(FaultKinds, OpenAndCloseAndConfig) {
  start("open -> errno=EBUSY; close -> errno=EIO; config-read -> short=8");
  ASSERT_TRUE(request_device_state(*dev_, State::kStop));
  auto fd = request_device_state(*dev_, State::kStopCopy);
  ASSERT_FALSE(fd);  // the SET that would open a data fd
  EXPECT_EQ(sim_.model->state(), State::kStop);
  injector_ = std::make_unique<Injector>(*parse_plan("close -> errno=EIO; config-read -> short=8"));
  dev_ = std::make_unique<FaultDevice>(*sim_.device, *injector_, Side::kSource, hooks_.get());
  auto opened = request_device_state(*dev_, State::kStopCopy);
  ASSERT_TRUE(opened);
  auto closed = dev_->close(*opened);
  EXPECT_FALSE(closed);
  // close(2) semantics: the fd is released anyway.
  for (int i = 0; i < 200 && sim_.model->open_sessions(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(sim_.model->open_sessions(), 0u);
  std::vector<std::byte> cfg(64);
  EXPECT_EQ(dev_->config_read(0, cfg).value_or(0), 8u);
}

TEST_P(FaultKinds, WriteSideFaults) {
  start("write nth=1 -> short=3; write nth=2 -> truncate");
  ASSERT_TRUE(request_device_state(*dev_, State::kStop));
  auto fd = request_device_state(*dev_, State::kResuming);
  ASSERT_TRUE(fd);
  auto clean = clean_stream();
  EXPECT_EQ(dev_->write(*fd, std::span(clean).first(10)).value_or(0), 3u);
  // Truncated: reported written, never delivered; RS->S then finds the stream short.
  EXPECT_EQ(dev_->write(*fd, std::span(clean).subspan(3)).value_or(0), clean.size() - 3);
  EXPECT_FALSE(request_device_state(*dev_, State::kStop));
  (void)dev_->close(*fd);
}

TEST_P(FaultKinds, ChannelFaults) {
  start("");
  auto plan = parse_plan(
      "send nth=1 -> corrupt=1; send nth=2 -> drop=2; send nth=3 -> dup=2; send nth=4 -> "
      "errno=EPIPE; recv nth=1 -> short=3; recv nth=2 -> eof; recv nth=4 -> truncate");
  ASSERT_TRUE(plan);
  Injector inj(*plan);
  MemoryChannel mem;
  FaultChannel send(mem, inj, Side::kSource);
  const std::byte data[8] = {};
  EXPECT_EQ(send.write(data).value_or(0), 8u);
  EXPECT_EQ(send.write(data).value_or(0), 8u);
  EXPECT_EQ(send.write(data).value_or(0), 8u);
  EXPECT_FALSE(send.write(data));
  EXPECT_EQ(mem.data().size(), 8u + 6u + 10u);
  EXPECT_NE(mem.data()[0], std::byte{0});
  FaultChannel recv(mem, inj, Side::kDestination);
  std::byte buf[8];
  EXPECT_EQ(recv.read(buf).value_or(0), 3u);
  EXPECT_EQ(recv.read(buf).value_or(1), 0u);
  EXPECT_EQ(recv.read(buf).value_or(0), 8u);
  EXPECT_EQ(recv.read(buf).value_or(1), 0u);
  EXPECT_EQ(recv.read(buf).value_or(1), 0u);
  EXPECT_EQ(inj.fired().size(), 7u);
}

INSTANTIATE_TEST_SUITE_P(Transports, FaultKinds,
                         ::testing::Values(devices::Transport::kDirect, devices::Transport::kFuse),
                         [](const auto& info) {
                           return std::string(devices::transport_name(info.param));
                         });

}  // namespace
}  // namespace vfio::faults
