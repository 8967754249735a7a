// Devices an earlier process left in any state: the engine learns the real state before a save,
// load or migrate, refuses anything but RUNNING (or, with reset_first, resets it), and no layer
// sends the arc Linux 6.12 hangs on (SET STOP_COPY -> PRE_COPY/PRE_COPY_P2P). The simulated
// mtty here behaves as the real one on 6.12: it keeps its state across close and open, and
// hangs on that arc, counting every one that arrives.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "core/feature.h"
#include "core/local_migration.h"
#include "core/session.h"
#include "tests/core/faulty_device.h"
#include "tests/core/sim_pair.h"
#include "tests/core/stale_mtty.h"
#include "tests/eventually.h"

namespace vfio {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using uapi::State;

constexpr State kStaleStates[] = {State::kStop,       State::kStopCopy, State::kResuming,
                                  State::kRunningP2p, State::kPreCopy,  State::kPreCopyP2p,
                                  State::kError};

std::string name_of(std::uint64_t seed) {
  return "mtty#" + std::to_string(seed);
}

testing::SimHandle fresh(std::uint64_t seed) {
  auto model = testing::linux_6_12_mtty(seed);
  return {model, std::make_unique<sim::DirectDevice>(model, name_of(seed))};
}

// A device an earlier process left in `state` and closed, opened again.
testing::SimHandle stale(State state, std::uint64_t seed) {
  auto model = testing::linux_6_12_mtty(seed);
  {
    sim::DirectDevice earlier(model, "earlier process");
    testing::leave_in_state(earlier, *model, state);
  }
  return {model, std::make_unique<sim::DirectDevice>(model, name_of(seed))};
}

SessionOptions options(bool reset_first, std::vector<std::string>* notices = nullptr) {
  SessionOptions o;
  o.migration.precopy = true;  // as the CLI's default --precopy auto
  o.reset_first = reset_first;
  if (notices) o.on_notice = [notices](const std::string& line) { notices->push_back(line); };
  return o;
}

// The refusal names the device, the state it is in, and what to do.
template <class T>
void expect_refused(const Result<T>& r, const std::string& device, State state) {
  ASSERT_FALSE(r) << "not refused";
  EXPECT_EQ(r.error().code, EBUSY) << r.error().describe();
  EXPECT_THAT(r.error().message, HasSubstr(device));
  EXPECT_THAT(r.error().message, HasSubstr(fmt::format("is in {}", uapi::state_name(state))));
  EXPECT_THAT(r.error().message, HasSubstr("--reset-first"));
}

// The reset is said once, naming the device and the state it was in.
void expect_reset_notice(const std::vector<std::string>& notices, const std::string& device,
                         State state) {
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_THAT(notices[0], HasSubstr(device));
  EXPECT_THAT(notices[0], HasSubstr(fmt::format("was in {}", uapi::state_name(state))));
}

MemoryChannel stream_of(testing::SimHandle& src) {
  MemoryChannel stream;
  Session s;
  s.add_device(*src.device, src.device->name());
  EXPECT_TRUE(s.save(stream));
  stream.rewind();
  return stream;
}

// --- the reported hang ------------------------------------------------------------------------

// Below the Session, Migration trusts its cache (RUNNING, as the reference assumes), so a device
// left in STOP_COPY is sent SET PRE_COPY at save setup: the arc that hung the guest. The
// Session's state check and KernelDevice's guard (below) are what keep it from a kernel.
TEST(StaleDeviceBug, MigrationAloneSendsPreCopyToAStopCopyDevice) {
  auto dev = stale(State::kStopCopy, 1);
  MigrationOptions mo;
  mo.precopy = true;
  auto m = Migration::create(*dev.device, mo);
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ((*m)->device_state(), State::kRunning);
  MemoryChannel out;
  StreamWriter writer(out, 4096);
  std::thread setup([&] { (void)(*m)->save_setup(writer); });
  EXPECT_TRUE(testing::eventually([&] { return dev.model->hung_arcs() == 1; }));
  dev.model->release_hangs();
  setup.join();
}

TEST(StaleDeviceBug, MigrateOfAStopCopySourceIsRefusedWithoutTheArc) {
  auto src = stale(State::kStopCopy, 1);
  auto dst = fresh(2);
  Session source(options(false)), destination(options(false));
  source.add_device(*src.device, src.device->name());
  destination.add_device(*dst.device, dst.device->name());
  auto r = migrate_locally(source, destination);
  expect_refused(r, name_of(1), State::kStopCopy);
  EXPECT_EQ(src.model->hung_arcs(), 0u);
  EXPECT_EQ(src.model->state(), State::kStopCopy);
}

// --- every starting state × save, load, migrate --------------------------------------------

class StaleDevice : public ::testing::TestWithParam<State> {};

TEST_P(StaleDevice, SaveRefusesItUntouched) {
  auto dev = stale(GetParam(), 1);
  MemoryChannel out;
  Session s(options(false));
  s.add_device(*dev.device, dev.device->name());
  expect_refused(s.save(out), name_of(1), GetParam());
  EXPECT_TRUE(out.data().empty());
  EXPECT_EQ(dev.model->state(), GetParam());
  EXPECT_EQ(dev.model->hung_arcs(), 0u);
}

TEST_P(StaleDevice, SaveWithResetFirstSavesAStreamThatLoads) {
  auto src = stale(GetParam(), 1);
  auto dst = fresh(2);
  std::vector<std::string> notices;
  MemoryChannel stream;
  Session s(options(true, &notices));
  s.add_device(*src.device, src.device->name());
  auto saved = s.save(stream);
  ASSERT_TRUE(saved) << saved.error().describe();
  expect_reset_notice(notices, name_of(1), GetParam());
  EXPECT_EQ(src.model->state(), State::kStop);
  EXPECT_EQ(s.migration(0)->device_state(), src.model->state());

  Session load;
  load.add_device(*dst.device, dst.device->name());
  stream.rewind();
  auto loaded = load.load(stream);
  ASSERT_TRUE(loaded) << loaded.error().describe();
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(src.model->hung_arcs(), 0u);
}

TEST_P(StaleDevice, LoadRefusesItUntouched) {
  auto src = fresh(1);
  auto dst = stale(GetParam(), 2);
  const auto image = dst.model->image();
  auto stream = stream_of(src);
  Session s(options(false));
  s.add_device(*dst.device, dst.device->name());
  expect_refused(s.load(stream), name_of(2), GetParam());
  std::vector<std::byte> unread(stream.data().size() + 1);
  EXPECT_EQ(stream.read(unread).value_or(0), stream.data().size()) << "the stream was read";
  EXPECT_EQ(dst.model->state(), GetParam());
  EXPECT_EQ(dst.model->image(), image);
  EXPECT_EQ(dst.model->hung_arcs(), 0u);
}

TEST_P(StaleDevice, LoadWithResetFirstLoads) {
  auto src = fresh(1);
  auto dst = stale(GetParam(), 2);
  auto stream = stream_of(src);
  std::vector<std::string> notices;
  Session s(options(true, &notices));
  s.add_device(*dst.device, dst.device->name());
  auto loaded = s.load(stream);
  ASSERT_TRUE(loaded) << loaded.error().describe();
  expect_reset_notice(notices, name_of(2), GetParam());
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(dst.model->state(), State::kRunning);
  EXPECT_EQ(s.migration(0)->device_state(), State::kRunning);
  EXPECT_EQ(dst.model->hung_arcs(), 0u);
}

// Refused on either side, the migration touches neither: the other side sees no SET at all.
TEST_P(StaleDevice, MigrateRefusesAStaleSideBeforeEitherSideActs) {
  for (const bool source_stale : {true, false}) {
    SCOPED_TRACE(source_stale ? "stale source" : "stale destination");
    auto src = source_stale ? stale(GetParam(), 1) : fresh(1);
    auto dst = source_stale ? fresh(2) : stale(GetParam(), 2);
    testing::FaultyDevice watched_src(*src.device),
        watched_dst(*dst.device, "", faults::Side::kDestination);
    Session source(options(false)), destination(options(false));
    source.add_device(watched_src.device, src.device->name());
    destination.add_device(watched_dst.device, dst.device->name());
    auto r = migrate_locally(source, destination);
    expect_refused(r, name_of(source_stale ? 1 : 2), GetParam());
    EXPECT_THAT(r.error().message, StartsWith(source_stale ? "source: " : "destination: "));
    for (const auto* watched : {&watched_src, &watched_dst})
      EXPECT_THAT(watched->requested_states(), IsEmpty());
    EXPECT_EQ((source_stale ? src : dst).model->state(), GetParam());
    EXPECT_EQ((source_stale ? dst : src).model->state(), State::kRunning);
    EXPECT_EQ(src.model->hung_arcs() + dst.model->hung_arcs(), 0u);
  }
}

TEST_P(StaleDevice, MigrateWithResetFirstRecoversBothSides) {
  auto src = stale(GetParam(), 1);
  auto dst = stale(GetParam(), 2);
  std::vector<std::string> notices;
  Session source(options(true, &notices)), destination(options(true, &notices));
  source.add_device(*src.device, src.device->name());
  destination.add_device(*dst.device, dst.device->name());
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_THAT(notices[0], HasSubstr(name_of(1)));
  EXPECT_THAT(notices[1], HasSubstr(name_of(2)));
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(dst.model->state(), State::kRunning);
  EXPECT_EQ(src.model->hung_arcs() + dst.model->hung_arcs(), 0u);
}

INSTANTIATE_TEST_SUITE_P(EveryState, StaleDevice, ::testing::ValuesIn(kStaleStates),
                         [](const auto& info) {
                           return std::string(uapi::state_name(info.param));
                         });

// RUNNING_P2P is not fresh either, and a fresh RUNNING device is not reset by reset_first.
TEST(StaleDevice, ResetFirstLeavesARunningDeviceAlone) {
  auto dev = fresh(1);
  testing::FaultyDevice watched(*dev.device);
  std::vector<std::string> notices;
  Session s(options(true, &notices));
  s.add_device(watched.device, dev.device->name());
  ASSERT_TRUE(s.learn_device_states());
  EXPECT_EQ(watched.count(faults::Op::kReset), 0u);
  EXPECT_TRUE(notices.empty());
}

// A reset that does not bring the device back stops everything: nothing is sent after it.
TEST(StaleDevice, AFailedResetIsFatalAndNothingFollows) {
  auto dev = stale(State::kStopCopy, 1);
  testing::FaultyDevice watched(*dev.device, "reset -> errno=EIO");
  MemoryChannel out;
  Session s(options(true));
  s.add_device(watched.device, dev.device->name());
  auto r = s.save(out);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().fatal);
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_DEVICE_RESET"));
  EXPECT_TRUE(out.data().empty());
  EXPECT_EQ(watched.count(faults::Op::kReset), 1u);
  EXPECT_THAT(watched.requested_states(), IsEmpty());
}

// --- the kernel path: KernelDevice over the FUSE-served simulator ------------------------

class FuseStaleDevice : public ::testing::Test {
 protected:
  struct Handle {
    std::shared_ptr<sim::SimDevice> model;
    std::unique_ptr<KernelDevice> device;
  };

  void SetUp() override { mount_.start(); }

  // A device served on the mount, left in `state` by an earlier user (unless RUNNING).
  Handle serve(State state, std::uint64_t seed) {
    auto served = mount_.serve_stale(state, seed, name_of(seed));
    auto dev = sim::SimMount::open_device(served.path, name_of(seed) + " (fuse)");
    EXPECT_TRUE(dev) << dev.error().describe();
    return {served.model, std::move(*dev)};
  }

  testing::TestMount mount_;
};

TEST_F(FuseStaleDevice, KernelDeviceRefusesTheHangingArcUnsent) {
  auto dev = serve(State::kStopCopy, 1);
  for (State target : {State::kPreCopy, State::kPreCopyP2p}) {
    auto r = request_device_state(*dev.device, target);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, kHangingArcRefused);
    EXPECT_THAT(r.error().message, HasSubstr("STOP_COPY"));
    EXPECT_THAT(r.error().message, HasSubstr("vfio_mig_get_next_state"));
  }
  EXPECT_EQ(dev.model->hung_arcs(), 0u);
  EXPECT_EQ(dev.model->state(), State::kStopCopy);
  // From anywhere else PRE_COPY is sent as asked.
  ASSERT_TRUE(request_device_state(*dev.device, State::kRunning));
  auto fd = request_device_state(*dev.device, State::kPreCopy);
  ASSERT_TRUE(fd) << fd.error().describe();
  EXPECT_TRUE(dev.device->close(*fd));
  EXPECT_EQ(dev.model->state(), State::kPreCopy);
}

// The one bypass (conform --unsafe-arcs) really sends it: the guard is what stops it otherwise.
TEST_F(FuseStaleDevice, AllowingHangingArcsSendsThem) {
  auto dev = serve(State::kStopCopy, 1);
  dev.device->allow_hanging_arcs(true);
  std::atomic<int> code = -1;
  std::thread caller([&] {
    auto r = request_device_state(*dev.device, State::kPreCopy);
    code = r ? 0 : r.error().code;
  });
  EXPECT_TRUE(testing::eventually([&] { return dev.model->hung_arcs() == 1; }));
  dev.model->release_hangs();
  caller.join();
  EXPECT_EQ(code, EINVAL);
}

// An engine that trusts a wrong cache is still stopped at the kernel seam, and recovers.
TEST_F(FuseStaleDevice, GuardStopsAnEngineThatTrustsItsCache) {
  auto dev = serve(State::kStopCopy, 1);
  MigrationOptions mo;
  mo.precopy = true;
  auto m = Migration::create(*dev.device, mo);
  ASSERT_TRUE(m) << m.error().describe();
  MemoryChannel out;
  StreamWriter writer(out, 4096);
  auto r = (*m)->save_setup(writer);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kHangingArcRefused);
  EXPECT_EQ(dev.model->hung_arcs(), 0u);
  EXPECT_EQ(dev.model->state(), State::kRunning);  // the recover state, through safe arcs
  EXPECT_EQ((*m)->device_state(), State::kRunning);
}

TEST_F(FuseStaleDevice, MigrateRefusesOrRecoversOverTheKernelPath) {
  std::uint64_t seed = 1;
  for (State state : {State::kStopCopy, State::kResuming, State::kPreCopyP2p, State::kError}) {
    SCOPED_TRACE(uapi::state_name(state));
    for (const bool reset_first : {false, true}) {
      auto src = serve(state, seed++);
      auto dst = serve(state, seed++);
      std::vector<std::string> notices;
      Session source(options(reset_first, &notices)), destination(options(reset_first, &notices));
      source.add_device(*src.device, src.device->name());
      destination.add_device(*dst.device, dst.device->name());
      auto r = migrate_locally(source, destination);
      if (!reset_first) {
        expect_refused(r, src.device->name(), state);
        EXPECT_EQ(src.model->state(), state);
        EXPECT_EQ(dst.model->state(), state);
      } else {
        ASSERT_TRUE(r) << r.error().describe();
        EXPECT_EQ(notices.size(), 2u);
        EXPECT_EQ(dst.model->image(), src.model->image());
        EXPECT_EQ(dst.model->state(), State::kRunning);
      }
      EXPECT_EQ(src.model->hung_arcs() + dst.model->hung_arcs(), 0u);
    }
  }
}

}  // namespace
}  // namespace vfio
