#include "faults/matrix.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "core/state_machine.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

using Clock = std::chrono::steady_clock;
using uapi::State;

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
std::vector<std::string> faults_for(const TraceEntry& e, bool first, std::uint64_t mig_flags) {
  std::vector<std::string> out;
  const std::string half = fmt::format("short={}", e.bytes / 2);
  const bool moved = e.bytes > 0;
  switch (e.op) {
    case Op::kGet:
    case Op::kProbe:
      out = {"errno=EIO"};
      if (first) out.push_back("hang");
      break;
    case Op::kSet: {
      out = {"errno=EIO", "land=ERROR", "async-reset"};
      if (auto arc = arc_of(e.where)) {
        auto path = transition_path(arc->from, arc->to, mig_flags);
        for (std::size_t i = 0; i + 1 < path.size(); ++i)
          out.push_back(fmt::format("land={}", uapi::state_short_name(path[i])));
      }
      if (first) out.insert(out.end(), {"errno=EINVAL", "delay=1ms", "hang"});
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
      if (first) out.insert(out.end(), {"errno=ENODEV", "errno=EAGAIN", "delay=1ms", "hang"});
      break;
    case Op::kWrite:
      out = {"errno=EIO", "truncate", "async-reset"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.insert(out.end(), {"errno=ENOSPC", "land=ERROR", "hang"});
      break;
    case Op::kConfigRead:
    case Op::kConfigWrite:
      out = {"errno=EIO"};
      if (moved) out.push_back(half);
      break;
    case Op::kSend:
      out = {"errno=EPIPE", "truncate"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.insert(out.end(), {"delay=1ms", "hang"});
      break;
    case Op::kRecv:
      out = {"errno=EIO", "eof", "truncate"};
      if (moved) out.insert(out.end(), {half, "corrupt=1", "drop=1", "dup=1"});
      if (first) out.push_back("hang");
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

std::uint64_t flags_of(const CaseConfig& cfg) {
  const sim::Profile* p = sim::find_profile(cfg.profile);
  return p ? p->mig_flags : 0;
}

CaseSpec random_case(Scenario scenario, const std::vector<TraceEntry>& trace,
                     std::uint64_t mig_flags, std::uint64_t seed, std::uint64_t k) {
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
    auto faults = faults_for(e, true, mig_flags);
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

}  // namespace

std::string repro_command(const CaseSpec& spec, const CaseConfig& cfg) {
  std::string cmd = fmt::format("vfio-mig faults --matrix {} --profile {}",
                                scenario_name(spec.scenario), cfg.profile);
  if (cfg.transport != Transport::kDirect)
    cmd += fmt::format(" --transport {}", transport_name(cfg.transport));
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
  result.fired = std::move(run.fired);
  result.error = run.observation.error;
  return result;
}

Result<Enumeration> enumerate_cases(Scenario scenario, const CaseConfig& cfg, bool systematic,
                                    std::uint64_t random, std::uint64_t seed) {
  if (random > kMaxRandomCases)
    return fail(EINVAL, fmt::format("at most {} random cases, not {}", kMaxRandomCases, random));
  if (!scenario_applies(scenario, cfg.profile)) return Enumeration{};
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
  const std::uint64_t flags = flags_of(cfg);
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
        for (const auto& f : faults_for(e, e.index == 1, flags)) {
          add(fmt::format("{}.{}.{}.{}", side_name(e.side), id_part(e.where), e.index, f),
              rule_for(e, fmt::format("nth={}", e.index), f), op_label(e), f);
        }
      }
    }
  }
  for (std::uint64_t k = 0; k < random; ++k)
    out.cases.push_back(random_case(scenario, out.trace, flags, seed, k));
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
    return random_case(scenario, e->trace, flags_of(cfg), seed, k);
  }
  auto e = enumerate_cases(scenario, cfg, true, 0, 0);
  if (!e) return std::unexpected(e.error());
  for (auto& c : e->cases)
    if (c.id == id) return c;
  return fail(ENOENT, fmt::format("no case '{}' in the {} matrix of profile {}", id,
                                  scenario_name(scenario), cfg.profile));
}

Result<MatrixResult> run_matrix(const MatrixOptions& options) {
  const auto start = Clock::now();
  struct Item {
    CaseSpec spec;
    CaseConfig cfg;
  };
  std::vector<Item> items;
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
    std::vector<Item> mine;
    for (std::size_t i = 0; i < items.size(); ++i)
      if (i % options.shard_count == options.shard_index) mine.push_back(std::move(items[i]));
    items = std::move(mine);
  }

  MatrixResult result;
  result.cases.resize(items.size());
  unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, std::max<std::size_t>(1, items.size())));
  result.jobs = jobs;
  std::atomic<std::size_t> next{0};
  std::size_t done = 0;
  std::mutex mu;
  std::vector<std::thread> workers;
  for (unsigned j = 0; j < jobs; ++j) {
    workers.emplace_back([&] {
      for (std::size_t i; (i = next++) < items.size();) {
        CaseResult r = run_watched(items[i].spec, items[i].cfg, options.watchdog);
        std::lock_guard lock(mu);
        result.cases[i] = std::move(r);
        ++done;
        if (options.on_result) options.on_result(result.cases[i], done, items.size());
      }
    });
  }
  for (auto& w : workers) w.join();
  result.wall = Clock::now() - start;
  return result;
}

}  // namespace vfio::faults
