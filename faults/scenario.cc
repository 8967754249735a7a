#include "faults/scenario.h"

#include <fcntl.h>
#include <poll.h>
#include <algorithm>
#include <cerrno>

#include <condition_variable>
#include <csignal>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "core/feature.h"
#include "core/local_migration.h"
#include "faults/device_checks.h"
#include "faults/fault_channel.h"
#include "faults/fault_device.h"
#include "faults/sim_hooks.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

using uapi::State;

constexpr std::uint64_t kDefaultCaseSize = 1 << 20;
// What every source session logs where its devices can: the first MiB of guest memory.
constexpr uapi::DmaLoggingRange kLoggedRange{0, 1 << 20};

// Faults that make a device change state on its own, which no engine can see coming.
bool moved_by_fault(const Injector& inj, Side side, const std::vector<Fired>& fired,
                    const Plan& plan) {
  if (inj.fired_kind(side, Kind::kAsyncReset)) return true;
  for (const auto& f : fired) {
    // land= on a SET of the device state fails that SET, which the engine sees; on any other
    // call (a DMA logging SET too) the device moves without the engine's knowing.
    if (f.side != side || (f.op.starts_with("set:") && !f.op.starts_with("set:dma-"))) continue;
    for (const auto& r : plan.rules)
      if (r.text == f.rule)
        for (const auto& a : r.actions)
          if (a.kind == Kind::kLand) return true;
  }
  return false;
}

// Whether faults fired and every action of every rule that fired is tolerable.
bool only_tolerable(const std::vector<Fired>& fired, const Plan& plan) {
  if (fired.empty()) return false;
  for (const auto& f : fired)
    for (const auto& r : plan.rules)
      if (r.text == f.rule && !std::ranges::all_of(r.actions, tolerable)) return false;
  return true;
}

// Whether a fault that changes bytes (not just their chunking) fired on one of `ops`.
bool altered(const std::vector<Fired>& fired, const Plan& plan,
             std::initializer_list<std::string_view> ops) {
  for (const auto& f : fired) {
    if (std::find(ops.begin(), ops.end(), f.op) == ops.end()) continue;
    for (const auto& r : plan.rules)
      if (r.text == f.rule)
        for (const auto& a : r.actions)
          if (a.kind == Kind::kCorrupt || a.kind == Kind::kDrop || a.kind == Kind::kDup ||
              a.kind == Kind::kTruncate || a.kind == Kind::kEof)
            return true;
  }
  return false;
}

void observe(DeviceEnd& end, const devices::OpenedDevice& h, Session* session, std::size_t index,
             bool fuse) {
  end.present = true;
  if (session && session->device_count() > index) {
    if (Migration* m = session->migration(index)) {
      end.cached = m->device_state();
      end.broken = m->broken();
    }
  }
  end.state = query_device_state(*h.device).value_or(State::kError);
  if (!h.model) return;  // a named device: judged by what the uAPI shows (finish_named)
  end.image = h.model->image();
  end.config = h.model->config();
  end.open_sessions = h.model->open_sessions();
  end.dma_logging = h.model->dma_logging();
  // FUSE releases a closed file asynchronously: give the release a moment to arrive.
  for (int i = 0; fuse && end.open_sessions && i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    end.open_sessions = h.model->open_sessions();
  }
}

// The next migration attempt after a failed one: a clean save, to nowhere, in `session` (the
// case's own source session, or a new one with DMA logging where the device has it); the device
// is RUNNING again afterwards.
Result<> save_again(Session& session) {
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return fail(errno, "open /dev/null");
  FdChannel sink(null_fd, "/dev/null");
  auto saved = session.save(sink);
  if (!saved) return std::unexpected(saved.error());
  return session.resume_vm();
}

// Named device `k` opened and brought to RUNNING; `done` says what that took (empty: nothing).
Result<devices::OpenedDevice> open_running(const CaseConfig& cfg, std::size_t k,
                                           std::string& done) {
  auto arg = devices::parse_device_arg(cfg.devices[k]);
  if (!arg) return std::unexpected(arg.error());
  auto opened = devices::open_device(*arg, k);
  if (!opened) return std::unexpected(opened.error());
  auto brought = bring_to_running(*opened->device);
  if (!brought) return fail(brought.error().code, cfg.devices[k] + ": " + brought.error().message);
  done = std::move(*brought);
  return opened;
}

}  // namespace

std::uint64_t case_mig_flags(const CaseConfig& cfg) {
  if (!cfg.devices.empty()) return cfg.facts.mig_flags;
  const sim::Profile* p = sim::find_profile(cfg.profile);
  return p ? p->mig_flags : 0;
}

bool scenario_applies(Scenario scenario, const CaseConfig& cfg) {
  if (!cfg.devices.empty() && cfg.devices.size() != 2 * scenario_devices(scenario)) return false;
  if (cfg.devices.empty() && !sim::find_profile(cfg.profile))
    return true;  // reported as a setup error by the case
  const std::uint64_t flags = case_mig_flags(cfg);
  if (scenario == Scenario::kPrecopy) return flags & uapi::kMigrationPreCopy;
  if (scenario == Scenario::kP2pMulti) return flags & uapi::kMigrationP2p;
  return true;
}

Result<> learn_device_facts(CaseConfig& cfg, std::vector<std::string>& said) {
  auto& facts = cfg.facts;
  facts = {~std::uint64_t{0}, true, false};
  for (std::size_t k = 0; k < cfg.devices.size(); ++k) {
    std::string done;
    auto opened = open_running(cfg, k, done);
    if (!opened) return std::unexpected(opened.error());
    Device& dev = *opened->device;
    if (!done.empty()) said.push_back(fmt::format("{}: {}", cfg.devices[k], done));
    auto flags = query_migration_flags(dev);
    if (!flags) return fail(flags.error().code, cfg.devices[k] + ": " + flags.error().message);
    facts.mig_flags &= *flags;
    if (k % 2 == 0 && facts.dma_logging) {
      auto why_not = dma_logging_unusable(dev, kLoggedRange, SessionOptions{}.dirty_page_size);
      facts.dma_logging = !why_not;
      if (why_not && !why_not->empty())
        said.push_back(
            fmt::format("{}: {}: the cases run without DMA logging", cfg.devices[k], *why_not));
    }
    if (k == 0) {
      auto first = read_state_digest(dev);
      auto second = first ? read_state_digest(dev) : first;
      if (!second)
        return fail(second.error().code,
                    cfg.devices[k] + ": reading its state back: " + second.error().message);
      facts.digest_stable = *first == *second;
    }
  }
  return {};
}

std::size_t scenario_devices(Scenario scenario) {
  return scenario == Scenario::kP2pMulti ? 3 : 1;
}

std::uint64_t case_state_size(const CaseConfig& cfg) {
  if (cfg.state_size) return *cfg.state_size;
  const sim::Profile* p = sim::find_profile(cfg.profile);
  if (p && p->format == sim::StreamFormat::kMtty) return p->default_state_size;
  return kDefaultCaseSize;
}

void CaseControl::attach(Side side, Session* s) {
  std::lock_guard lock(mu_);
  (side == Side::kSource ? src_ : dst_) = s;
}

void CaseControl::cancel_session(Side side) {
  std::lock_guard lock(mu_);
  if (Session* s = side == Side::kSource ? src_ : dst_) s->cancel();
}

void CaseControl::cancel() {
  injector.cancel();
  cancel_session(Side::kSource);
  cancel_session(Side::kDestination);
}

namespace {

// The two ends of the migration pipe in lockstep: a write returns once the destination has
// taken every byte written so far and come back for more, or stopped reading. Without it the
// source runs ahead of the destination by however far thread timing lets it, so where a source
// learns that its destination failed (and so which of its faults still fire) would vary from
// run to run.
class Lockstep {
 public:
  void wrote(std::size_t n) {
    std::unique_lock lock(mu_);
    written_ += n;
    cv_.wait(lock, [&] { return closed_ || (waiting_ && consumed_ == written_); });
  }
  void reader_waits(std::uint64_t consumed) {
    std::lock_guard lock(mu_);
    waiting_ = true;
    consumed_ = consumed;
    cv_.notify_all();
  }
  void reader_busy() {
    std::lock_guard lock(mu_);
    waiting_ = false;
  }
  void reader_closed() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t written_ = 0, consumed_ = 0;
  bool waiting_ = false, closed_ = false;
};

class LockstepWriter final : public Channel {
 public:
  LockstepWriter(Channel& inner, Lockstep& lockstep) : inner_(inner), lockstep_(lockstep) {}
  Result<std::size_t> write(std::span<const std::byte> data) override {
    auto n = inner_.write(data);
    if (n && *n) lockstep_.wrote(*n);
    return n;
  }
  Result<std::size_t> read(std::span<std::byte> data) override { return inner_.read(data); }
  const std::string& name() const override { return inner_.name(); }

 private:
  Channel& inner_;
  Lockstep& lockstep_;
};

// Reads until the buffer is full or the stream ends. How a pipe splits the stream depends on
// thread timing; with whole reads every recv and every destination write happens at the same
// call number in every run, so "recv nth=5" names the same call each time.
// With switchover-ack the source stops sending until the destination approves: a read also
// ends when the source waits and the pipe is empty, which is as deterministic (the source only
// waits after flushing everything it wrote, and in lockstep the destination has taken it all).
class WholeReads final : public Channel {
 public:
  WholeReads(FdChannel& inner, const SwitchoverGate* gate, Lockstep* lockstep = nullptr)
      : inner_(inner), gate_(gate), lockstep_(lockstep) {}
  Result<std::size_t> write(std::span<const std::byte> data) override { return inner_.write(data); }
  Result<std::size_t> read(std::span<std::byte> data) override {
    std::size_t got = 0;
    while (got < data.size()) {
      pollfd p{inner_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) {  // everything written is taken: wait for more
        if (lockstep_) lockstep_->reader_waits(consumed_);
        const bool gated = gate_ && got > 0;
        bool source_waits = false;
        while (!source_waits && ::poll(&p, 1, gated ? 1 : -1) == 0)
          source_waits = gated && gate_->source_waiting() && ::poll(&p, 1, 0) == 0;
        if (lockstep_) lockstep_->reader_busy();
        if (source_waits) break;
      }
      auto n = inner_.read(data.subspan(got));
      if (!n) return got ? Result<std::size_t>(got) : n;
      if (*n == 0) break;
      got += *n;
      consumed_ += *n;
    }
    return got;
  }
  const std::string& name() const override { return inner_.name(); }

 private:
  FdChannel& inner_;
  const SwitchoverGate* gate_;
  Lockstep* lockstep_;
  std::uint64_t consumed_ = 0;
};

// Reads a pipe to its end, so that its writer never waits on a reader that stopped early.
void drain(Channel& channel) {
  std::vector<std::byte> sink(64 * 1024);
  while (true) {
    auto n = channel.read(sink);
    if (!n || *n == 0) return;
  }
}

}  // namespace

FaultyMigration migrate_with_faults(Session& source, Session& destination, Injector& injector,
                                    bool check_wire, const SwitchoverGate* gate) {
  FaultyMigration out;
  // Faults close the pipe under a writer by design: that must be EPIPE, not a dead process.
  std::signal(SIGPIPE, SIG_IGN);
  auto pipe = make_pipe_channel();
  if (!pipe) {
    out.outcome = std::unexpected(pipe.error());
    return out;
  }
  auto& [read_end, write_end] = *pipe;
  Lockstep lockstep;
  LockstepWriter stepped(write_end, lockstep);
  StreamChecker checker;
  CheckedChannel checked(stepped, checker);
  FaultChannel send(check_wire ? static_cast<Channel&>(checked) : stepped, injector, Side::kSource);
  WholeReads whole(read_end, gate, &lockstep);
  FaultChannel recv(whole, injector, Side::kDestination);
  std::thread destination_thread([&] {
    out.loaded = destination.load(recv);
    read_end.close();  // never leave the source blocked on a full pipe
    lockstep.reader_closed();
  });
  out.saved = source.save(send);
  write_end.close();
  destination_thread.join();
  if (check_wire) out.stream = checker.finish();

  if (!out.saved) {
    Error e = out.saved.error();
    e.message = "source: " + e.message;
    if (!out.loaded) e.message += " (destination: " + out.loaded.error().describe() + ")";
    out.outcome = std::unexpected(e);
  } else if (!out.loaded) {
    Error e = out.loaded.error();
    e.message = "destination: " + e.message;
    if (auto resumed = source.resume_vm(); !resumed)
      e.message += "; restarting the source failed: " + resumed.error().describe();
    out.outcome = std::unexpected(e);
  }
  return out;
}

namespace {

// Fresh simulated devices of the profile for every case, seeded apart.
Result<> open_fresh(const CaseConfig& cfg, const sim::Profile& profile, bool precopy,
                    std::size_t devices, std::vector<devices::OpenedDevice>& src,
                    std::vector<devices::OpenedDevice>& dst) {
  sim::SimOptions options;
  options.state_size = case_state_size(cfg);
  // precopy: the guest writes 1/64 of the state before every pre-copy read, so there is always
  // dirty data to chase; convergence comes from the budget of the case's sessions.
  const std::uint64_t dirty = precopy ? std::max<std::uint64_t>(1, *options.state_size / 64) : 0;
  for (std::size_t i = 0; i < devices; ++i) {
    options.seed = 1 + 2 * i;
    options.dirty_per_read = dirty;
    auto s =
        devices::open_sim(cfg.transport, profile, options, i ? fmt::format("src{}", i) : "src");
    options.seed = 2 + 2 * i;
    options.dirty_per_read = 0;  // the destination's guest is not running yet
    auto d =
        devices::open_sim(cfg.transport, profile, options, i ? fmt::format("dst{}", i) : "dst");
    if (!s) return std::unexpected(s.error());
    if (!d) return std::unexpected(d.error());
    src.push_back(std::move(*s));
    dst.push_back(std::move(*d));
  }
  return {};
}

// The devices named on the command line, each brought to RUNNING (what that took is said).
Result<> open_named(const CaseConfig& cfg, std::size_t devices,
                    std::vector<devices::OpenedDevice>& src,
                    std::vector<devices::OpenedDevice>& dst, std::vector<std::string>& said) {
  if (cfg.devices.size() != 2 * devices)
    return fail(EINVAL, fmt::format("the scenario needs {} devices (a source and a destination "
                                    "per device of the VM), not {}",
                                    2 * devices, cfg.devices.size()));
  for (std::size_t k = 0; k < cfg.devices.size(); ++k) {
    std::string done;
    auto opened = open_running(cfg, k, done);
    if (!opened) return std::unexpected(opened.error());
    if (!done.empty()) said.push_back(fmt::format("before the case, {}: {}", cfg.devices[k], done));
    opened->model.reset();  // judged as a kernel device is: by what the uAPI shows
    if (cfg.adapt_named) cfg.adapt_named(k, *opened);
    (k % 2 ? dst : src).push_back(std::move(*opened));
  }
  return {};
}

// What the uAPI shows of named devices after the case, once every session is done: files left
// open, the states read back, and whether a clean migration still works after a failure.
// Leaves the source RUNNING for the next case (resumed from STOP after a migration).
void finish_named(devices::OpenedDevice& source, devices::OpenedDevice& destination,
                  const std::map<int, std::string>& fds_before, Observation& o, bool dma_logging) {
  o.leaked_fds = new_fds(fds_before, open_fds());
  auto read_back = [&](DeviceEnd& end, Device& device) {
    if (!o.source_digest || !end.present || end.state != State::kRunning) return;
    auto digest = read_state_digest(device);
    if (digest)
      end.digest = *digest;
    else
      end.digest_error = digest.error().describe();
  };
  read_back(o.src, *source.device);
  // save: the clean load afterwards may refuse data a fault altered; if it accepts, the result
  // must be exact like any other destination.
  if (o.success && (o.scenario != Scenario::kSave || o.verify_loaded == true))
    read_back(o.dst, *destination.device);
  if (!o.success && o.src.present && !o.src.broken && !o.src.model_fault &&
      o.src.state == State::kRunning &&
      query_device_state(*destination.device).value_or(State::kError) == State::kRunning) {
    SessionOptions so;
    if (dma_logging) so.dirty_ranges = {kLoggedRange};
    Session from(so), to;
    from.add_device(*source.device, source.device->name(), source.config_restore);
    to.add_device(*destination.device, destination.device->name(), destination.config_restore);
    auto again = migrate_locally(from, to);
    o.next_attempt = "migration";
    o.next_save_ok = again.has_value();
    if (!again) o.next_save_error = again.error().describe();
  }
  if (query_device_state(*source.device).value_or(State::kError) == State::kStop)
    (void)request_device_state(*source.device, State::kRunning);
}

// The source's state as it is before the case, where reading it back is deterministic.
Result<> digest_before(devices::OpenedDevice& source, const CaseConfig& cfg, Observation& o) {
  if (!cfg.facts.digest_stable) return {};
  auto digest = read_state_digest(*source.device);
  if (!digest)
    return fail(digest.error().code, "reading the source's state back: " + digest.error().message);
  o.source_digest = *digest;
  return {};
}

}  // namespace

CaseRun run_case(const CaseSpec& spec, const CaseConfig& cfg, CaseControl& control) {
  CaseRun run;
  Observation& o = run.observation;
  o.scenario = spec.scenario;
  Injector& inj = control.injector;
  inj.set_recording(cfg.record);
  const bool named = !cfg.devices.empty();
  const sim::Profile* profile = sim::find_profile(cfg.profile);
  if (!named && !profile) {
    run.setup_error = fmt::format("unknown profile '{}'", cfg.profile);
    return run;
  }
  const bool precopy = spec.scenario == Scenario::kPrecopy;
  const std::size_t devices = scenario_devices(spec.scenario);
  const std::uint64_t state_size = case_state_size(cfg);
  std::vector<devices::OpenedDevice> src, dst;
  std::map<int, std::string> fds_before;
  if (named) {
    auto opened = open_named(cfg, devices, src, dst, o.prepared);
    if (opened) opened = digest_before(src[0], cfg, o);
    if (!opened) {
      run.setup_error = opened.error().describe();
      return run;
    }
    fds_before = open_fds();
  } else {
    if (auto opened = open_fresh(cfg, *profile, precopy, devices, src, dst); !opened) {
      run.setup_error = opened.error().describe();
      return run;
    }
    o.source_image = src[0].model->image();
    o.source_config = src[0].model->config();
  }
  for (std::size_t i = 1; i < devices; ++i) {
    o.more.emplace_back();
    if (src[i].model) o.more.back().source_image = src[i].model->image();
    if (src[i].model) o.more.back().source_config = src[i].model->config();
  }
  std::vector<std::unique_ptr<SimHooks>> hooks;
  std::vector<std::unique_ptr<FaultDevice>> fsrc, fdst;
  for (std::size_t i = 0; i < devices; ++i) {
    hooks.push_back(src[i].model ? std::make_unique<SimHooks>(src[i].model) : nullptr);
    fsrc.push_back(
        std::make_unique<FaultDevice>(*src[i].device, inj, Side::kSource, hooks.back().get()));
    hooks.push_back(dst[i].model ? std::make_unique<SimHooks>(dst[i].model) : nullptr);
    fdst.push_back(
        std::make_unique<FaultDevice>(*dst[i].device, inj, Side::kDestination, hooks.back().get()));
  }

  // The invariants whenever the engine is between steps (each progress callback): every
  // device's cached state equals a GET (unless a fault moved it behind the engine's back), and
  // a save or load starts counting bytes from zero.
  const Plan plan_now = parse_plan(spec.plan).value_or(Plan{});
  Session* sessions[2] = {nullptr, nullptr};
  std::mutex violations_mu;
  auto between_steps = [&](Side side, const Progress& p, bool first) {
    const std::size_t s = side == Side::kSource ? 0 : 1;
    if (!sessions[s]) return;
    std::vector<std::string> found;
    if (first && p.device_bytes != 0)
      found.push_back(fmt::format("{}: a {} starts with {} bytes already counted", side_name(side),
                                  s ? "load" : "save", p.device_bytes));
    const auto& handles = s ? dst : src;
    for (std::size_t i = 0; i < sessions[s]->device_count() && i < handles.size(); ++i) {
      Migration* m = sessions[s]->migration(i);
      auto real = query_device_state(*handles[i].device);
      if (!m || m->broken() || !real || m->device_state() == *real) continue;
      if (moved_by_fault(inj, side, inj.fired(), plan_now)) continue;
      found.push_back(
          fmt::format("{} device {}: between steps ({}) the engine believes {} but "
                      "the device is in {}",
                      side_name(side), i, phase_name(p.phase),
                      uapi::state_short_name(m->device_state()), uapi::state_short_name(*real)));
    }
    std::lock_guard lock(violations_mu);
    for (auto& f : found)
      if (o.invariant_violations.size() < 4) o.invariant_violations.push_back(std::move(f));
  };

  const bool dma_logging = named ? cfg.facts.dma_logging : profile->dma_logging;
  SwitchoverGate gate;
  bool fresh_save[2] = {true, true};  // the next progress callback is a save's or load's first
  auto options_for = [&](Side side) {
    SessionOptions so;
    so.migration.data_buffer_size = cfg.buffer_size;
    so.stream_buffer_size = cfg.stream_buffer_size;
    if (precopy) {
      // Pre-copy with switchover-ack; an assumed rate makes convergence independent of timing:
      // 1 ms of downtime holds 1/32 of the state plus 4 KiB.
      so.migration.precopy = true;
      so.switchover_gate = &gate;
      so.downtime_limit = std::chrono::milliseconds(1);
      so.switchover_bandwidth = (state_size / 32 + 4096) * 1000;
      so.max_iterations = 256;
      so.switchover_timeout = std::chrono::milliseconds(250);  // a cut stream never approves
    }
    // The source logs the DMA of its devices' first MiB of guest memory where the device can.
    if (side == Side::kSource && dma_logging) so.dirty_ranges = {kLoggedRange};
    auto* counter = side == Side::kSource ? &run.progress_src : &run.progress_dst;
    so.on_progress = [&, side, counter](const Progress& p) {
      ++*counter;
      between_steps(side, p, std::exchange(fresh_save[side == Side::kSource ? 0 : 1], false));
      if (spec.cancel_side == side && *counter == spec.cancel_at_progress)
        control.cancel_session(side);
    };
    return so;
  };
  inj.set_cancel_hook([&](Side side) { control.cancel_session(side); });
  const bool fuse = cfg.transport != devices::Transport::kDirect;

  Session source(options_for(Side::kSource));
  Session destination(options_for(Side::kDestination));
  control.attach(Side::kSource, &source);
  control.attach(Side::kDestination, &destination);
  sessions[0] = &source;
  sessions[1] = &destination;

  switch (spec.scenario) {
    case Scenario::kSave: {
      // The saved stream must load into a clean device (without faults). It is loaded as it is
      // written, through a pipe, so no copy of it is kept whatever its size; the result counts
      // only when the save succeeded.
      auto pipe = make_pipe_channel();
      if (!pipe) {
        run.setup_error = pipe.error().describe();
        break;
      }
      auto& [read_end, write_end] = *pipe;
      Session verify;
      verify.add_device(*dst[0].device, dst[0].device->name(), dst[0].config_restore);
      Result<Report> loaded = fail(ECANCELED, "the clean load did not run");
      std::thread verifier([&] {
        loaded = verify.load(read_end);
        drain(read_end);  // a load that stopped early must not fail the save
      });
      source.add_device(*fsrc[0], fsrc[0]->name(), src[0].config_restore);
      StreamChecker checker;
      CheckedChannel checked(write_end, checker);
      FaultChannel out(checked, inj, Side::kSource);
      auto saved = source.save(out);
      write_end.close();
      verifier.join();
      Result<> r = saved ? source.resume_vm() : Result<>(std::unexpected(saved.error()));
      o.success = r.has_value();
      if (!r) o.error = r.error().message;
      o.stream = checker.finish();
      if (o.success) {
        o.verify_loaded = loaded.has_value();
        if (!loaded) o.verify_error = loaded.error().describe();
        observe(o.dst, dst[0], &verify, 0, fuse);
      }
      break;
    }
    case Scenario::kLoad: {
      // A clean stream from a clean source, streamed through a pipe into a faulty load. Whole
      // reads make every recv the same call in every run, as reads from a file would.
      auto pipe = make_pipe_channel();
      if (!pipe) {
        run.setup_error = pipe.error().describe();
        break;
      }
      auto& [read_end, write_end] = *pipe;
      StreamChecker checker;
      Session clean;
      clean.add_device(*src[0].device, src[0].device->name(), src[0].config_restore);
      Result<Report> saved = fail(ECANCELED, "the clean save did not run");
      std::thread saver([&] {
        CheckedChannel checked(write_end, checker);
        saved = clean.save(checked);
        if (saved) (void)clean.resume_vm();
        write_end.close();
      });
      destination.add_device(*fdst[0], fdst[0]->name(), dst[0].config_restore);
      WholeReads whole(read_end, nullptr);
      FaultChannel in(whole, inj, Side::kDestination);
      auto loaded = destination.load(in);
      drain(read_end);  // the clean save runs to its end whatever the load did
      saver.join();
      if (!saved) {
        run.setup_error = saved.error().describe();
        break;
      }
      o.success = loaded.has_value();
      if (!loaded) o.error = loaded.error().message;
      o.stream = checker.finish();
      break;
    }
    case Scenario::kMigrate:
    case Scenario::kCancel:
    case Scenario::kPrecopy:
    case Scenario::kP2pMulti: {
      for (std::size_t i = 0; i < devices; ++i) {
        source.add_device(*fsrc[i], fsrc[i]->name(), src[i].config_restore);
        destination.add_device(*fdst[i], fdst[i]->name(), dst[i].config_restore);
      }
      auto m = migrate_with_faults(source, destination, inj, true, precopy ? &gate : nullptr);
      o.success = m.outcome.has_value();
      if (!m.outcome) o.error = m.outcome.error().message;
      o.destination_loaded = m.loaded.has_value();
      o.stream = m.stream;
      break;
    }
  }

  control.attach(Side::kSource, nullptr);
  control.attach(Side::kDestination, nullptr);
  run.fired = inj.fired();
  run.trace = inj.trace();
  run.trace_overflowed = inj.trace_overflowed();
  Plan plan_copy;  // fired entries name rules by text; look their kinds up in the plan
  if (auto p = parse_plan(spec.plan); p) plan_copy = *p;
  o.hang_injected =
      inj.fired_kind(Side::kSource, Kind::kHang) || inj.fired_kind(Side::kDestination, Kind::kHang);
  o.stream_mangled = altered(run.fired, plan_copy, {"send"});
  o.tolerable_faults_only = only_tolerable(run.fired, plan_copy);
  o.data_altered = altered(run.fired, plan_copy, {"send", "read", "config-read"});

  // Faults are counted per side, not per device: every device of a side gets the side's facts.
  const bool src_moved = moved_by_fault(inj, Side::kSource, run.fired, plan_copy);
  const bool src_reset =
      inj.count(Side::kSource, Op::kReset) > 0 || inj.fired_kind(Side::kSource, Kind::kAsyncReset);
  const bool dst_moved = moved_by_fault(inj, Side::kDestination, run.fired, plan_copy);
  auto stop_faulted = [&](Side side) {
    return std::ranges::any_of(
        run.fired, [&](const Fired& f) { return f.side == side && f.op == "set:dma-stop"; });
  };
  for (std::size_t i = 0; i < devices; ++i) {
    DeviceEnd& s = i == 0 ? o.src : o.more[i - 1].src;
    DeviceEnd& d = i == 0 ? o.dst : o.more[i - 1].dst;
    if (spec.scenario != Scenario::kLoad) {
      observe(s, src[i], &source, i, fuse);
      s.model_fault = src_moved;
      s.reset = src_reset;
      s.reset_failed_injected = s.broken;
      s.dma_stop_faulted = stop_faulted(Side::kSource);
    }
    if (spec.scenario != Scenario::kSave) {
      observe(d, dst[i], &destination, i, fuse);
      d.model_fault = dst_moved;
      d.reset_failed_injected = d.broken;
      d.dma_stop_faulted = stop_faulted(Side::kDestination);
    }
  }
  if (named) {
    finish_named(src[0], dst[0], fds_before, o, dma_logging);
    return run;
  }
  // A failure, or a DMA logging stop that failed, must not spoil the next attempt (a device
  // left logging DMA made it fail with EBUSY).
  if ((!o.success || o.src.dma_logging) && o.src.present && !o.src.broken && !o.src.model_fault &&
      o.src.state == State::kRunning) {
    // As a VMM retries: the same session saves again (its byte counts must start from zero), the
    // plan over. A cancelled session stays cancelled, a blocked one blocked (QEMU realizes a
    // device once per VM), and a pre-copy one would wait for an approval no destination sends:
    // those retry in a new session, as a new VM would.
    Result<> again;
    const bool same_session =
        (spec.scenario == Scenario::kSave || spec.scenario == Scenario::kMigrate) &&
        !source.cancelled() && source.blockers().empty();
    if (same_session) {
      inj.disarm();
      fresh_save[0] = true;
      again = save_again(source);
    } else {
      SessionOptions so;
      if (dma_logging) so.dirty_ranges = {kLoggedRange};
      Session retry(so);
      retry.add_device(*src[0].device, src[0].device->name(), src[0].config_restore);
      again = save_again(retry);
    }
    o.next_save_ok = again.has_value();
    if (!again) o.next_save_error = again.error().describe();
  }
  return run;
}

}  // namespace vfio::faults
