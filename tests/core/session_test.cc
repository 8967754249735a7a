// Whole migrations: save -> stream -> load, bit-exact, and the failure paths of both sides.
#include "core/session.h"

#include <sched.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <set>

#include <fmt/format.h>

#include "core/container.h"
#include "core/cpu_pin.h"
#include "core/feature.h"
#include "core/local_migration.h"
#include "tests/core/faulty_device.h"
#include "tests/core/sim_pair.h"
#include "tests/forwarding_device.h"

namespace vfio {
namespace {

using testing::FaultyDevice;
using uapi::State;

State device_state(Device& dev) {
  return query_device_state(dev).value();
}

Result<Report> save_one(Device& dev, MemoryChannel& out, SessionOptions o = {}) {
  Session s(o);
  s.add_device(dev, dev.name());
  return s.save(out);
}

Result<Report> load_one(Device& dev, MemoryChannel& in) {
  Session s;
  s.add_device(dev, dev.name());
  return s.load(in);
}

class RoundTrip : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(RoundTrip, DestinationEndsBitIdentical) {
  std::uint64_t size = GetParam();
  auto src = testing::make_sim("p2p", size, 11);
  auto dst = testing::make_sim("p2p", 4096, 22);
  ASSERT_NE(src.model->image(), dst.model->image());
  ASSERT_TRUE(src.device->config_write(0x40, std::as_bytes(std::span("tag"))));
  MemoryChannel stream;
  auto saved = save_one(*src.device, stream);
  ASSERT_TRUE(saved) << saved.error().describe();
  EXPECT_EQ(saved->device_bytes, src.model->stream_size());
  EXPECT_EQ(saved->stream_bytes, stream.data().size());
  EXPECT_EQ(device_state(*src.device), State::kStop);

  auto loaded = load_one(*dst.device, stream);
  ASSERT_TRUE(loaded) << loaded.error().describe();
  EXPECT_EQ(loaded->device_bytes, saved->device_bytes);
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(dst.model->config(), src.model->config());
  EXPECT_EQ(device_state(*dst.device), State::kRunning);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RoundTrip,
                         ::testing::Values(0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 64 << 20));

TEST(Session, EveryProfileMigratesThroughAPipe) {
  for (auto& profile : sim::all_profiles()) {
    auto size = profile.name == "mtty" ? std::nullopt : std::optional<std::uint64_t>(5 << 20);
    auto src = testing::make_sim(profile.name, size, 3);
    auto dst = testing::make_sim(profile.name, size, 4);
    Session source, destination;
    source.add_device(*src.device, "src");
    destination.add_device(*dst.device, "dst");
    auto r = migrate_locally(source, destination);
    ASSERT_TRUE(r) << profile.name << ": " << r.error().describe();
    EXPECT_EQ(dst.model->image(), src.model->image()) << profile.name;
  }
}

// Records the CPU each data-fd read and write ran on.
class CpuRecordingDevice final : public testing::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;
  std::set<int> cpus;

  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    cpus.insert(::sched_getcpu());
    return ForwardingDevice::read(fd, buf);
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    cpus.insert(::sched_getcpu());
    return ForwardingDevice::write(fd, buf);
  }
};

TEST(LocalMigration, EachSideRunsOnTheCpuItWasPlacedOn) {
  const auto cpus = allowed_cpus(2);
  if (cpus.empty()) GTEST_SKIP() << "this process may use only one CPU";
  auto src = testing::make_sim("plain", 8 << 20, 1);
  auto dst = testing::make_sim("plain", 8 << 20, 2);
  CpuRecordingDevice source_device(std::move(src.device)),
      destination_device(std::move(dst.device));
  SessionOptions o;
  o.migration.data_buffer_size = 64 << 10;  // 128 reads and writes: many chances to stray
  Session source(o), destination(o);
  source.add_device(source_device, "src");
  destination.add_device(destination_device, "dst");
  cpu_set_t before, after;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(before), &before), 0);
  // The reverse of the order the CPUs are listed in, so that no default order passes by luck.
  auto r = migrate_locally(source, destination, ThreadPlacement{cpus[1], cpus[0]});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(source_device.cpus, std::set<int>{cpus[1]});
  EXPECT_EQ(destination_device.cpus, std::set<int>{cpus[0]});
  // The caller, which ran the source, may use its CPUs again.
  ASSERT_EQ(::sched_getaffinity(0, sizeof(after), &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
}

TEST(Session, ProgressReportsEveryPhaseAndGrowingBytes) {
  auto src = testing::make_sim("p2p", 4 << 20, 1);
  std::vector<Progress> seen;
  SessionOptions o;
  o.on_progress = [&](const Progress& p) { seen.push_back(p); };
  MemoryChannel stream;
  auto r = save_one(*src.device, stream, o);
  ASSERT_TRUE(r);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().device_bytes, src.model->stream_size());
  EXPECT_EQ(seen.back().estimate, src.model->stream_size());
  std::set<Phase> phases;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    phases.insert(seen[i].phase);
    if (i > 0) {
      EXPECT_GE(seen[i].device_bytes, seen[i - 1].device_bytes);
    }
  }
  EXPECT_TRUE(phases.contains(Phase::kSetup) && phases.contains(Phase::kStopCopy) &&
              phases.contains(Phase::kConfig));
  std::vector<Phase> timed;
  for (auto& p : r->phases) timed.push_back(p.phase);
  EXPECT_EQ(timed, (std::vector<Phase>{Phase::kSetup, Phase::kStopVm, Phase::kStopCopy,
                                       Phase::kConfig, Phase::kCleanup}));
}

// Source failures at each step leave the source RUNNING with its state intact.
TEST(Session, SourceIsRunningAfterEveryFailedSave) {
  struct Case {
    const char* name;
    const char* plan;
  };
  const std::vector<Case> cases = {
      {"stop fails", "set:S times=1 -> errno=EIO"},
      {"stop-copy fails", "set:SC times=1 -> errno=EIO"},
      {"stop-copy and recovery fail", "set:SC times=1 -> errno=EIO; set:S times=2 -> errno=EIO"},
      {"read fails", "read -> errno=EIO"},
      {"config read fails", "config-read -> errno=EIO"},
  };
  for (auto& c : cases) {
    auto src = testing::make_sim("p2p", 2 << 20, 5);
    auto before = src.model->image();
    FaultyDevice faulty(*src.device, c.plan);
    MemoryChannel stream;
    auto r = save_one(faulty.device, stream);
    ASSERT_FALSE(r) << c.name;
    EXPECT_FALSE(faulty.injector.fired().empty()) << c.name;
    EXPECT_EQ(device_state(*src.device), State::kRunning) << c.name;
    EXPECT_EQ(src.model->image(), before) << c.name;
  }
}

TEST(Session, StreamWriteFailureStopsTheSaveAndTheSourceRuns) {
  auto src = testing::make_sim("p2p", 2 << 20, 5);
  auto [read_end, write_end] = make_pipe_channel().value();
  read_end.close();               // nobody listens: EPIPE
  std::signal(SIGPIPE, SIG_IGN);  // as vfio-mig does; the error must arrive as a value
  Session s;
  s.add_device(*src.device, "src");
  auto r = s.save(write_end);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPIPE);
  EXPECT_EQ(device_state(*src.device), State::kRunning);
}

TEST(Session, CancelStopsAtTheNextBlock) {
  auto src = testing::make_sim("p2p", 8 << 20, 5);
  SessionOptions o;
  Session* self = nullptr;
  o.on_progress = [&](const Progress& p) {
    if (p.device_bytes > 0) self->cancel();
  };
  Session s(o);
  self = &s;
  s.add_device(*src.device, "src");
  MemoryChannel stream;
  auto r = s.save(stream);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
  EXPECT_EQ(device_state(*src.device), State::kRunning);
}

TEST(Session, ACancelBeforeTheStartIsNotLost) {
  // A signal can arrive between creating the session and starting the save.
  auto src = testing::make_sim("mlx5", 1 << 20, 5);
  Session s;
  s.add_device(*src.device, "src");
  s.cancel();
  MemoryChannel stream;
  auto r = s.save(stream);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
  EXPECT_TRUE(stream.data().empty());
  EXPECT_EQ(device_state(*src.device), State::kRunning);
  Session d;
  d.add_device(*src.device, "dst");
  d.cancel();
  auto l = d.load(stream);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ECANCELED);
  EXPECT_EQ(device_state(*src.device), State::kRunning);
}

TEST(Session, BlockersRefuseToStart) {
  // Without P2P several devices cannot be quiesced before one stops: the reference's blocker.
  auto a = testing::make_sim("stopcopy", 4096, 1);
  auto b = testing::make_sim("stopcopy", 4096, 2);
  Session disabled;
  disabled.add_device(*a.device, "a", /*enable_migration=*/false);
  MemoryChannel out;
  auto r = disabled.save(out);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("doesn't support migration"), std::string::npos);

  Session two;
  two.add_device(*a.device, "a");
  two.add_device(*b.device, "b");
  auto blockers = two.blockers();
  ASSERT_EQ(blockers.size(), 1u);
  EXPECT_NE(blockers[0].find("multiple VFIO devices"), std::string::npos);
  EXPECT_FALSE(two.save(out));
  EXPECT_TRUE(out.data().empty());
  EXPECT_EQ(device_state(*a.device), State::kRunning);

  FaultyDevice no_migration(*a.device, "get:migration -> errno=ENOTTY");
  Session unsupported;
  unsupported.add_device(no_migration.device, "x");
  EXPECT_EQ(unsupported.blockers().size(), 1u);
}

class DamagedStream : public ::testing::Test {
 protected:
  void SetUp() override {
    auto src = testing::make_sim("p2p", 256 << 10, 7);
    ASSERT_TRUE(save_one(*src.device, stream_));
  }
  // Loads `bytes` into a fresh destination; expects failure, a RUNNING destination with its
  // original state, and returns the error.
  Error load_fails(std::vector<std::byte> bytes) {
    auto dst = testing::make_sim("p2p", 4096, 9);
    auto before = dst.model->image();
    MemoryChannel in(std::move(bytes));
    auto r = load_one(*dst.device, in);
    EXPECT_FALSE(r);
    EXPECT_EQ(device_state(*dst.device), State::kRunning);
    EXPECT_EQ(dst.model->image(), before);
    return r ? Error{} : r.error();
  }
  MemoryChannel stream_;
};

TEST_F(DamagedStream, TruncationAnywhereIsRejected) {
  const auto& full = stream_.data();
  for (std::size_t cut :
       {std::size_t{0}, std::size_t{5}, std::size_t{30}, std::size_t{70}, full.size() / 3,
        full.size() / 2, full.size() - 300, full.size() - 5, full.size() - 1}) {
    auto e = load_fails({full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)});
    EXPECT_FALSE(e.message.empty()) << "cut at " << cut;
  }
}

TEST_F(DamagedStream, FlippedBytesAreRejected) {
  const auto& full = stream_.data();
  for (std::size_t at :
       {std::size_t{3}, std::size_t{40}, std::size_t{200}, full.size() / 2, full.size() - 10}) {
    auto bytes = full;
    bytes[at] ^= std::byte{0x40};
    auto e = load_fails(bytes);
    EXPECT_FALSE(e.message.empty()) << "flip at " << at;
  }
}

TEST_F(DamagedStream, UnknownTagInASectionIsRejected) {
  MemoryChannel forged;
  {
    StreamWriter out(forged);
    container::write_header(out, {{"dev"}});
    container::begin_section(out, container::SectionType::kSetup, 0);
    out.put_be64(0xffffffffef1000ffULL);
    container::end_section(out);
  }
  auto e = load_fails(forged.data());
  EXPECT_EQ(e.code, EINVAL);
  EXPECT_NE(e.message.find("unknown tag"), std::string::npos);
}

TEST_F(DamagedStream, SectionsOutOfOrderOrMissingAreRejected) {
  MemoryChannel skipped;
  {
    StreamWriter out(skipped);
    container::write_header(out, {{"dev"}});
    container::begin_section(out, container::SectionType::kEnd, container::kNoDevice);
    container::end_section(out);
  }
  auto e = load_fails(skipped.data());
  EXPECT_NE(e.message.find("the end section at stream offset 27 comes before device 0 is complete"),
            std::string::npos)
      << e.message;
}

// The config section's checksum fails: nothing of it may have reached the config space (it used
// to be written first and the checksum reported after).
TEST_F(DamagedStream, AConfigWithABadChecksumIsNeverWritten) {
  auto dst = testing::make_sim("p2p", 4096, 2);
  const auto before = dst.model->config();
  auto bytes = stream_.data();
  // The last config byte sits before its END_OF_STATE, the config CRC and the end section.
  bytes[bytes.size() - 12 - 4 - 8 - 1] ^= std::byte{0x01};
  MemoryChannel in(bytes);
  auto r = load_one(*dst.device, in);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("checksum mismatch"), std::string::npos) << r.error().message;
  EXPECT_EQ(dst.model->config(), before);
}

// The stream ends at its end section: a second stream, a byte, a second end are refused.
TEST_F(DamagedStream, BytesAfterTheEndAreRefused) {
  const auto good = stream_.data();
  auto twice = good;
  twice.insert(twice.end(), good.begin(), good.end());
  auto one_more = good;
  one_more.push_back(std::byte{0});
  for (const auto& bytes : {twice, one_more}) {
    auto e = load_fails(bytes);
    EXPECT_NE(e.message.find(
                  fmt::format("bytes follow the end section, from stream offset {}", good.size())),
              std::string::npos)
        << e.message;
  }
}

// --no-config on either side: a stream without config space is refused unless the destination
// also leaves config space alone; a destination with --no-config reads and checks the config
// section of a stream that has one, and writes nothing.
TEST(Session, NoConfigOnEitherSide) {
  SessionOptions no_config;
  no_config.migration.config_state = false;
  MemoryChannel without, with;
  auto a = testing::make_sim("p2p", 4096, 1), b = testing::make_sim("p2p", 4096, 1);
  ASSERT_TRUE(save_one(*a.device, without, no_config));
  ASSERT_TRUE(b.device->config_write(0x40, std::as_bytes(std::span("tag"))));
  ASSERT_TRUE(save_one(*b.device, with));

  auto dst = testing::make_sim("p2p", 4096, 2);
  const auto before = dst.model->config();
  auto refused = load_one(*dst.device, without);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("saved with --no-config"), std::string::npos);
  EXPECT_EQ(device_state(*dst.device), State::kRunning);

  for (MemoryChannel* stream : {&without, &with}) {
    stream->rewind();
    Session s(no_config);
    s.add_device(*dst.device, "dst");
    auto loaded = s.load(*stream);
    ASSERT_TRUE(loaded) << loaded.error().describe();
    EXPECT_EQ(dst.model->image(), a.model->image());
    EXPECT_EQ(dst.model->config(), before) << "config space touched under --no-config";
  }
}

TEST_F(DamagedStream, WrongDeviceCountIsRejected) {
  auto a = testing::make_sim("p2p", 4096, 1);
  auto b = testing::make_sim("p2p", 4096, 2);
  Session two;
  two.add_device(*a.device, "a");
  two.add_device(*b.device, "b");
  stream_.rewind();
  auto r = two.load(stream_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("carries 1 device"), std::string::npos);
}

TEST(Session, DestinationRejectionLeavesTheSourceRunning) {
  auto src = testing::make_sim("mlx5", 1 << 20, 1);
  auto dst = testing::make_sim("stopcopy", 1 << 20, 2);  // a different device: refuses the data
  Session source, destination;
  source.add_device(*src.device, "src");
  destination.add_device(*dst.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("destination"), std::string::npos);
  EXPECT_EQ(device_state(*src.device), State::kRunning);
  EXPECT_EQ(device_state(*dst.device), State::kRunning);
}

}  // namespace
}  // namespace vfio
