// The per-device engine against the simulated device, with injected failures (faults/) for the
// reference's error paths.
#include "core/migration.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "core/feature.h"
#include "tests/core/faulty_device.h"
#include "tests/core/sim_pair.h"

namespace vfio {
namespace {

using faults::Op;
using testing::FaultyDevice;
using uapi::State;

State device_state(Device& dev) {
  return query_device_state(dev).value();
}

TEST(Migration, CreateRequiresStopCopyAndReportsMissingSupport) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "get:migration -> errno=ENOTTY");
  auto m = Migration::create(faulty.device);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ENOTTY);
  EXPECT_NE(m.error().message.find("not supported"), std::string::npos);
  EXPECT_TRUE(Migration::create(*sim.device));
}

TEST(Migration, SetStateRecoversToTheRecoverState) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "set:SC times=1 -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  ASSERT_TRUE(m->set_state(State::kStop, State::kError));
  auto r = m->set_state(State::kStopCopy, State::kStop);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("put back in STOP"), std::string::npos);
  EXPECT_EQ(m->device_state(), State::kStop);
  EXPECT_EQ(device_state(faulty.device), State::kStop);
  EXPECT_EQ(faulty.count(Op::kReset), 0u);
}

TEST(Migration, FailedRecoveryResetsTheDevice) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  // The first SET STOP works; STOP_COPY fails, and so does the SET back to STOP.
  FaultyDevice faulty(*sim.device, "set:SC times=1 -> errno=EIO; set:S nth=2 -> errno=EBUSY");
  auto m = Migration::create(faulty.device).value();
  ASSERT_TRUE(m->set_state(State::kStop, State::kError));
  auto r = m->set_state(State::kStopCopy, State::kStop);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_FALSE(r.error().fatal);
  EXPECT_EQ(faulty.count(Op::kReset), 1u);
  EXPECT_EQ(m->device_state(), State::kRunning);
  EXPECT_EQ(device_state(faulty.device), State::kRunning);
  EXPECT_EQ(faulty.requested_states(),
            (std::vector<State>{State::kStop, State::kStopCopy, State::kStop}));
}

TEST(Migration, ErrorRecoverStateGoesStraightToReset) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "set:S times=1 -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  ASSERT_FALSE(m->set_state(State::kStop, State::kError));
  EXPECT_EQ(faulty.count(Op::kReset), 1u);
  EXPECT_EQ(device_state(faulty.device), State::kRunning);
}

TEST(Migration, FailedResetIsAFatalErrorNotAnAbort) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "set:S times=1 -> errno=EIO; reset -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  auto r = m->set_state(State::kStop, State::kError);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().fatal);
  EXPECT_TRUE(m->broken());
  EXPECT_NE(r.error().message.find("reset failed"), std::string::npos);
}

TEST(Migration, NewDataFdWhileOneIsOpenIsOutOfSync) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device);
  auto m = Migration::create(faulty.device).value();
  ASSERT_TRUE(m->set_state(State::kStop, State::kError));
  ASSERT_TRUE(m->set_state(State::kStopCopy, State::kStop));
  int first_fd = m->data_fd();
  ASSERT_NE(first_fd, -1);
  ASSERT_TRUE(sim.model->reset());  // behind the engine's back
  auto r = m->set_state(State::kStopCopy, State::kStop);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBADF);
  EXPECT_NE(r.error().message.find("out of sync"), std::string::npos);
  EXPECT_EQ(m->data_fd(), first_fd);
  EXPECT_EQ(faulty.count(Op::kClose), 1u);  // the unexpected new fd
}

TEST(Migration, SaveSetupSizesTheBufferLikeTheReference) {
  struct Case {
    const char* profile;
    std::uint64_t size;
    std::size_t option;
    std::size_t expected;
  };
  for (auto c : {Case{"p2p", 64 << 20, 0, 1 << 20}, Case{"p2p", 100000, 0, 0},
                 Case{"mtty", 72, 0, 4096}, Case{"p2p", 64 << 20, 65536, 65536}}) {
    auto sim = testing::make_sim(c.profile, c.size, 1);
    MigrationOptions o;
    o.data_buffer_size = c.option;
    auto m = Migration::create(*sim.device, o).value();
    MemoryChannel channel;
    StreamWriter out(channel);
    ASSERT_TRUE(m->save_setup(out));
    auto expected = c.expected ? c.expected : sim.model->stream_size();
    EXPECT_EQ(m->data_buffer_size(), expected) << c.profile << " " << c.size;
    ASSERT_TRUE(out.flush());
    StreamReader in(channel);
    EXPECT_EQ(in.get_be64(), tag::kSetupState);
    EXPECT_EQ(in.get_be64(), tag::kEndOfState);
  }
}

TEST(Migration, PendingExactFallsBackTo100GiB) {
  auto sim = testing::make_sim("p2p", 12345, 1);
  // The second MIG_DATA_SIZE query meets a kernel without the feature.
  FaultyDevice faulty(*sim.device, "get:data-size nth=2 -> errno=ENOTTY");
  auto m = Migration::create(faulty.device).value();
  EXPECT_EQ(m->pending_exact(), sim.model->stream_size());
  EXPECT_EQ(m->pending_exact(), 100ULL << 30);
}

TEST(Migration, CompletePrecopyWritesBlocksThenEndAndStops) {
  auto sim = testing::make_sim("p2p", 3 << 20, 1);
  std::vector<std::uint64_t> blocks;
  MigrationOptions o;
  o.on_block = [&](std::uint64_t n) {
    blocks.push_back(n);
    return true;
  };
  auto m = Migration::create(*sim.device, o).value();
  MemoryChannel channel;
  StreamWriter out(channel);
  ASSERT_TRUE(m->save_setup(out));
  ASSERT_TRUE(m->vm_state_change(false));
  ASSERT_TRUE(m->save_complete_precopy(out));
  EXPECT_EQ(m->device_state(), State::kStop);
  EXPECT_EQ(device_state(*sim.device), State::kStop);
  std::uint64_t total = 0;
  for (auto b : blocks) {
    EXPECT_LE(b, 1u << 20);
    total += b;
  }
  EXPECT_EQ(total, sim.model->stream_size());
  EXPECT_EQ(m->bytes_transferred(), total);
  m->save_cleanup();
  EXPECT_EQ(m->data_fd(), -1);
}

TEST(Migration, ReadErrorDuringStopCopyIsReturned) {
  auto sim = testing::make_sim("p2p", 3 << 20, 1);
  FaultyDevice faulty(*sim.device, "read nth=2 -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  MemoryChannel channel;
  StreamWriter out(channel);
  ASSERT_TRUE(m->save_setup(out));
  ASSERT_TRUE(m->vm_state_change(false));
  auto r = m->save_complete_precopy(out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_EQ(m->device_state(), State::kStopCopy);
}

TEST(Migration, LoadSetupRecoversToTheCurrentState) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "set:RS times=1 -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  ASSERT_TRUE(m->set_state(State::kStop, State::kError));
  ASSERT_FALSE(m->load_setup());
  EXPECT_EQ(m->device_state(), State::kStop);
  EXPECT_EQ(device_state(faulty.device), State::kStop);
}

// Builds a device section payload by hand.
MemoryChannel section(std::initializer_list<std::uint64_t> words) {
  MemoryChannel channel;
  StreamWriter out(channel);
  for (auto w : words) out.put_be64(w);
  (void)out.flush();
  return channel;
}

TEST(Migration, LoadStateHoldsEachSectionTypeToItsPayload) {
  using container::SectionType;
  auto sim = testing::make_sim("p2p", 4096, 1);
  auto m = Migration::create(*sim.device).value();
  ASSERT_TRUE(m->load_setup());
  auto load = [&](SectionType type, std::initializer_list<std::uint64_t> words) {
    auto channel = section(words);
    StreamReader in(channel);
    return m->load_state(in, type);
  };
  auto refused = [&](SectionType type, std::initializer_list<std::uint64_t> words,
                     std::string_view why) {
    auto r = load(type, words);
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code, why.find("truncated") != std::string_view::npos ? EIO : EINVAL);
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
  };

  EXPECT_TRUE(load(SectionType::kSetup, {tag::kSetupState, tag::kEndOfState}));
  EXPECT_TRUE(load(SectionType::kComplete, {tag::kEndOfState}));
  // An empty config blob (a --no-config save) into a destination that restores config space.
  refused(SectionType::kConfig, {tag::kConfigState, 0, tag::kEndOfState}, "saved with --no-config");

  refused(SectionType::kComplete, {0xdeadbeef}, "unknown tag 0xdeadbeef at stream offset 0");
  refused(SectionType::kSetup, {tag::kSetupState, tag::kDataState},
          "DEV_DATA_STATE at stream offset 8, where the setup section holds");
  refused(SectionType::kSetup, {tag::kDataState, 1, 0, tag::kSetupState, tag::kEndOfState},
          "DEV_DATA_STATE at stream offset 0, where the setup section holds");
  refused(SectionType::kConfig, {tag::kEndOfState}, "END_OF_STATE at stream offset 0");
  refused(SectionType::kConfig, {tag::kConfigState, 1ULL << 40},
          "config space of 1099511627776 bytes at stream offset 0 exceeds");
  refused(SectionType::kComplete, {tag::kDataState, 0, tag::kEndOfState},
          "empty DEV_DATA_STATE chunk at stream offset 0");
  refused(SectionType::kComplete, {tag::kSetupState, tag::kEndOfState},
          "DEV_SETUP_STATE at stream offset 0, where the complete section holds");
  refused(SectionType::kComplete, {tag::kInitDataSent}, "DEV_INIT_DATA_SENT at stream offset 0");
  refused(SectionType::kIterate, {tag::kDataState, 8, 0, tag::kDataState, 8, 0, tag::kEndOfState},
          "DEV_DATA_STATE at stream offset 24, where the iterate section holds at most one");
  refused(SectionType::kIterate, {tag::kInitDataSent}, "switchover-ack is not in use");
  // A data chunk claiming far more than the stream holds: no allocation, a clean error.
  refused(SectionType::kComplete, {tag::kDataState, 1ULL << 62, 1, 2},
          "DEV_DATA_STATE chunk of 4611686018427387904 bytes at stream offset 0: memory: stream "
          "truncated");
}

TEST(Migration, ConfigReachesTheDeviceOnlyOnCommitAndOnlyIfItFits) {
  using container::SectionType;
  auto sim = testing::make_sim("p2p", 4096, 1);
  auto m = Migration::create(*sim.device).value();
  const auto before = sim.model->config();
  ASSERT_TRUE(m->load_setup());
  {
    MemoryChannel channel;
    StreamWriter out(channel);
    out.put_be64(tag::kConfigState);
    out.put_be64(before.size());
    out.put_buffer(std::vector<std::byte>(before.size(), std::byte{0x5a}));
    out.put_be64(tag::kEndOfState);
    (void)out.flush();
    StreamReader in(channel);
    ASSERT_TRUE(m->load_state(in, SectionType::kConfig));
  }
  EXPECT_EQ(sim.model->config(), before) << "written before the stream was verified";
  ASSERT_TRUE(m->commit_config());
  EXPECT_EQ(sim.model->config(), std::vector<std::byte>(before.size(), std::byte{0x5a}));

  // Larger than the region: refused with nothing written (it used to write the first part).
  (void)sim.model->config_write(0, before);
  MemoryChannel channel;
  StreamWriter out(channel);
  out.put_be64(tag::kConfigState);
  out.put_be64(kMaxConfigBlob);
  out.put_buffer(std::vector<std::byte>(kMaxConfigBlob, std::byte{0x77}));
  out.put_be64(tag::kEndOfState);
  (void)out.flush();
  StreamReader in(channel);
  ASSERT_TRUE(m->load_state(in, SectionType::kConfig));
  auto r = m->commit_config();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("larger than the device's config region: nothing written"),
            std::string::npos);
  EXPECT_EQ(sim.model->config(), before);
}

TEST(Migration, StatusNotifierReturnsTheDeviceToRunning) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  auto m = Migration::create(*sim.device).value();
  ASSERT_TRUE(m->vm_state_change(false));
  EXPECT_EQ(device_state(*sim.device), State::kStop);
  ASSERT_TRUE(m->on_status(MigrationStatus::kActive));
  EXPECT_EQ(device_state(*sim.device), State::kStop);
  ASSERT_TRUE(m->on_status(MigrationStatus::kCancelled));
  EXPECT_EQ(device_state(*sim.device), State::kRunning);
  EXPECT_EQ(m->bytes_transferred(), 0u);
}

TEST(Migration, RunStateErrorsReachTheOutgoingStream) {
  auto sim = testing::make_sim("p2p", 4096, 1);
  FaultyDevice faulty(*sim.device, "set:S times=1 -> errno=EIO");
  auto m = Migration::create(faulty.device).value();
  MemoryChannel channel;
  StreamWriter out(channel);
  EXPECT_FALSE(m->vm_state_change(false, &out));
  ASSERT_TRUE(out.error());
  EXPECT_EQ(out.error()->code, EIO);
}

}  // namespace
}  // namespace vfio
