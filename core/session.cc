#include "core/session.h"

#include <array>
#include <bit>
#include <cerrno>
#include <ctime>
#include <utility>

#include <fmt/format.h>

#include "core/container.h"
#include "core/dirty_tracking.h"
#include "core/feature.h"
#include "core/untrusted_text.h"

namespace vfio {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

using container::SectionType;

// Runs `step`, appending its duration to the report when it succeeds: a failed step fails the
// whole save or load, whose report nobody sees.
template <class Step>
Result<> timed(Report& report, Phase phase, Step&& step) {
  auto start = Clock::now();
  Result<> r = step();
  if (r) report.phases.push_back({phase, Clock::now() - start});
  return r;
}

// Appends a secondary failure (recovery that did not work) to the main error.
void note(Error& main, const Result<>& secondary) {
  if (secondary) return;
  main.message += "; then: " + secondary.error().describe();
  main.fatal = main.fatal || secondary.error().fatal;
}

// A device reset behind the engine's back after its data was written would turn the start into
// a harmless RUNNING->RUNNING and the VM would run with the device's old state. One GET before
// the start tells the loaded device from a reset one.
Result<> confirm_resuming(Device& dev) {
  auto state = query_device_state(dev);
  if (!state) return std::unexpected(std::move(state).error());
  if (*state != uapi::State::kResuming) {
    return fail(EIO, fmt::format("{}: device is in {} instead of RESUMING after its data was "
                                 "loaded (reset behind the engine's back?): its state is lost",
                                 dev.name(), uapi::state_name(*state)));
  }
  return {};
}

// Where a section type may follow in one device's sequence.
std::string_view expected_after(SectionType last, bool precopy) {
  switch (last) {
    case SectionType::kEnd:  // nothing yet
      return "a setup section";
    case SectionType::kSetup:
    case SectionType::kIterate:
      return precopy ? "an iterate or complete section" : "a complete section";
    case SectionType::kComplete:
      return "a config section";
    case SectionType::kConfig:
      break;
  }
  return "nothing (a device has one config section, its last)";
}

// The order of sections: per device setup, iterate* (devices with PRE_COPY only), complete,
// config, each once but iterate; across devices the phases never go back (all setups, then the
// iterate rounds, then all completes, then all configs). `last` is the device's previous section
// (kEnd: none), `phase` the latest phase of the stream.
Result<> check_section_order(const container::SectionStart& s, SectionType& last,
                             SectionType& phase, bool precopy) {
  auto rank = [](SectionType t) {
    switch (t) {
      case SectionType::kSetup:
        return 0;
      case SectionType::kIterate:
        return 1;
      case SectionType::kComplete:
        return 2;
      case SectionType::kConfig:
        return 3;
      case SectionType::kEnd:
        break;
    }
    return 4;
  };
  const bool follows =
      last == SectionType::kEnd ? s.type == SectionType::kSetup
      : last == SectionType::kConfig
          ? false
          : rank(s.type) == rank(last) + 1 ||
                (s.type == SectionType::kComplete && last == SectionType::kSetup) ||
                (s.type == SectionType::kIterate && last == SectionType::kIterate);
  if (s.type == SectionType::kIterate && !precopy) {
    return fail(EINVAL, fmt::format("device {}: iterate section at stream offset {}, but the "
                                    "device has no PRE_COPY: pre-copy data it cannot take",
                                    s.device, s.offset));
  }
  if (!follows) {
    return fail(EINVAL, fmt::format("device {}: {} section where {} was expected, at stream "
                                    "offset {}",
                                    s.device, container::section_name(s.type),
                                    expected_after(last, precopy), s.offset));
  }
  if (rank(s.type) < rank(phase)) {
    return fail(EINVAL, fmt::format("device {}: {} section at stream offset {} after another "
                                    "device's {} section: all setups come first, then the "
                                    "iterate rounds, the complete and the config sections",
                                    s.device, container::section_name(s.type), s.offset,
                                    container::section_name(phase)));
  }
  last = s.type;
  phase = s.type;
  return {};
}

}  // namespace

std::string_view phase_name(Phase phase) {
  switch (phase) {
    case Phase::kSetup:
      return "setup";
    case Phase::kPrecopy:
      return "pre-copy";
    case Phase::kStopVm:
      return "stop-vm";
    case Phase::kStopCopy:
      return "stop-copy";
    case Phase::kConfig:
      return "config";
    case Phase::kCleanup:
      return "cleanup";
    case Phase::kLoad:
      return "load";
    case Phase::kStartVm:
      return "start-vm";
  }
  return "?";
}

Session::Session(SessionOptions options) : options_(std::move(options)) {}
Session::~Session() = default;

MigrationOptions Session::migration_options() {
  MigrationOptions m = options_.migration;
  m.on_block = [this](std::uint64_t bytes) { return on_block(bytes); };
  m.switchover_ack = options_.switchover_gate != nullptr;
  m.approve_switchover = nullptr;
  if (SwitchoverGate* gate = options_.switchover_gate)
    m.approve_switchover = [gate] { return gate->approve(); };
  return m;
}

void Session::add_device(Device& dev, std::string id, bool enable_migration) {
  add(dev, std::move(id), enable_migration, migration_options());
}

void Session::add_device(Device& dev, std::string id, ConfigRestore config_restore) {
  MigrationOptions options = migration_options();
  options.config_restore = config_restore;
  add(dev, std::move(id), true, std::move(options));
}

void Session::add(Device& dev, std::string id, bool enable_migration, MigrationOptions options) {
  Entry entry{&dev, std::move(id), nullptr, {}};
  if (!enable_migration) {
    entry.blocker = dev.name() + ": VFIO device doesn't support migration (disabled)";
  } else if (auto m = Migration::create(dev, std::move(options)); m) {
    entry.migration = std::move(*m);
  } else {
    entry.blocker = m.error().describe();
  }
  devices_.push_back(std::move(entry));
}

std::vector<std::string> Session::blockers() const {
  std::vector<std::string> out;
  std::size_t migratable = 0;
  for (const auto& d : devices_) {
    if (d.migration) ++migratable;
    if (!d.blocker.empty()) out.push_back(d.blocker);
  }
  if (devices_.empty()) out.push_back("no devices to migrate");
  // As later QEMU: several devices only when each can be quiesced with P2P first.
  bool all_p2p = true;
  for (const auto& d : devices_)
    if (d.migration && !d.migration->p2p_supported()) all_p2p = false;
  if (migratable > 1 && !all_p2p)
    out.push_back("Migration is currently not supported with multiple VFIO devices");
  return out;
}

Result<> Session::learn_device_states() {
  states_learnt_ = false;
  std::vector<std::string> stale;
  for (auto& d : devices_) {
    if (!d.migration) continue;
    auto state = d.migration->query_state();
    if (!state) return std::unexpected(state.error());
    if (*state == uapi::State::kRunning) continue;
    const std::string_view name = uapi::state_name(*state);
    if (!options_.reset_first) {
      stale.push_back(fmt::format("{} is in {}", d.dev->name(), name));
      continue;
    }
    if (auto r = d.migration->reset_to_running(); !r) return r;
    if (options_.on_notice)
      options_.on_notice(
          fmt::format("{}: was in {}; reset (VFIO_DEVICE_RESET) as --reset-first "
                      "asks: its device state is lost",
                      d.dev->name(), name));
  }
  // Anything but RUNNING (RUNNING_P2P too) is not a fresh device: its last user was stopped
  // part way, and the reference's walk from RUNNING would start from a wrong cached state.
  if (!stale.empty())
    return fail(EBUSY, fmt::format("{}, not RUNNING (left by an earlier process that was "
                                   "killed?): nothing was sent. Rerun with --reset-first, which "
                                   "resets it with VFIO_DEVICE_RESET and loses its device state",
                                   fmt::join(stale, "; ")));
  states_learnt_ = true;
  return {};
}

Result<> Session::ensure_device_states() {
  if (std::exchange(states_learnt_, false)) return {};
  auto r = learn_device_states();
  states_learnt_ = false;
  return r;
}

bool Session::on_block(std::uint64_t bytes) {
  moved_ += bytes;
  progress(phase_);
  return !cancel_requested_;
}

void Session::progress(Phase phase) {
  phase_ = phase;
  if (options_.on_progress) options_.on_progress({phase, moved_, estimate_, iteration_, pending_});
}

void Session::stop_vm(StreamWriter& out) {
  // As in the reference, a device that fails to stop reports it through the stream.
  for (auto& d : devices_)
    if (d.migration->p2p_supported()) (void)d.migration->vm_state_change_prepare(&out);
  for (auto& d : devices_) (void)d.migration->vm_state_change(false, &out, /*migrating=*/true);
}

Result<> Session::start_vm() {
  for (auto& d : devices_) {
    if (!d.migration || !d.migration->p2p_supported()) continue;
    if (auto r = d.migration->vm_state_change_prepare(); !r) return r;
  }
  for (auto& d : devices_) {
    if (!d.migration) continue;
    if (auto r = d.migration->vm_state_change(true); !r) return r;
  }
  return {};
}

Result<> Session::start_dirty_tracking() {
  if (options_.dirty_ranges.empty()) return {};
  for (auto& d : devices_) {
    if (!d.migration->dirty_pages_supported()) continue;
    auto r = dma_logging_start(*d.dev, options_.dirty_page_size, options_.dirty_ranges);
    // EBUSY: logging still runs because an earlier session's stop failed (it is only warned
    // about, as in the reference). The device is ours alone: stop that logging and start anew,
    // rather than fail every later save.
    if (!r && r.error().code == EBUSY && dma_logging_stop(*d.dev))
      r = dma_logging_start(*d.dev, options_.dirty_page_size, options_.dirty_ranges);
    if (!r) return r;
    dirty_tracked_.push_back(d.dev);
  }
  return {};
}

Result<> Session::report_dirty_pages(Report& report) {
  for (Device* dev : dirty_tracked_) {
    for (const auto& range : options_.dirty_ranges) {
      auto bitmap = dma_logging_report(*dev, range.iova, range.length, options_.dirty_page_size);
      if (!bitmap) return std::unexpected(bitmap.error());
      for (std::uint64_t w : *bitmap) report.dirty_pages += std::popcount(w);
    }
  }
  return {};
}

void Session::stop_dirty_tracking() {
  for (Device* dev : dirty_tracked_) (void)dma_logging_stop(*dev);
  dirty_tracked_.clear();
}

Result<> Session::wait_for_switchover(StreamWriter& out) {
  SwitchoverGate* gate = options_.switchover_gate;
  if (!gate) return {};
  // The destination needs the INIT_DATA_SENT tags still buffered here. Flushed whether or not
  // it approved already, so the writes on the wire do not depend on how fast it was.
  if (auto f = out.flush(); !f) return f;
  if (gate->approved()) return {};
  std::size_t offered = 0;
  for (auto& d : devices_) offered += d.migration->initial_data_sent();
  const auto deadline = Clock::now() + options_.switchover_timeout;
  const bool bounded = options_.switchover_timeout.count() > 0;
  auto r = gate->wait(
      offered, [&] { return cancel_requested_.load() || (bounded && Clock::now() > deadline); });
  if (!r && r.error().code == ECANCELED && !cancel_requested_)
    return fail(ETIMEDOUT, fmt::format("no switchover approval from the destination within {} ms",
                                       options_.switchover_timeout.count()));
  return r;
}

Result<> Session::run_precopy(StreamWriter& out, Report& report) {
  const auto start = Clock::now();
  std::uint64_t sent = 0;
  const double downtime = std::chrono::duration<double>(options_.downtime_limit).count();
  SwitchoverGate* gate = options_.switchover_gate;
  for (;;) {
    pending_ = 0;
    bool initial_left = false;
    for (auto& d : devices_) {
      pending_ += d.migration->state_pending_estimate();
      if (d.migration->in_precopy() && gate && !d.migration->initial_data_sent())
        initial_left = true;
    }
    if (auto r = report_dirty_pages(report); !r) return r;
    progress(Phase::kPrecopy);
    if (cancel_requested_) return fail(ECANCELED, "migration cancelled");
    // The downtime budget: what the link moved per second so far, times the allowed downtime.
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double rate = options_.switchover_bandwidth
                            ? static_cast<double>(options_.switchover_bandwidth)
                        : iteration_ > 0 && elapsed > 0 ? static_cast<double>(sent) / elapsed
                                                        : 0;
    const double budget = rate * downtime;
    const bool converged = pending_ == 0 || static_cast<double>(pending_) <= budget;
    if ((converged || iteration_ >= options_.max_iterations) && !initial_left) {
      report.final_pending = pending_;
      return wait_for_switchover(out);
    }
    for (std::uint32_t i = 0; i < devices_.size(); ++i) {
      Migration& m = *devices_[i].migration;
      if (!m.in_precopy()) continue;
      const bool tagged = m.initial_data_sent();
      container::begin_section(out, SectionType::kIterate, i);
      auto n = m.save_iterate(out);
      if (!n) return std::unexpected(n.error());
      container::end_section(out);
      if (auto st = out.status(); !st) return st;
      sent += *n;
      // Send the tag on at once: the approval should not wait for the buffer to fill.
      if (!tagged && m.initial_data_sent())
        if (auto f = out.flush(); !f) return f;
    }
    ++iteration_;
    report.precopy_iterations = iteration_;
    report.precopy_bytes = moved_;
  }
}

Result<> Session::save_sections(StreamWriter& out, Report& report, bool& vm_stopped) {
  container::Header header;
  for (const auto& d : devices_) header.device_ids.push_back(d.id);
  container::write_header(out, header);

  auto each = [&](SectionType type, auto&& handler) -> Result<> {
    for (std::uint32_t i = 0; i < devices_.size(); ++i) {
      container::begin_section(out, type, i);
      if (auto r = handler(*devices_[i].migration); !r) return r;
      container::end_section(out);
      if (auto s = out.status(); !s) return s;
    }
    return {};
  };

  progress(Phase::kSetup);
  auto r = timed(report, Phase::kSetup, [&] {
    return each(SectionType::kSetup, [&](Migration& m) { return m.save_setup(out); });
  });
  if (!r) return r;
  if (r = start_dirty_tracking(); !r) return r;
  for (auto& d : devices_) estimate_ += d.migration->pending_exact();

  bool precopy = false;
  for (auto& d : devices_) precopy = precopy || d.migration->in_precopy();
  if (precopy || options_.switchover_gate) {
    r = timed(report, Phase::kPrecopy, [&] { return run_precopy(out, report); });
    if (!r) return r;
  }

  const auto stop_start = Clock::now();
  progress(Phase::kStopVm);
  r = timed(report, Phase::kStopVm, [&]() -> Result<> {
    vm_stopped = true;
    stop_vm(out);
    return out.status();
  });
  if (!r) return r;

  progress(Phase::kStopCopy);
  r = timed(report, Phase::kStopCopy, [&] {
    return each(SectionType::kComplete, [&](Migration& m) { return m.save_complete_precopy(out); });
  });
  if (!r) return r;
  if (r = report_dirty_pages(report); !r) return r;

  progress(Phase::kConfig);
  r = timed(report, Phase::kConfig, [&]() -> Result<> {
    if (auto c = each(SectionType::kConfig, [&](Migration& m) { return m.save_state(out); }); !c)
      return c;
    container::begin_section(out, SectionType::kEnd, container::kNoDevice);
    container::end_section(out);
    return out.flush();
  });
  report.downtime = Clock::now() - stop_start;
  return r;
}

Result<Report> Session::save(Channel& channel) {
  if (auto b = blockers(); !b.empty()) {
    return fail(EOPNOTSUPP, "migration is blocked: " + fmt::format("{}", fmt::join(b, "; ")));
  }
  if (cancel_requested_) return fail(ECANCELED, "migration cancelled before it started");
  // A refusal leaves the devices untouched: no failure path runs.
  if (auto r = ensure_device_states(); !r) return std::unexpected(r.error());
  Report report;
  const auto start = Clock::now();
  const auto cpu_start = thread_cpu_time();
  moved_ = estimate_ = iteration_ = pending_ = 0;
  bool vm_stopped = false;
  StreamWriter out(channel, options_.stream_buffer_size);

  auto r = save_sections(out, report, vm_stopped);
  (void)timed(report, Phase::kCleanup, [&]() -> Result<> {
    stop_dirty_tracking();
    for (auto& d : devices_) d.migration->save_cleanup();
    return {};
  });
  if (!r) return std::unexpected(fail_save(r.error(), vm_stopped));
  for (auto& d : devices_) (void)d.migration->on_status(MigrationStatus::kCompleted);
  report.device_bytes = moved_;
  report.stop_copy_bytes = moved_ - report.precopy_bytes;
  report.stream_bytes = out.bytes_written();
  report.total = Clock::now() - start;
  report.cpu = thread_cpu_time() - cpu_start;
  return report;
}

Error Session::fail_save(Error cause, bool vm_stopped) {
  auto status = cancel_requested_ ? MigrationStatus::kCancelled : MigrationStatus::kFailed;
  // The status notifier first (every device back to RUNNING), then the VM starts again: P2P
  // devices pass through RUNNING_P2P, as vm_start's prepare handlers make them.
  for (auto& d : devices_) note(cause, d.migration->on_status(status));
  if (vm_stopped) {
    for (auto& d : devices_)
      if (d.migration->p2p_supported()) note(cause, d.migration->vm_state_change_prepare());
    for (auto& d : devices_) note(cause, d.migration->vm_state_change(true));
  }
  return cause;
}

Result<> Session::load_sections(StreamReader& in) {
  if (auto h = container::read_header(in, header_); !h) return h;
  if (header_.device_ids.size() != devices_.size()) {
    return fail(EINVAL, fmt::format("the stream carries {} device(s) ({}), the destination has {}",
                                    header_.device_ids.size(), id_list(header_.device_ids),
                                    devices_.size()));
  }
  for (auto& d : devices_) {
    if (auto r = d.migration->load_setup(); !r) return r;
  }
  if (SwitchoverGate* gate = options_.switchover_gate) {
    std::size_t needed = 0;
    for (auto& d : devices_) needed += d.migration->precopy_supported();
    gate->expect(needed);
  }
  // The container grammar (docs/stream-format.md): each device's sections in order, the end
  // section once every device is complete, then nothing.
  // Per device (no more than the header may name, as devices_ has as many).
  std::array<SectionType, container::kMaxDevices> last;
  last.fill(SectionType::kEnd);
  SectionType phase = SectionType::kSetup;
  for (;;) {
    auto section = container::read_section_start(in, devices_.size());
    if (!section) return std::unexpected(std::move(section).error());
    if (section->type == SectionType::kEnd) {
      for (std::size_t i = 0; i < devices_.size(); ++i) {
        if (last[i] != SectionType::kConfig) {
          return fail(EINVAL,
                      fmt::format("the end section at stream offset {} comes before "
                                  "device {} is complete (it lacks its {} section)",
                                  section->offset, i,
                                  last[i] == SectionType::kComplete ? "config" : "complete"));
        }
      }
      break;
    }
    Migration& m = *devices_[section->device].migration;
    auto order = check_section_order(*section, last[section->device], phase,
                                     m.mig_flags() & uapi::kMigrationPreCopy);
    if (!order) return order;
    if (auto r = m.load_state(in, section->type); !r) return r;
    if (auto c = container::verify_section_end(in); !c) return c;
  }
  if (auto c = container::verify_section_end(in); !c) return c;
  if (auto e = container::verify_stream_end(in); !e) return e;
  // Only now, with every byte checked, does anything but device data reach a device.
  for (auto& d : devices_) {
    if (auto r = d.migration->commit_config(); !r) return r;
  }
  return {};
}

Result<Report> Session::load(Channel& channel) {
  auto refuse = [&](int code, std::string why) -> Result<Report> {
    if (options_.switchover_gate) options_.switchover_gate->abort(Error{code, why});
    return fail(code, std::move(why));
  };
  if (devices_.empty()) return refuse(EINVAL, "no devices to load into");
  for (const auto& d : devices_) {
    if (!d.migration) return refuse(EOPNOTSUPP, d.blocker);
  }
  if (cancel_requested_) return refuse(ECANCELED, "migration cancelled before it started");
  if (auto r = ensure_device_states(); !r) {
    if (options_.switchover_gate) options_.switchover_gate->abort(r.error());
    return std::unexpected(r.error());
  }
  Report report;
  const auto start = Clock::now();
  const auto cpu_start = thread_cpu_time();
  moved_ = estimate_ = 0;
  StreamReader in(channel, load_buffer_, options_.stream_buffer_size);

  progress(Phase::kLoad);
  auto r = timed(report, Phase::kLoad, [&] { return load_sections(in); });
  for (auto& d : devices_) d.migration->load_cleanup();
  if (r) {
    progress(Phase::kStartVm);
    // The reference ignores a failed start here (the device silently resets); we report it.
    r = timed(report, Phase::kStartVm, [&]() -> Result<> {
      for (auto& d : devices_) {
        if (auto s = confirm_resuming(*d.dev); !s) return s;
      }
      auto started = start_vm();
      // The devices judged all of their data: the whole stream, verified to its end.
      if (!started)
        started.error().message += fmt::format(
            " (after the whole stream, {} bytes, was read and verified)", in.bytes_read());
      return started;
    });
  }
  if (!r) return std::unexpected(fail_load(std::move(r).error()));
  report.device_bytes = moved_;
  report.stream_bytes = in.bytes_read();
  report.total = Clock::now() - start;
  report.cpu = thread_cpu_time() - cpu_start;
  return report;
}

Error Session::fail_load(Error cause) {
  // A source waiting for the approval must not wait for a destination that gave up.
  if (options_.switchover_gate) options_.switchover_gate->abort(cause);
  for (auto& d : devices_) {
    if (d.migration->device_state() != uapi::State::kRunning || d.migration->data_fd() != -1)
      note(cause, d.migration->abandon());
  }
  return cause;
}

Result<> Session::resume_vm() {
  return start_vm();
}

}  // namespace vfio
