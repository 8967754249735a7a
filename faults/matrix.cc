#include "faults/matrix.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "core/kernel_log.h"
#include "core/state_machine.h"
#include "faults/device_checks.h"
#include "faults/isolation.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

using Clock = std::chrono::steady_clock;
using uapi::State;

// A word for a POSIX shell, quoted when it needs to be.
std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_.,:/=+@%") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Case ids go on command lines: keep them free of shell metacharacters.
std::string id_part(std::string s) {
  std::replace(s.begin(), s.end(), '>', '-');
  return s;
}

struct Arc {
  State from, to;
};
std::optional<Arc> arc_of(const std::string& where) {
  if (!where.starts_with("set:")) return std::nullopt;
  auto gt = where.find('>');
  if (gt == std::string::npos) return std::nullopt;
  auto from = uapi::parse_state(where.substr(4, gt - 4));
  auto to = uapi::parse_state(where.substr(gt + 1));
  if (!from || !to) return std::nullopt;
  return Arc{*from, *to};
}

// The faults worth trying on one traced operation. `first`: the operation's first call of its
// kind, where the slow faults (hang, delay) are tried once rather than at every call.
std::vector<std::string> faults_for(const TraceEntry& e, bool first, std::uint64_t mig_flags,
                                    bool modelled) {
  std::vector<std::string> out;
  const std::string half = fmt::format("short={}", e.bytes / 2);
  const bool moved = e.bytes > 0;
  switch (e.op) {
    case Op::kGet:
    case Op::kProbe:
      out = {"errno=EIO"};
      if (first) out.insert(out.end(), {"errno=EINTR", "hang"});
      break;
    case Op::kSet: {
      out = {"errno=EIO", "async-reset"};
      // Only a model can be put in ERROR: a real device lands only where the uAPI walks it.
      if (modelled) out.insert(out.begin() + 1, "land=ERROR");
      if (auto arc = arc_of(e.where)) {
        auto path = transition_path(arc->from, arc->to, mig_flags);
        for (std::size_t i = 0; i + 1 < path.size(); ++i)
          out.push_back(fmt::format("land={}", uapi::state_short_name(path[i])));
      }
      if (first) out.insert(out.end(), {"errno=EINVAL", "errno=EINTR", "delay=1ms", "hang"});
      break;
    }
    case Op::kReset:
    case Op::kPrecopyInfo:
      out = {"errno=EIO"};
      break;
    case Op::kClose:
      out = {"errno=EIO", "async-reset"};
      break;
    case Op::kRead:
      out = {"errno=EIO", "eof", "truncate", "async-reset"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first)
        out.insert(out.end(), {"errno=ENODEV", "errno=EINTR", "errno=EAGAIN", "delay=1ms", "hang"});
      break;
    case Op::kWrite:
      out = {"errno=EIO", "truncate", "async-reset"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.insert(out.end(), {"errno=ENOSPC", "errno=EINTR", "errno=EAGAIN"});
      if (first && modelled) out.push_back("land=ERROR");
      if (first) out.push_back("hang");
      break;
    case Op::kConfigRead:
    case Op::kConfigWrite:
      out = {"errno=EIO", "errno=EINTR"};
      if (moved) out.push_back(half);
      break;
    case Op::kSend:
      out = {"errno=EPIPE", "truncate"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.insert(out.end(), {"errno=EINTR", "delay=1ms", "hang"});
      break;
    case Op::kRecv:
      out = {"errno=EIO", "eof", "truncate"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.insert(out.end(), {"errno=EINTR", "hang"});
      break;
    default:
      break;
  }
  return out;
}

std::string rule_for(const TraceEntry& e, const std::string& when, const std::string& fault) {
  return fmt::format("{} side={} {} -> {}", e.where, side_name(e.side), when, fault);
}

std::string op_label(const TraceEntry& e) {
  return fmt::format("{} {}", side_name(e.side), e.where);
}

CaseSpec random_case(Scenario scenario, const std::vector<TraceEntry>& trace, const CaseConfig& cfg,
                     std::uint64_t seed, std::uint64_t k) {
  std::mt19937_64 rng(seed * 1000003ULL + k);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  CaseSpec c;
  c.id = fmt::format("random.{}.{}", seed, k);
  c.scenario = scenario;
  c.operation = "random";
  c.fault = "multi";
  c.plan = fmt::format("seed {}\n", seed + k);
  const std::size_t rules = 1 + pick(3);
  for (std::size_t i = 0; i < rules && !trace.empty(); ++i) {
    const TraceEntry& e = trace[pick(trace.size())];
    auto faults = faults_for(e, true, case_mig_flags(cfg), cfg.devices.empty());
    std::erase(faults, "hang");  // one hang is enough for a case; keep random runs quick
    if (faults.empty()) continue;
    std::string fault = faults[pick(faults.size())];
    std::string when;
    switch (pick(4)) {
      case 0:
        when = fmt::format("prob=0.{}", 1 + pick(3));
        break;
      case 1:
        when = fmt::format("every={} times=2", 2 + pick(3));
        break;
      default:
        when = fmt::format("nth={}", e.index);
    }
    c.plan += rule_for(e, when, fault) + "\n";
  }
  if (pick(8) == 0) c.plan += "reset -> errno=EIO\n";  // a reset that fails: broken devices
  return c;
}

// A case's result as a child sends it to the matrix: length-prefixed fields.
class Encoder {
 public:
  void num(std::uint64_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(std::string_view v) {
    num(v.size());
    out_ += v;
  }
  void strs(const std::vector<std::string>& v) {
    num(v.size());
    for (const auto& x : v) str(x);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  std::uint64_t num() {
    std::uint64_t v = 0;
    if (in_.size() < sizeof v) return bad();
    std::memcpy(&v, in_.data(), sizeof v);
    in_.remove_prefix(sizeof v);
    return v;
  }
  std::string str() {
    const std::uint64_t n = num();
    if (n > in_.size()) return bad(), std::string();
    std::string v(in_.substr(0, n));
    in_.remove_prefix(n);
    return v;
  }
  std::vector<std::string> strs() {
    std::vector<std::string> v(std::min<std::uint64_t>(num(), in_.size()));
    for (auto& x : v) x = str();
    return v;
  }
  bool ok() const { return ok_ && in_.empty(); }

 private:
  std::uint64_t bad() {
    ok_ = false;
    in_ = {};
    return 0;
  }
  std::string_view in_;
  bool ok_ = true;
};

std::string encode(const CaseResult& r) {
  Encoder e;
  e.num(static_cast<std::uint64_t>(r.judgement.verdict));
  e.strs(r.judgement.problems);
  e.strs(r.judgement.notes);
  e.num(r.fired.size());
  for (const auto& f : r.fired) {
    e.str(f.rule);
    e.num(static_cast<std::uint64_t>(f.side));
    e.str(f.op);
    e.num(f.call);
    e.num(f.op_call);
  }
  e.str(r.error);
  e.num(static_cast<std::uint64_t>(r.elapsed.count()));
  return e.take();
}

// Fills the child's part of `r`; false when the record is malformed.
bool decode(std::string_view record, CaseResult& r) {
  Decoder d(record);
  r.judgement.verdict = static_cast<Verdict>(d.num());
  r.judgement.problems = d.strs();
  r.judgement.notes = d.strs();
  r.fired.resize(std::min<std::uint64_t>(d.num(), record.size()));
  for (auto& f : r.fired) {
    f.rule = d.str();
    f.side = static_cast<Side>(d.num());
    f.op = d.str();
    f.call = d.num();
    f.op_call = d.num();
  }
  r.error = d.str();
  r.elapsed = std::chrono::nanoseconds(d.num());
  return d.ok();
}

// The verdict on a case whose child did not report it.
CaseResult unreported(const MatrixCase& item, const ChildEnd& end) {
  CaseResult r{item.spec, item.cfg, {}, {}, {}, {}, repro_command(item.spec, item.cfg)};
  switch (end.kind) {
    case ChildEnd::kCrashed:
      r.judgement = {
          Verdict::kCrashed, {"the case's process died of " + signal_name(end.signal)}, {}};
      break;
    case ChildEnd::kTimeout:
      r.judgement = {Verdict::kTimeout,
                     {"the case did not end after it was cancelled; its process was killed"},
                     {}};
      break;
    case ChildEnd::kKernelHang:
      r.judgement = {Verdict::kKernelHang, {"kernel hang: " + end.describe()}, {}};
      break;
    case ChildEnd::kExited:
      r.judgement = {
          Verdict::kCrashed,
          {fmt::format("the case's process {} without reporting the case", end.describe())},
          {}};
      break;
  }
  return r;
}

// Runs `todo` (indices into `items`) in child processes, `batch` per child, until each has a
// result or a case left a stuck process behind (then returns that case's index).
std::optional<std::size_t> run_isolated_batch(
    const std::vector<MatrixCase>& items, std::vector<std::size_t> todo,
    const MatrixOptions& options, const std::function<void(std::size_t, CaseResult)>& done) {
  IsolationLimits limits;
  // The child's own watchdog cancels at the timeout and gives up `cancel_grace` later; a child
  // still silent a little after that is killed.
  limits.deadline =
      options.watchdog.timeout + options.watchdog.cancel_grace + std::chrono::milliseconds(2'000);
  limits.kill_grace = options.kill_grace;
  while (!todo.empty()) {
    std::size_t reported = 0;
    auto end = run_isolated(
        [&](int fd) {
          // One mount for the child's cases (its own: the parent's has no server here).
          std::shared_ptr<sim::SimMount> mount;
          if (options.base.transport != devices::Transport::kDirect)
            mount = devices::hold_mount().value_or(nullptr);
          for (std::size_t i : todo) {
            if (options.in_child) options.in_child(items[i].spec);
            CaseResult r = run_watched(items[i].spec, items[i].cfg, options.watchdog);
            // A case that never ended: let the parent's watchdog see why it cannot end.
            if (r.hung) std::this_thread::sleep_for(std::chrono::hours(24));
            if (!write_record(fd, encode(r))) return;
          }
        },
        [&](std::string record) {
          if (reported >= todo.size()) return;
          const MatrixCase& item = items[todo[reported]];
          CaseResult r{item.spec, item.cfg, {}, {}, {}, {}, repro_command(item.spec, item.cfg)};
          if (!decode(record, r))
            r.judgement = {Verdict::kCrashed, {"the case's process sent a malformed result"}, {}};
          done(todo[reported++], std::move(r));
        },
        limits);
    if (!end) {
      for (std::size_t k = reported; k < todo.size(); ++k) {
        CaseResult r{items[todo[k]].spec,
                     items[todo[k]].cfg,
                     {},
                     {},
                     {},
                     {},
                     repro_command(items[todo[k]].spec, items[todo[k]].cfg)};
        r.judgement = {Verdict::kFail, {"cannot start its process: " + end.error().describe()}, {}};
        done(todo[k], std::move(r));
      }
      return std::nullopt;
    }
    if (reported == todo.size()) break;
    const std::size_t culprit = todo[reported];
    done(culprit, unreported(items[culprit], *end));
    if (end->kind == ChildEnd::kKernelHang) return culprit;
    todo.erase(todo.begin(), todo.begin() + static_cast<std::ptrdiff_t>(reported + 1));
  }
  return std::nullopt;
}

// The kernel-health oracle on one case: trouble logged since the previous case fails it.
void judge_kernel_log(KernelLog& log, CaseResult& r) {
  auto trouble = log.since_mark();
  if (!trouble) {
    r.judgement.notes.push_back("kernel log unreadable: " + trouble.error().describe());
    return;
  }
  if (trouble->empty()) return;
  if (!is_failure(r.judgement.verdict)) r.judgement.verdict = Verdict::kFail;
  for (const auto& t : *trouble)
    r.judgement.problems.push_back(fmt::format("kernel log: {}: {}", t.kind, t.message));
}

}  // namespace

std::string repro_command(const CaseSpec& spec, const CaseConfig& cfg) {
  std::string cmd = fmt::format("vfio-mig faults --matrix {}", scenario_name(spec.scenario));
  if (cfg.devices.empty()) cmd += " --profile " + cfg.profile;
  for (const auto& d : cfg.devices) cmd += " " + shell_quote(d);
  if (!cfg.check.empty()) cmd += " --check " + shell_quote(cfg.check);
  // The kernel log as the run had it (named kernel devices read /dev/kmsg unless told otherwise).
  if (cfg.kernel_log) cmd += " --kernel-log " + shell_quote(*cfg.kernel_log);
  const bool kernel =
      std::ranges::any_of(cfg.devices, [](const std::string& d) { return !d.starts_with("sim:"); });
  if (!cfg.kernel_log && kernel) cmd += " --kernel-log none";
  if (cfg.kernel_log_ignore) cmd += " --kernel-log-ignore " + shell_quote(*cfg.kernel_log_ignore);
  if (cfg.transport != devices::Transport::kDirect)
    cmd += fmt::format(" --transport {}", devices::transport_name(cfg.transport));
  if (cfg.state_size) cmd += fmt::format(" --size {}", *cfg.state_size);
  if (cfg.buffer_size != CaseConfig{}.buffer_size)
    cmd += fmt::format(" --buffer-size {}", cfg.buffer_size);
  return cmd + " --case " + spec.id;
}

CaseResult run_watched(const CaseSpec& spec, const CaseConfig& cfg, const WatchdogOptions& w) {
  CaseResult result{spec, cfg, {}, {}, {}, {}, repro_command(spec, cfg)};
  auto plan = parse_plan(spec.plan);
  if (!plan) {
    result.judgement = {Verdict::kFail, {"bad plan: " + plan.error().message}, {}};
    return result;
  }
  struct Shared {
    explicit Shared(Plan p) : control(std::move(p)) {}
    CaseControl control;
    CaseRun run;
  };
  // The case's thread may outlive this call (a case that never ends is abandoned): it keeps
  // what it uses alive.
  auto shared = std::make_shared<Shared>(std::move(*plan));
  auto watched = run_under_watchdog(
      shared->control, [shared, spec, cfg] { shared->run = run_case(spec, cfg, shared->control); },
      w);
  result.elapsed = watched.elapsed;
  if (watched.hung) {
    result.hung = true;
    result.judgement = {
        Verdict::kFail, {"hang: the case did not finish after it was cancelled"}, {}};
    return result;
  }
  CaseRun& run = shared->run;
  if (!run.setup_error.empty()) {
    result.judgement = {Verdict::kFail, {"setup failed: " + run.setup_error}, {}};
    return result;
  }
  run.observation.timed_out = watched.timed_out;
  result.judgement = judge(run.observation);
  // The user's own check, once the case closed the devices (a group opens only once).
  if (!cfg.check.empty()) {
    auto checked =
        run_check_command(cfg.check,
                          {{"VFIO_MIG_CASE", spec.id},
                           {"VFIO_MIG_SCENARIO", std::string(scenario_name(spec.scenario))},
                           {"VFIO_MIG_OUTCOME", run.observation.success ? "success" : "failed"},
                           {"VFIO_MIG_SRC", cfg.devices.empty() ? "" : cfg.devices[0]},
                           {"VFIO_MIG_DST", cfg.devices.size() < 2 ? "" : cfg.devices[1]}},
                          w.timeout);
    if (!checked) {
      result.judgement.problems.push_back(checked.error().message);
      if (!is_failure(result.judgement.verdict)) result.judgement.verdict = Verdict::kFail;
    }
  }
  result.fired = std::move(run.fired);
  if (!spec.plan.empty() && result.fired.empty())
    result.judgement.notes.push_back(
        "the planned fault never fired: the devices did not repeat the clean run's calls");
  result.error = run.observation.error;
  return result;
}

Result<Enumeration> enumerate_cases(Scenario scenario, const CaseConfig& cfg, bool systematic,
                                    std::uint64_t random, std::uint64_t seed) {
  if (random > kMaxRandomCases)
    return fail(EINVAL, fmt::format("at most {} random cases, not {}", kMaxRandomCases, random));
  if (!scenario_applies(scenario, cfg)) return Enumeration{};
  CaseConfig rec = cfg;
  rec.record = true;
  // The cancel scenario cancels a migration: its operations are the migration's.
  CaseSpec clean;
  clean.id = "clean";
  clean.scenario = scenario == Scenario::kCancel ? Scenario::kMigrate : scenario;
  CaseControl control{Plan{}};
  CaseRun run = run_case(clean, rec, control);
  if (!run.setup_error.empty()) return fail(EIO, run.setup_error);
  if (!run.observation.success)
    return fail(EIO, fmt::format("the clean {} run failed: {}", scenario_name(scenario),
                                 run.observation.error));
  // Every operation gets its cases: a run this long would make millions.
  if (run.trace_overflowed)
    return fail(EOVERFLOW, fmt::format("the clean {} run of {} took more than {} operations; a "
                                       "smaller state size or a larger buffer makes fewer",
                                       scenario_name(scenario), cfg.profile, Injector::kMaxTrace));
  Enumeration out;
  out.trace = run.trace;
  // Each side's calls come in a fixed order, but the two sides interleave as the threads run:
  // sort by side so case order (and so shards and random picks) is the same on every run.
  std::stable_sort(out.trace.begin(), out.trace.end(),
                   [](const TraceEntry& a, const TraceEntry& b) { return a.side < b.side; });
  const std::uint64_t flags = case_mig_flags(cfg);
  auto add = [&](std::string id, std::string plan, std::string op, std::string fault) {
    CaseSpec c;
    c.id = std::move(id);
    c.scenario = scenario;
    c.plan = std::move(plan);
    c.operation = std::move(op);
    c.fault = std::move(fault);
    out.cases.push_back(std::move(c));
  };
  if (systematic) {
    add("clean", "", "-", "none");
    if (scenario == Scenario::kCancel) {
      for (Side side : {Side::kSource, Side::kDestination}) {
        std::uint64_t n = side == Side::kSource ? run.progress_src : run.progress_dst;
        for (std::uint64_t k = 1; k <= n; ++k) {
          add(fmt::format("{}.progress.{}", side_name(side), k), "",
              fmt::format("{} progress", side_name(side)), "cancel");
          out.cases.back().cancel_side = side;
          out.cases.back().cancel_at_progress = k;
        }
      }
      for (const auto& e : out.trace) {
        add(fmt::format("{}.{}.{}.cancel", side_name(e.side), id_part(e.where), e.index),
            rule_for(e, fmt::format("nth={}", e.index), "cancel"), op_label(e), "cancel");
      }
    } else {
      for (const auto& e : out.trace) {
        for (const auto& f : faults_for(e, e.index == 1, flags, cfg.devices.empty())) {
          add(fmt::format("{}.{}.{}.{}", side_name(e.side), id_part(e.where), e.index, f),
              rule_for(e, fmt::format("nth={}", e.index), f), op_label(e), f);
        }
      }
    }
  }
  for (std::uint64_t k = 0; k < random; ++k)
    out.cases.push_back(random_case(scenario, out.trace, cfg, seed, k));
  return out;
}

Result<std::pair<std::uint64_t, std::uint64_t>> parse_random_case_id(std::string_view id) {
  std::uint64_t seed = 0, k = 0;
  const char* end = id.data() + id.size();
  std::from_chars_result r{end, std::errc::invalid_argument};
  if (id.starts_with("random.")) r = std::from_chars(id.data() + 7, end, seed);
  if (r.ec == std::errc() && r.ptr < end && *r.ptr == '.')
    r = std::from_chars(r.ptr + 1, end, k);
  else if (r.ec == std::errc())
    r.ec = std::errc::invalid_argument;
  if (r.ec != std::errc() || r.ptr != end)
    return fail(EINVAL, fmt::format("bad random case id '{}' (random.SEED.K, each a number below "
                                    "2^64)",
                                    id));
  return std::pair{seed, k};
}

Result<CaseSpec> find_case(Scenario scenario, const CaseConfig& cfg, const std::string& id) {
  if (id.starts_with("random.")) {
    auto parsed = parse_random_case_id(id);
    if (!parsed) return std::unexpected(parsed.error());
    auto [seed, k] = *parsed;
    auto e = enumerate_cases(scenario, cfg, false, 0, seed);
    if (!e) return std::unexpected(e.error());
    return random_case(scenario, e->trace, cfg, seed, k);
  }
  auto e = enumerate_cases(scenario, cfg, true, 0, 0);
  if (!e) return std::unexpected(e.error());
  for (auto& c : e->cases)
    if (c.id == id) return c;
  return fail(ENOENT, fmt::format("no case '{}' in the {} matrix of profile {}", id,
                                  scenario_name(scenario), cfg.profile));
}

Result<std::vector<MatrixCase>> list_cases(const MatrixOptions& options) {
  std::vector<MatrixCase> items;
  for (const auto& profile : options.profiles) {
    for (Scenario s : options.scenarios) {
      CaseConfig cfg = options.base;
      cfg.profile = profile;
      if (options.only_case) {
        auto c = find_case(s, cfg, *options.only_case);
        if (!c) return std::unexpected(c.error());
        items.push_back({std::move(*c), cfg});
        continue;
      }
      auto e = enumerate_cases(s, cfg, options.systematic, options.random, options.seed);
      if (!e)
        return fail(e.error().code,
                    fmt::format("{} on {}: {}", scenario_name(s), profile, e.error().message));
      for (auto& c : e->cases) items.push_back({std::move(c), cfg});
    }
  }
  if (options.shard_count > 1) {
    std::vector<MatrixCase> mine;
    for (std::size_t i = 0; i < items.size(); ++i)
      if (i % options.shard_count == options.shard_index) mine.push_back(std::move(items[i]));
    items = std::move(mine);
  }

  return items;
}

Result<MatrixResult> run_matrix(const MatrixOptions& options) {
  const auto start = Clock::now();
  auto listed = list_cases(options);
  if (!listed) return std::unexpected(listed.error());
  std::vector<MatrixCase> items = std::move(*listed);
  MatrixResult result;
  std::vector<std::optional<CaseResult>> results(items.size());
  unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  if (!options.base.devices.empty()) jobs = 1;  // every case uses the same named devices
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, std::max<std::size_t>(1, items.size())));
  result.jobs = jobs;
  const std::size_t batch = std::max<std::size_t>(1, options.batch);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::size_t done = 0;
  std::mutex mu;
  auto record = [&](std::size_t i, CaseResult r) {
    std::lock_guard lock(mu);
    results[i] = std::move(r);
    ++done;
    if (options.on_result) options.on_result(*results[i], done, items.size());
  };
  // Each worker reads the kernel log through its own descriptor: its own mark.
  auto open_log = [&]() -> Result<std::optional<KernelLog>> {
    if (!options.base.kernel_log) return std::optional<KernelLog>();
    auto log = KernelLog::open(*options.base.kernel_log, options.base.kernel_log_ignore);
    if (!log) return std::unexpected(log.error());
    return std::optional<KernelLog>(std::move(*log));
  };
  if (auto probe = open_log(); !probe) return std::unexpected(probe.error());
  // Without isolation the cases share this process's mount, held for the run.
  std::shared_ptr<sim::SimMount> mount;
  if (!options.batch && options.base.transport != devices::Transport::kDirect)
    mount = devices::hold_mount().value_or(nullptr);
  // Batches' children are forked from these threads.
  run_forking_threads(jobs, [&] {
    auto log = open_log();
    auto checked = [&](std::size_t i, CaseResult r) {
      if (log && *log) judge_kernel_log(**log, r);
      record(i, std::move(r));
    };
    while (!stop) {
      const std::size_t first = next.fetch_add(options.batch ? batch : 1);
      if (first >= items.size()) return;
      if (!options.batch) {
        checked(first, run_watched(items[first].spec, items[first].cfg, options.watchdog));
        continue;
      }
      std::vector<std::size_t> todo;
      for (std::size_t i = first; i < std::min(items.size(), first + batch); ++i) todo.push_back(i);
      if (auto stuck = run_isolated_batch(items, std::move(todo), options, checked)) {
        std::lock_guard lock(mu);
        if (!stop.exchange(true))
          result.stopped = fmt::format("case {} left a process stuck in the kernel; reproduce: {}",
                                       items[*stuck].spec.id, results[*stuck]->repro);
      }
    }
  });
  for (auto& r : results) {
    if (r)
      result.cases.push_back(std::move(*r));
    else
      ++result.not_run;
  }
  result.wall = Clock::now() - start;
  return result;
}

}  // namespace vfio::faults
