// Beyond stop-and-copy: pre-copy iterations, switchover-ack, P2P quiescing of several
// devices, and DMA dirty-page logging, against the simulated devices.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "core/container.h"
#include "core/dirty_tracking.h"
#include "core/feature.h"
#include "core/local_migration.h"
#include "core/session.h"
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

testing::SimHandle make(std::string_view profile, std::uint64_t size, std::uint64_t seed,
                        std::uint64_t dirty_per_read = 0) {
  sim::SimOptions o;
  o.state_size = size;
  o.seed = seed;
  o.dirty_per_read = dirty_per_read;
  auto model = std::make_shared<sim::SimDevice>(*sim::find_profile(profile), o);
  auto device =
      std::make_unique<sim::DirectDevice>(model, std::string(profile) + "#" + std::to_string(seed));
  return {model, std::move(device)};
}

SessionOptions precopy_options(std::size_t buffer = 64 << 10) {
  SessionOptions o;
  o.migration.precopy = true;
  o.migration.data_buffer_size = buffer;
  return o;
}

// Every SET MIG_DEVICE_STATE of several devices, in the order they happened.
struct SetLog {
  std::mutex mu;
  std::vector<std::pair<std::string, State>> sets;

  void watch(faults::Injector& injector, std::string who) {
    injector.set_call_hook([this, who](const faults::Call& c) {
      if (c.target) {
        std::lock_guard lock(mu);
        sets.emplace_back(who, *c.target);
      }
    });
  }
  std::vector<State> of(const std::string& who) {
    std::vector<State> out;
    for (auto& [w, s] : sets)
      if (w == who) out.push_back(s);
    return out;
  }
};

// --- pre-copy on one device -------------------------------------------------------------------

TEST(Precopy, SetupEntersPreCopyAndIterateSendsOneBlockPerCall) {
  for (auto name : {"plain", "mtty"}) {  // ENOMSG, and mtty's 0, at the temporary end
    const bool mtty = name == std::string_view("mtty");
    auto sim = make(name, mtty ? 72 : 256 << 10, 1);
    FaultyDevice faulty(*sim.device);
    MigrationOptions o;
    o.precopy = true;
    o.data_buffer_size = 64 << 10;
    auto m = Migration::create(faulty.device, o).value();
    MemoryChannel ch;
    StreamWriter out(ch);
    ASSERT_TRUE(m->save_setup(out));
    EXPECT_EQ(m->device_state(), State::kPreCopy);
    EXPECT_NE(m->data_fd(), -1);
    // mtty offers only its 24-byte header in pre-copy; the rest comes in STOP_COPY.
    const std::uint64_t total = mtty ? 24 : sim.model->stream_size();
    EXPECT_EQ(m->precopy_init_size(), total);
    EXPECT_EQ(m->state_pending_estimate(), total);

    const auto reads_before = faulty.count(Op::kRead);
    std::uint64_t sent = 0, calls = 0;
    for (;;) {
      auto n = m->save_iterate(out);
      ASSERT_TRUE(n) << n.error().describe();
      ++calls;
      EXPECT_EQ(faulty.count(Op::kRead), reads_before + calls);  // one block per call
      if (*n == 0) break;
      sent += *n;
    }
    EXPECT_EQ(sent, total) << name;
    EXPECT_EQ(calls, (total + (64 << 10) - 1) / (64 << 10) + 1);
    EXPECT_EQ(m->state_pending_estimate(), 0u);
    // A temporary end is no error: the next call finds no data again.
    EXPECT_EQ(m->save_iterate(out).value(), 0u);
    // The exact pending size is MIG_DATA_SIZE alone: no PRECOPY_INFO.
    const auto infos = faulty.count(Op::kPrecopyInfo);
    (void)m->pending_exact();
    EXPECT_EQ(faulty.count(Op::kPrecopyInfo), infos);

    // Stopping the VM for the migration goes from PRE_COPY straight to STOP_COPY.
    ASSERT_TRUE(m->vm_state_change(false, &out, /*migrating=*/true));
    EXPECT_EQ(m->device_state(), State::kStopCopy);
    ASSERT_TRUE(m->save_complete_precopy(out));
    EXPECT_EQ(m->device_state(), State::kStop);
    m->save_cleanup();
    ASSERT_TRUE(m->vm_state_change(true));
  }
}

TEST(Precopy, SessionConvergesOnDirtyDataAndTheDestinationIsExact) {
  // 1 MiB in 64 KiB blocks, 16 KiB written per read: the dirty data shrinks to what one read
  // writes, never to 0. At an assumed 16 MiB/s, 2 ms of downtime hold 33.5 KB: that converges.
  auto src = make("plain", 1 << 20, 1, 16 << 10);
  auto dst = make("plain", 4096, 2);
  SessionOptions o = precopy_options();
  o.downtime_limit = std::chrono::milliseconds(2);
  o.switchover_bandwidth = 16 << 20;
  o.max_iterations = 1000;
  std::vector<Progress> seen;
  o.on_progress = [&](const Progress& p) {
    if (p.phase == Phase::kPrecopy) seen.push_back(p);
  };
  Session source(o), destination(precopy_options());
  source.add_device(*src.device, "src");
  destination.add_device(*dst.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_GT(src.model->image().written, 0u);
  EXPECT_EQ(dst.model->image(), src.model->image());
  EXPECT_EQ(device_state(*dst.device), State::kRunning);
  const Report& rep = r->source;
  EXPECT_GT(rep.precopy_iterations, 16u);
  EXPECT_LT(rep.precopy_iterations, 1000u);
  EXPECT_LE(rep.final_pending, 33554u);
  EXPECT_GT(rep.final_pending, 0u);
  EXPECT_GE(rep.precopy_bytes, 1u << 20);
  EXPECT_LE(rep.stop_copy_bytes, rep.final_pending + (16 << 10));  // what the last reads dirtied
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().pending, rep.final_pending);
  EXPECT_EQ(seen.back().iteration, rep.precopy_iterations);
}

TEST(Precopy, IterationCapEndsANonConvergingPrecopy) {
  // More written per read than a block carries: pre-copy cannot converge.
  auto src = make("plain", 256 << 10, 1, 128 << 10);
  auto dst = make("plain", 4096, 2);
  SessionOptions o = precopy_options();
  o.downtime_limit = std::chrono::milliseconds(0);
  o.max_iterations = 10;
  Session source(o), destination(precopy_options());
  source.add_device(*src.device, "src");
  destination.add_device(*dst.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->source.precopy_iterations, 10u);
  EXPECT_GT(r->source.final_pending, 0u);
  EXPECT_GT(r->source.stop_copy_bytes, 0u);
  EXPECT_EQ(dst.model->image(), src.model->image());
}

TEST(Precopy, AGenerousBudgetStopsAfterTheFirstMeasurement) {
  auto src = make("mlx5", 1 << 20, 1);
  auto dst = make("mlx5", 4096, 2);
  SessionOptions o = precopy_options();
  o.downtime_limit = std::chrono::hours(1);
  Session source(o), destination(precopy_options());
  source.add_device(*src.device, "src");
  destination.add_device(*dst.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->source.precopy_iterations, 1u);
  EXPECT_EQ(dst.model->image(), src.model->image());
}

TEST(Precopy, DeviceStatesOnTheWay) {
  auto sim = make("plain", 64 << 10, 1);
  FaultyDevice faulty(*sim.device);
  Session s(precopy_options());
  s.add_device(faulty.device, "src");
  MemoryChannel out;
  ASSERT_TRUE(s.save(out));
  // Setup to PRE_COPY, prepare to PRE_COPY_P2P (the device has P2P), stop to STOP_COPY, the
  // reference's STOP_COPY request at complete (a no-op), STOP after the data.
  EXPECT_EQ(faulty.requested_states(),
            (std::vector<State>{State::kPreCopy, State::kPreCopyP2p, State::kStopCopy,
                                State::kStopCopy, State::kStop}));
}

TEST(Precopy, FailureDuringPrecopyReturnsTheDeviceToRunning) {
  auto sim = make("mlx5", 1 << 20, 1);
  FaultyDevice faulty(*sim.device, "read nth=3 -> errno=EIO");
  Session s(precopy_options());
  s.add_device(faulty.device, "src");
  MemoryChannel out;
  auto r = s.save(out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_EQ(device_state(faulty.device), State::kRunning);
  EXPECT_EQ(sim.model->open_sessions(), 0u);
}

TEST(Precopy, StreamCarriesIterateSectionsBetweenSetupAndComplete) {
  auto src = make("plain", 128 << 10, 1);
  MemoryChannel stream;
  SessionOptions o = precopy_options();
  o.downtime_limit = std::chrono::milliseconds(0);
  Session s(o);
  s.add_device(*src.device, "src");
  auto saved = s.save(stream);
  ASSERT_TRUE(saved);
  EXPECT_GT(saved->precopy_iterations, 0u);
  // The header, then device 0's setup section: its first section is not an iterate one.
  {
    MemoryChannel copy(stream.data());
    StreamReader in(copy);
    ASSERT_TRUE(container::read_header(in));
    auto first = container::read_section_start(in, 1);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->type, container::SectionType::kSetup);
  }
  auto dst = make("plain", 4096, 2);
  Session d(precopy_options());
  d.add_device(*dst.device, "dst");
  ASSERT_TRUE(d.load(stream));
  EXPECT_EQ(dst.model->image(), src.model->image());
  // Without pre-copy on the loading side the iterate sections are still accepted: the
  // payload carries no INIT_DATA_SENT here.
  auto plain_dst = make("plain", 4096, 3);
  Session d2;
  d2.add_device(*plain_dst.device, "dst");
  stream.rewind();
  ASSERT_TRUE(d2.load(stream));
  EXPECT_EQ(plain_dst.model->image(), src.model->image());
}

// --- switchover-ack ----------------------------------------------------------------------------

TEST(SwitchoverAck, SourceStopsOnlyAfterEveryDeviceWasApproved) {
  constexpr int kDevices = 3;
  SwitchoverGate gate;
  std::vector<testing::SimHandle> src, dst;
  // One injector watches every source device: a SET that stops one before the approval is early.
  faults::Injector watch;
  std::vector<std::unique_ptr<faults::FaultDevice>> watched;
  std::atomic<bool> stopped_early = false;
  watch.set_call_hook([&](const faults::Call& c) {
    if ((c.target == State::kPreCopyP2p || c.target == State::kStopCopy) && !gate.approved())
      stopped_early = true;
  });
  SessionOptions so = precopy_options(), doo = precopy_options();
  so.switchover_gate = doo.switchover_gate = &gate;
  so.downtime_limit = std::chrono::hours(1);  // convergence alone would stop at once
  Session source(so), destination(doo);
  for (int i = 0; i < kDevices; ++i) {
    src.push_back(make("mlx5", 512 << 10, 10 + i));
    dst.push_back(make("mlx5", 4096, 20 + i));
    watched.push_back(
        std::make_unique<faults::FaultDevice>(*src.back().device, watch, faults::Side::kSource));
    source.add_device(*watched.back(), fmt::format("src{}", i));
    destination.add_device(*dst.back().device, fmt::format("dst{}", i));
  }
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_FALSE(stopped_early);
  EXPECT_TRUE(gate.approved());
  // All initial data went before the switchover: the stop-copy phase had nothing initial left.
  EXPECT_GE(r->source.precopy_bytes, 3u * (512u << 10));
  for (int i = 0; i < kDevices; ++i) EXPECT_EQ(dst[i].model->image(), src[i].model->image());
}

TEST(SwitchoverAck, DestinationWithoutItRejectsTheTag) {
  auto src = make("plain", 64 << 10, 1);
  auto dst = make("plain", 4096, 2);
  SwitchoverGate gate;
  gate.expect(0);  // nobody on the other side: approval is immediate, the tag still goes out
  SessionOptions so = precopy_options();
  so.switchover_gate = &gate;
  Session source(so);
  source.add_device(*src.device, "src");
  MemoryChannel stream;
  ASSERT_TRUE(source.save(stream));
  ASSERT_TRUE(source.resume_vm());

  Session destination(precopy_options());  // switchover-ack off
  destination.add_device(*dst.device, "dst");
  const auto before = dst.model->image();
  auto r = destination.load(stream);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unknown tag 0xffffffffef100005"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(device_state(*dst.device), State::kRunning);
  EXPECT_EQ(dst.model->image(), before);
}

TEST(SwitchoverAck, AFailingDestinationReleasesAWaitingSource) {
  auto src = make("plain", 256 << 10, 1);
  auto dst = make("plain", 4096, 2);
  FaultyDevice bad(*dst.device, "set:RS times=1 -> errno=EIO", faults::Side::kDestination);
  SwitchoverGate gate;
  SessionOptions so = precopy_options(), doo = precopy_options();
  so.switchover_gate = doo.switchover_gate = &gate;
  Session source(so), destination(doo);
  source.add_device(*src.device, "src");
  destination.add_device(bad.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_FALSE(r);
  EXPECT_EQ(device_state(*src.device), State::kRunning);
}

TEST(SwitchoverAck, SourceWithoutPrecopyCannotBeApproved) {
  auto src = make("plain", 64 << 10, 1);
  auto dst = make("plain", 4096, 2);
  SwitchoverGate gate;
  SessionOptions so, doo = precopy_options();
  so.switchover_gate = doo.switchover_gate = &gate;  // the source does not pre-copy
  Session source(so), destination(doo);
  source.add_device(*src.device, "src");
  destination.add_device(*dst.device, "dst");
  auto r = migrate_locally(source, destination);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("switchover-ack"), std::string::npos) << r.error().message;
  EXPECT_EQ(device_state(*src.device), State::kRunning);
  EXPECT_EQ(device_state(*dst.device), State::kRunning);
}

// --- several devices, P2P ----------------------------------------------------------------------

struct Fleet {
  std::vector<testing::SimHandle> src, dst;
  std::vector<std::unique_ptr<FaultyDevice>> src_dev, dst_dev;
  SetLog log;

  // `source_plans[i]`, when given, are the rules around source device i.
  Fleet(std::vector<std::string_view> profiles, std::uint64_t size,
        std::vector<std::string_view> source_plans = {}) {
    source_plans.resize(profiles.size());
    for (std::size_t i = 0; i < profiles.size(); ++i) {
      src.push_back(make(profiles[i], size, 100 + i));
      dst.push_back(make(profiles[i], 4096, 200 + i));
      src_dev.push_back(std::make_unique<FaultyDevice>(*src.back().device, source_plans[i]));
      dst_dev.push_back(
          std::make_unique<FaultyDevice>(*dst.back().device, "", faults::Side::kDestination));
      log.watch(src_dev.back()->injector, fmt::format("s{}", i));
      log.watch(dst_dev.back()->injector, fmt::format("d{}", i));
    }
  }
  void add(Session& source, Session& destination) {
    for (std::size_t i = 0; i < src.size(); ++i) {
      source.add_device(src_dev[i]->device, fmt::format("s{}", i));
      destination.add_device(dst_dev[i]->device, fmt::format("d{}", i));
    }
  }
  // Position in the log of the first SET by a device of `side` ('s' or 'd') to one of `states`.
  std::size_t first(char side, std::set<State> states) {
    for (std::size_t i = 0; i < log.sets.size(); ++i)
      if (log.sets[i].first[0] == side && states.contains(log.sets[i].second)) return i;
    return log.sets.size();
  }
  std::size_t last(char side, std::set<State> states) {
    std::size_t at = 0;
    for (std::size_t i = 0; i < log.sets.size(); ++i)
      if (log.sets[i].first[0] == side && states.contains(log.sets[i].second)) at = i;
    return at;
  }
};

TEST(P2p, EveryDeviceIsQuiescedBeforeAnyStopsOrStarts) {
  for (bool precopy : {false, true}) {
    Fleet f({"plain", "mlx5", "p2p"}, 256 << 10);
    Session source(precopy ? precopy_options() : SessionOptions{});
    Session destination(precopy ? precopy_options() : SessionOptions{});
    f.add(source, destination);
    ASSERT_TRUE(source.blockers().empty());
    auto r = migrate_locally(source, destination);
    ASSERT_TRUE(r) << r.error().describe();
    // Source: three RUNNING_P2P/PRE_COPY_P2P requests, all before the first STOP/STOP_COPY.
    const std::set<State> quiesce{State::kRunningP2p, State::kPreCopyP2p};
    const std::set<State> stop{State::kStop, State::kStopCopy};
    for (std::size_t i = 0; i < 3; ++i) {
      auto sets = f.log.of(fmt::format("s{}", i));
      EXPECT_EQ(
          std::count_if(sets.begin(), sets.end(), [&](State s) { return quiesce.contains(s); }), 1)
          << i;
    }
    EXPECT_LT(f.last('s', quiesce), f.first('s', stop));
    // Destination: every device to RUNNING_P2P before any starts.
    EXPECT_LT(f.last('d', {State::kRunningP2p}), f.first('d', {State::kRunning}));
    EXPECT_EQ(f.log.of("s0")[0], precopy ? State::kPreCopy : State::kRunningP2p);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(f.dst[i].model->image(), f.src[i].model->image()) << i;
      EXPECT_EQ(device_state(*f.dst[i].device), State::kRunning);
      EXPECT_EQ(device_state(*f.src[i].device), State::kStop);
    }
  }
}

TEST(P2p, SeveralDevicesNeedP2pOnEveryOne) {
  auto a = make("p2p", 4096, 1);
  auto b = make("stopcopy", 4096, 2);
  Session mixed;
  mixed.add_device(*a.device, "a");
  mixed.add_device(*b.device, "b");
  ASSERT_EQ(mixed.blockers().size(), 1u);
  EXPECT_NE(mixed.blockers()[0].find("multiple VFIO devices"), std::string::npos);
  Session one;
  one.add_device(*b.device, "b");
  EXPECT_TRUE(one.blockers().empty());  // one device without P2P is fine
}

TEST(P2p, AFailureAnywhereLeavesEveryDeviceRunning) {
  // The second device's STOP_COPY fails after all three were quiesced and one stopped.
  Fleet f({"plain", "plain", "p2p"}, 128 << 10, {"", "set:S -> errno=EIO"});
  Session source, destination;
  f.add(source, destination);
  auto r = migrate_locally(source, destination);
  ASSERT_FALSE(r);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(device_state(*f.src[i].device), State::kRunning) << i;
    EXPECT_EQ(device_state(*f.dst[i].device), State::kRunning) << i;
    EXPECT_EQ(f.src[i].model->open_sessions(), 0u);
    EXPECT_EQ(f.dst[i].model->open_sessions(), 0u);
  }
}

TEST(P2p, MultiDeviceRoundTripWithDirtyPrecopy) {
  std::vector<testing::SimHandle> src, dst;
  SwitchoverGate gate;
  SessionOptions so = precopy_options(), doo = precopy_options();
  so.switchover_gate = doo.switchover_gate = &gate;
  so.downtime_limit = std::chrono::milliseconds(0);
  Session source(so), destination(doo);
  const char* profiles[] = {"mtty", "mlx5", "plain", "p2p"};
  for (int i = 0; i < 4; ++i) {
    const bool mtty = i == 0;
    src.push_back(make(profiles[i], mtty ? 72 : 300 << 10, 30 + i, mtty ? 0 : 8 << 10));
    dst.push_back(make(profiles[i], mtty ? 72 : 4096, 40 + i));
    source.add_device(*src.back().device, "s");
    destination.add_device(*dst.back().device, "d");
  }
  auto r = migrate_locally(source, destination);
  ASSERT_TRUE(r) << r.error().describe();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(dst[i].model->image(), src[i].model->image()) << i;
  EXPECT_GT(src[1].model->image().written, 0u);
}

// --- DMA logging -------------------------------------------------------------------------------

TEST(DmaLogging, ReportShowsThePagesTheDeviceWrote) {
  auto sim = make("mlx5", 4096, 1);
  const std::vector<uapi::DmaLoggingRange> ranges{{0x100000, 64 * 4096}, {0x800000, 16 * 4096}};
  ASSERT_TRUE(dma_logging_start(*sim.device, 4096, ranges));
  auto wrote = sim.model->simulate_dma(40);
  ASSERT_EQ(wrote.size(), 40u);
  std::set<std::uint64_t> expected(wrote.begin(), wrote.end());
  std::set<std::uint64_t> got;
  for (const auto& r : ranges) {
    auto bitmap = dma_logging_report(*sim.device, r.iova, r.length, 4096);
    ASSERT_TRUE(bitmap) << bitmap.error().describe();
    for (auto iova : dirty_pages(*bitmap, r.iova, 4096)) got.insert(iova);
  }
  EXPECT_EQ(got, expected);
  // Reported pages are cleared.
  auto again = dma_logging_report(*sim.device, ranges[0].iova, ranges[0].length, 4096).value();
  EXPECT_TRUE(dirty_pages(again, ranges[0].iova, 4096).empty());
  // The same seed writes the same pages.
  auto twin = make("mlx5", 4096, 1);
  ASSERT_TRUE(dma_logging_start(*twin.device, 4096, ranges));
  EXPECT_EQ(twin.model->simulate_dma(40), wrote);
  ASSERT_TRUE(dma_logging_stop(*sim.device));
  EXPECT_FALSE(dma_logging_report(*sim.device, ranges[0].iova, ranges[0].length, 4096));
}

TEST(DmaLogging, SessionTracksDirtyPagesDuringTheSave) {
  auto src = make("mlx5", 512 << 10, 1);
  auto other = make("p2p", 4096, 3);  // no DMA logging: not tracked, not an error
  SessionOptions o = precopy_options();
  o.dirty_ranges = {{0, 256 * 4096}};
  o.downtime_limit = std::chrono::milliseconds(0);
  std::set<std::uint64_t> wrote;
  o.on_progress = [&](const Progress& p) {
    if (p.phase != Phase::kPrecopy) return;
    for (auto iova : src.model->simulate_dma(3)) wrote.insert(iova);
  };
  Session s(o);
  s.add_device(*src.device, "src");
  s.add_device(*other.device, "other");
  MemoryChannel out;
  auto r = s.save(out);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_GT(r->dirty_pages, 0u);
  EXPECT_GE(r->dirty_pages, wrote.size());  // each page at least once
  // Logging was stopped at cleanup.
  EXPECT_FALSE(dma_logging_report(*src.device, 0, 4096, 4096));
}

}  // namespace
}  // namespace vfio
