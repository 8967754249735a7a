#include "faults/fuzz_resume.h"

#include <fmt/format.h>

#include <memory>
#include <mutex>

#include "core/atomic_file.h"
#include "core/feature.h"
#include "core/kernel_log.h"
#include "core/watched_device.h"
#include "faults/plan.h"
#include "faults/resume_mutator.h"

namespace vfio::faults {
namespace {

using Clock = std::chrono::steady_clock;
using uapi::State;

// At most this many kernel log lines are quoted in one finding.
constexpr std::size_t kQuotedTroubles = 3;

struct Attempt {
  ResumeOutcome outcome = ResumeOutcome::kAccepted;
  int error = 0;  // the errno of a refusal
  std::string detail;
};

// The input in flight, for the watchdog's report of a hang.
struct Current {
  std::optional<std::uint64_t> input;
  std::string mutation;
  std::vector<std::byte> bytes;
  std::string doing = "the first save";
};

// Shared with the fuzzing thread, which may outlive fuzz_resume (a hang). Once `abandoned`, that
// thread records nothing more.
struct Run {
  Run(Device& dev, FuzzResumeOptions o)
      : watched(dev), options(std::move(o)), mutator(options.seed) {}
  WatchedDevice watched;
  FuzzResumeOptions options;
  ResumeMutator mutator;
  std::unique_ptr<KernelLog> log;
  std::vector<std::byte> config;  // the device's own config blob, for reproducers
  std::optional<Error> error;     // the run could not start
  std::mutex mu;
  FuzzResumeReport report;
  Current current;
  bool abandoned = false;

  template <class Fn>
  void record(Fn fn) {
    std::lock_guard lock(mu);
    if (!abandoned) fn(report, current);
  }
};

SessionOptions quiet(SessionOptions s) {
  s.on_progress = nullptr;
  s.on_notice = nullptr;
  s.reset_first = false;
  return s;
}

// A stop-copy save of `dev` into memory; the device runs again after.
Result<std::vector<std::byte>> save_state(Device& dev, const SessionOptions& options) {
  MemoryChannel out;
  Session session(options);
  session.add_device(dev, dev.name());
  if (auto r = session.save(out); !r) return std::unexpected(r.error());
  if (auto r = session.resume_vm(); !r) return std::unexpected(r.error());
  return std::move(out.data());
}

Result<> load_state(Device& dev, const FuzzResumeOptions& o, std::vector<std::byte> stream) {
  MemoryChannel in(std::move(stream));
  Session session(quiet(o.session));
  session.add_device(dev, dev.name(), o.config_restore);
  if (auto r = session.load(in); !r)
    return fail(r.error().code, "it refused its own saved state: " + r.error().describe());
  return {};
}

// The device's own state, saved and loaded back: the device is healthy.
Result<> round_trip(Device& dev, const FuzzResumeOptions& o) {
  auto saved = save_state(dev, quiet(o.session));
  if (!saved) return fail(saved.error().code, "its save failed: " + saved.error().describe());
  return load_state(dev, o, std::move(*saved));
}

// RUNNING -> RESUMING, the input, RESUMING -> STOP. An error when the device would not even enter
// RESUMING: that is not the input's doing.
Result<Attempt> feed(Device& dev, std::span<const std::byte> input, std::size_t chunk) {
  auto fd = request_device_state(dev, State::kResuming);
  if (!fd) return fail(fd.error().code, "RUNNING -> RESUMING failed: " + fd.error().describe());
  Attempt a;
  for (std::size_t at = 0; at < input.size();) {
    auto n = dev.write(*fd, input.subspan(at, std::min(chunk, input.size() - at)));
    if (!n || *n == 0) {
      a.outcome = ResumeOutcome::kWriteRefused;
      a.error = n ? EIO : n.error().code;
      a.detail = n ? fmt::format("write at {} took no bytes", at)
                   : fmt::format("write at {}: {}", at, n.error().describe());
      break;
    }
    at += *n;
  }
  if (a.outcome != ResumeOutcome::kWriteRefused) {
    if (auto s = request_device_state(dev, State::kStop); !s) {
      a.outcome = ResumeOutcome::kRefused;
      a.error = s.error().code;
      a.detail = "RESUMING -> STOP: " + s.error().describe();
    }
  }
  (void)dev.close(*fd);  // a reset below makes it stale anyway
  return a;
}

// Back to RUNNING: STOP -> RUNNING after an accepted input, a reset otherwise. Returns whether it
// reset; an error when the device is not RUNNING after all.
Result<bool> recover(Device& dev) {
  auto state = query_device_state(dev);
  if (state && *state == State::kRunning) return false;
  if (state && *state == State::kStop && request_device_state(dev, State::kRunning)) return false;
  if (auto r = dev.reset(); !r)
    return fail(r.error().code, "reset failed: " + r.error().describe());
  state = query_device_state(dev);
  if (!state)
    return fail(state.error().code, "after a reset, GET failed: " + state.error().describe());
  if (*state != State::kRunning)
    return fail(EIO, fmt::format("after a reset the device is in {}, not RUNNING",
                                 uapi::state_name(*state)));
  return true;
}

// Writes the reproducer of `input`; its path, or "" with the reason in `detail`.
std::string save_reproducer(const FuzzResumeOptions& o, const std::string& device,
                            const std::vector<std::byte>& config, std::string_view kind,
                            std::uint64_t input, const std::vector<std::byte>& bytes,
                            std::string& detail) {
  if (o.out_dir.empty()) return "";
  SavedPayload p{device, bytes, config};
  const auto stream = write_payload_stream(p, o.buffer_size);
  const std::string path = fmt::format("{}/{}-{:06}.vfio-mig", o.out_dir, kind, input);
  auto w = write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(stream.data()), stream.size()));
  if (!w) {
    detail += "; its reproducer could not be written: " + w.error().describe();
    return "";
  }
  return path;
}

std::string quote_troubles(const std::vector<KernelTrouble>& troubles) {
  std::string out = fmt::format("{} kernel log trouble line(s)", troubles.size());
  for (std::size_t i = 0; i < troubles.size() && i < kQuotedTroubles; ++i)
    out += fmt::format("; [{}] {}", troubles[i].kind, troubles[i].message);
  return out;
}

class Fuzzer {
 public:
  explicit Fuzzer(Run& run) : run_(run), o_(run.options), dev_(run.watched) {}

  void run() {
    const auto start = Clock::now();
    if (!prepare()) return;
    std::uint64_t since_health = 0;
    for (std::uint64_t i = 0;; ++i) {
      const auto elapsed = Clock::now() - start;
      if ((o_.max_inputs && i >= o_.max_inputs) || (o_.duration.count() && elapsed >= o_.duration))
        break;
      if (o_.cancel && o_.cancel->load()) {
        run_.record([](FuzzResumeReport& r, Current&) { r.cancelled = true; });
        break;
      }
      if (!one_input(i)) return finish(start);
      last_input_ = i;
      if (o_.on_progress) o_.on_progress(progress(Clock::now() - start));
      if (o_.health_every && ++since_health == o_.health_every) {
        since_health = 0;
        if (!health(i)) return finish(start);
      }
    }
    // The last check loads the state the device had before the first input (accepted inputs may
    // have left it any state), so that fuzzing leaves it as it was.
    (void)health(std::nullopt, original_);
    finish(start);
  }

 private:
  // The seeds, and the device's config blob for reproducers.
  bool prepare() {
    auto saved = save_state(dev_, o_.session);
    if (!saved)
      return stop_with(
          {saved.error().code, "the first save of the device failed: " + saved.error().describe()});
    auto own = read_payload_stream(*saved);
    if (!own) return stop_with(own.error());
    original_ = std::move(*saved);
    run_.config = own->config;
    seeds_ = o_.corpus.empty() ? std::vector<SavedPayload>{std::move(*own)} : o_.corpus;
    for (const auto& s : seeds_) layouts_.push_back(recognize_payload(s.data));
    run_.record([&](FuzzResumeReport& r, Current& c) {
      r.seeds = seeds_.size();
      r.layout = layouts_.front().name;
      c.doing.clear();
    });
    return true;
  }

  bool stop_with(Error e) {
    std::lock_guard lock(run_.mu);
    run_.error = std::move(e);
    return false;
  }

  bool one_input(std::uint64_t i) {
    ResumeMutator& m = run_.mutator;
    const std::size_t k = m.below(seeds_.size());
    const std::size_t other = m.below(seeds_.size());
    auto mutant = m.mutate(seeds_[k].data, layouts_[k],
                           other == k ? std::span<const std::byte>() : seeds_[other].data);
    run_.record([&](FuzzResumeReport&, Current& c) {
      c = Current{i, mutant.how, mutant.bytes, fmt::format("input {}", i)};
    });
    auto attempt = feed(dev_, mutant.bytes, o_.buffer_size);
    if (!attempt) return unrecovered(i, mutant, attempt.error().describe());
    run_.record([&](FuzzResumeReport& r, Current&) {
      ++r.inputs;
      ++r.outcomes[attempt->outcome];
      if (attempt->outcome == ResumeOutcome::kRefused)
        ++r.refused_errnos[errno_name(attempt->error)];
      if (attempt->outcome == ResumeOutcome::kWriteRefused)
        ++r.write_errnos[errno_name(attempt->error)];
      if (attempt->outcome == ResumeOutcome::kAccepted) {
        ++r.accepted_corrupt;
        if (r.accepted.size() < o_.accepted_reproducers)
          r.accepted.push_back(
              finding("accepted-corrupt", i, mutant,
                      "RESUMING -> STOP succeeded: the device took it as its state"));
      }
    });
    check_kernel_log(i, &mutant);
    auto back = recover(dev_);
    if (!back) return unrecovered(i, mutant, "not back in RUNNING: " + back.error().describe());
    if (*back) run_.record([](FuzzResumeReport& r, Current&) { ++r.resets; });
    return true;
  }

  // A save and load round trip, or with `restore`, a load of that stream.
  bool health(std::optional<std::uint64_t> after, std::vector<std::byte> restore = {}) {
    const bool restoring = !restore.empty();
    run_.record([&](FuzzResumeReport&, Current& c) {
      c.input.reset();
      c.doing = restoring ? "the load of the device's first save" : "the health round trip";
    });
    auto ok = restoring ? load_state(dev_, o_, std::move(restore)) : round_trip(dev_, o_);
    if (last_input_) check_kernel_log(*last_input_, nullptr);
    run_.record([&](FuzzResumeReport& r, Current& c) {
      ++r.health_checks;
      if (!ok) {
        FuzzFinding f{"unrecovered", after, "", "", ""};
        f.detail =
            fmt::format("{}{} failed: {}", c.doing,
                        after ? fmt::format(" after input {}", *after) : "", ok.error().describe());
        r.findings.push_back(std::move(f));
      }
      c.doing.clear();
    });
    return ok.has_value();
  }

  // Trouble since the last look: after input `i` (with its reproducer), or during a health check.
  void check_kernel_log(std::uint64_t i, const ResumeMutator::Mutant* mutant) {
    if (!run_.log) return;
    auto troubles = run_.log->since_mark();
    if (troubles && troubles->empty()) return;
    std::string detail =
        troubles ? quote_troubles(*troubles)
                 : "kernel log unreadable, no longer watched: " + troubles.error().describe();
    if (!troubles) run_.log.reset();
    run_.record([&](FuzzResumeReport& r, Current& c) {
      if (mutant)
        r.findings.push_back(finding("kernel-log", i, *mutant, detail));
      else
        r.findings.push_back({"kernel-log", std::nullopt, "",
                              fmt::format("during {} after input {}: {}", c.doing, i, detail), ""});
    });
  }

  bool unrecovered(std::uint64_t i, const ResumeMutator::Mutant& mutant, std::string detail) {
    run_.record([&](FuzzResumeReport& r, Current&) {
      r.findings.push_back(finding("unrecovered", i, mutant, std::move(detail)));
    });
    return false;
  }

  FuzzFinding finding(std::string kind, std::uint64_t i, const ResumeMutator::Mutant& mutant,
                      std::string detail) {
    FuzzFinding f{std::move(kind), i, mutant.how, std::move(detail), ""};
    f.reproducer = save_reproducer(o_, dev_.name(), run_.config, f.kind, i, mutant.bytes, f.detail);
    return f;
  }

  FuzzProgress progress(Clock::duration elapsed) {
    std::lock_guard lock(run_.mu);
    const auto& r = run_.report;
    auto count = [&](ResumeOutcome o) { return r.outcomes.contains(o) ? r.outcomes.at(o) : 0; };
    return {r.inputs,
            count(ResumeOutcome::kAccepted),
            count(ResumeOutcome::kRefused),
            count(ResumeOutcome::kWriteRefused),
            r.findings.size(),
            elapsed};
  }

  void finish(Clock::time_point start) {
    run_.record([&](FuzzResumeReport& r, Current&) { r.elapsed = Clock::now() - start; });
  }

  Run& run_;
  const FuzzResumeOptions& o_;
  Device& dev_;
  std::vector<std::byte> original_;  // the first save's stream
  std::optional<std::uint64_t> last_input_;
  std::vector<SavedPayload> seeds_;
  std::vector<PayloadLayout> layouts_;
};

}  // namespace

std::string_view outcome_name(ResumeOutcome o) {
  switch (o) {
    case ResumeOutcome::kAccepted:
      return "accepted";
    case ResumeOutcome::kRefused:
      return "refused";
    case ResumeOutcome::kWriteRefused:
      return "write-refused";
    case ResumeOutcome::kHang:
      return "hang";
  }
  return "?";
}

Result<FuzzResumeReport> fuzz_resume(Device& dev, FuzzResumeOptions options) {
  if (!options.max_inputs && !options.duration.count())
    return fail(EINVAL, "fuzz-resume: give a number of inputs or a duration");
  if (options.buffer_size == 0) return fail(EINVAL, "fuzz-resume: buffer size must not be 0");
  if (options.call_timeout <= std::chrono::milliseconds::zero())
    return fail(EINVAL, "fuzz-resume: the call timeout must be positive");
  auto run = std::make_shared<Run>(dev, std::move(options));
  const FuzzResumeOptions& o = run->options;
  if (o.kernel_log) {
    auto log = KernelLog::open(*o.kernel_log, o.kernel_log_ignore);
    if (!log) return std::unexpected(log.error());
    run->log = std::make_unique<KernelLog>(std::move(*log));
  }
  run->report.device = dev.name();
  run->report.seed = o.seed;
  const auto start = Clock::now();
  const auto hung = run_watching(run->watched, o.call_timeout, [run] { Fuzzer(*run).run(); });
  std::lock_guard lock(run->mu);
  if (run->error) return std::unexpected(*run->error);
  if (!hung) return run->report;
  run->abandoned = true;
  FuzzResumeReport r = run->report;
  const Current& c = run->current;
  FuzzFinding f{"hang", c.input, c.mutation, "", ""};
  f.detail = fmt::format(
      "{} did not return within {:g} s, during {}; its thread is abandoned and "
      "the device not touched again",
      hung->what, static_cast<double>(o.call_timeout.count()) / 1000, c.doing);
  if (c.input) {
    ++r.inputs;
    ++r.outcomes[ResumeOutcome::kHang];
    f.reproducer = save_reproducer(o, r.device, run->config, "hang", *c.input, c.bytes, f.detail);
  }
  r.findings.push_back(std::move(f));
  r.device_abandoned = true;
  r.elapsed = Clock::now() - start;
  return r;
}

}  // namespace vfio::faults
