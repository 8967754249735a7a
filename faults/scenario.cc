#include "faults/scenario.h"

#include <algorithm>
#include <csignal>
#include <thread>

#include <fmt/format.h>

#include "core/feature.h"
#include "faults/fault_channel.h"
#include "faults/fault_device.h"
#include "faults/sim_hooks.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

using uapi::State;

constexpr std::uint64_t kDefaultCaseSize = 1 << 20;

// Faults that make a device change state on its own, which no engine can see coming.
bool moved_by_fault(const Injector& inj, Side side, const std::vector<Fired>& fired,
                    const Plan& plan) {
  if (inj.fired_kind(side, Kind::kAsyncReset)) return true;
  for (const auto& f : fired) {
    if (f.side != side || f.op.starts_with("set:")) continue;
    for (const auto& r : plan.rules)
      if (r.text == f.rule)
        for (const auto& a : r.actions)
          if (a.kind == Kind::kLand) return true;
  }
  return false;
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

void observe(DeviceEnd& end, const SimHandle& h, Session* session, bool fuse) {
  end.present = true;
  if (session && session->device_count() > 0) {
    if (Migration* m = session->migration(0)) {
      end.cached = m->device_state();
      end.broken = m->broken();
    }
  }
  end.state = query_device_state(*h.device).value_or(State::kError);
  end.image = h.model->image();
  end.config = h.model->config();
  end.open_sessions = h.model->open_sessions();
  // FUSE releases a closed file asynchronously: give the release a moment to arrive.
  for (int i = 0; fuse && end.open_sessions && i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    end.open_sessions = h.model->open_sessions();
  }
}

}  // namespace

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

// Reads until the buffer is full or the stream ends. How a pipe splits the stream depends on
// thread timing; with whole reads every recv and every destination write happens at the same
// call number in every run, so "recv nth=5" names the same call each time.
class WholeReads final : public Channel {
 public:
  explicit WholeReads(Channel& inner) : inner_(inner) {}
  Result<std::size_t> write(std::span<const std::byte> data) override { return inner_.write(data); }
  Result<std::size_t> read(std::span<std::byte> data) override {
    std::size_t got = 0;
    while (got < data.size()) {
      auto n = inner_.read(data.subspan(got));
      if (!n) return got ? Result<std::size_t>(got) : n;
      if (*n == 0) break;
      got += *n;
    }
    return got;
  }
  const std::string& name() const override { return inner_.name(); }

 private:
  Channel& inner_;
};

}  // namespace

FaultyMigration migrate_with_faults(Session& source, Session& destination, Injector& injector,
                                    bool keep_wire) {
  FaultyMigration out;
  // Faults close the pipe under a writer by design: that must be EPIPE, not a dead process.
  std::signal(SIGPIPE, SIG_IGN);
  auto pipe = make_pipe_channel();
  if (!pipe) {
    out.outcome = std::unexpected(pipe.error());
    return out;
  }
  auto& [read_end, write_end] = *pipe;
  FaultChannel send(write_end, injector, Side::kSource);
  WholeReads whole(read_end);
  FaultChannel recv(whole, injector, Side::kDestination);
  send.keep_copy(keep_wire);
  std::thread destination_thread([&] {
    out.loaded = destination.load(recv);
    read_end.close();  // never leave the source blocked on a full pipe
  });
  out.saved = source.save(send);
  write_end.close();
  destination_thread.join();
  if (keep_wire) out.wire = send.copy();

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

CaseRun run_case(const CaseSpec& spec, const CaseConfig& cfg, CaseControl& control) {
  CaseRun run;
  Observation& o = run.observation;
  o.scenario = spec.scenario;
  Injector& inj = control.injector;
  inj.set_recording(cfg.record);
  const sim::Profile* profile = sim::find_profile(cfg.profile);
  if (!profile) {
    run.setup_error = fmt::format("unknown profile '{}'", cfg.profile);
    return run;
  }
  sim::SimOptions options;
  options.state_size = case_state_size(cfg);
  options.seed = 1;
  auto src = open_sim(cfg.transport, *profile, options, "src");
  options.seed = 2;
  auto dst = open_sim(cfg.transport, *profile, options, "dst");
  if (!src || !dst) {
    run.setup_error = (!src ? src.error() : dst.error()).describe();
    return run;
  }
  o.source_image = src->model->image();
  o.source_config = src->model->config();
  SimHooks src_hooks(src->model), dst_hooks(dst->model);
  FaultDevice fsrc(*src->device, inj, Side::kSource, &src_hooks);
  FaultDevice fdst(*dst->device, inj, Side::kDestination, &dst_hooks);

  auto options_for = [&](Side side) {
    SessionOptions so;
    so.migration.data_buffer_size = cfg.buffer_size;
    so.stream_buffer_size = cfg.stream_buffer_size;
    auto* counter = side == Side::kSource ? &run.progress_src : &run.progress_dst;
    so.on_progress = [&, side, counter](const Progress&) {
      ++*counter;
      if (spec.cancel_side == side && *counter == spec.cancel_at_progress)
        control.cancel_session(side);
    };
    return so;
  };
  inj.set_cancel_hook([&](Side side) { control.cancel_session(side); });
  const bool fuse = cfg.transport == Transport::kFuse;

  Session source(options_for(Side::kSource));
  Session destination(options_for(Side::kDestination));
  control.attach(Side::kSource, &source);
  control.attach(Side::kDestination, &destination);

  switch (spec.scenario) {
    case Scenario::kSave: {
      source.add_device(fsrc, fsrc.name());
      MemoryChannel file;
      FaultChannel out(file, inj, Side::kSource);
      out.keep_copy(true);
      auto saved = source.save(out);
      Result<> r = saved ? source.resume_vm() : Result<>(std::unexpected(saved.error()));
      o.success = r.has_value();
      if (!r) o.error = r.error().message;
      o.stream = check_stream(file.data());
      // The saved file must load into a clean device, faults being over.
      if (o.success) {
        Session verify;
        verify.add_device(*dst->device, dst->device->name());
        file.rewind();
        auto loaded = verify.load(file);
        o.verify_loaded = loaded.has_value();
        if (!loaded) o.verify_error = loaded.error().describe();
        observe(o.dst, *dst, &verify, fuse);
      }
      break;
    }
    case Scenario::kLoad: {
      // A clean stream from a clean source, then a faulty load.
      MemoryChannel file;
      {
        Session clean;
        clean.add_device(*src->device, src->device->name());
        auto saved = clean.save(file);
        if (saved) (void)clean.resume_vm();
        if (!saved) {
          run.setup_error = saved.error().describe();
          break;
        }
      }
      destination.add_device(fdst, fdst.name());
      FaultChannel in(file, inj, Side::kDestination);
      auto loaded = destination.load(in);
      o.success = loaded.has_value();
      if (!loaded) o.error = loaded.error().message;
      o.stream = check_stream(file.data());
      break;
    }
    case Scenario::kMigrate:
    case Scenario::kCancel: {
      source.add_device(fsrc, fsrc.name());
      destination.add_device(fdst, fdst.name());
      auto m = migrate_with_faults(source, destination, inj, true);
      o.success = m.outcome.has_value();
      if (!m.outcome) o.error = m.outcome.error().message;
      o.destination_loaded = m.loaded.has_value();
      o.stream = check_stream(m.wire);
      break;
    }
  }

  control.attach(Side::kSource, nullptr);
  control.attach(Side::kDestination, nullptr);
  run.fired = inj.fired();
  run.trace = inj.trace();
  Plan plan_copy;  // fired entries name rules by text; look their kinds up in the plan
  if (auto p = parse_plan(spec.plan); p) plan_copy = *p;
  o.hang_injected =
      inj.fired_kind(Side::kSource, Kind::kHang) || inj.fired_kind(Side::kDestination, Kind::kHang);
  o.stream_mangled = altered(run.fired, plan_copy, {"send"});
  o.data_altered = altered(run.fired, plan_copy, {"send", "read", "config-read"});

  if (spec.scenario != Scenario::kLoad) {
    observe(o.src, *src, &source, fuse);
    o.src.model_fault = moved_by_fault(inj, Side::kSource, run.fired, plan_copy);
    o.src.reset = inj.count(Side::kSource, Op::kReset) > 0 ||
                  inj.fired_kind(Side::kSource, Kind::kAsyncReset);
    o.src.reset_failed_injected = o.src.broken;
  }
  if (spec.scenario != Scenario::kSave) {
    observe(o.dst, *dst, &destination, fuse);
    o.dst.model_fault = moved_by_fault(inj, Side::kDestination, run.fired, plan_copy);
    o.dst.reset_failed_injected = o.dst.broken;
  }
  return run;
}

}  // namespace vfio::faults
