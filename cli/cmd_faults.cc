// vfio-mig faults: the fault matrix (--matrix), or one migration under a fault plan (--plan,
// --fault) with a report of what fired. docs/faults.md describes the plan format and oracles.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "core/feature.h"
#include "core/kernel_log.h"
#include "core/untrusted_text.h"
#include "faults/fault_device.h"
#include "faults/matrix.h"
#include "faults/report.h"
#include "faults/sim_hooks.h"
#include "faults/watchdog.h"
#include "simdev/profile.h"

namespace vfio::cli {
namespace {

using faults::Side;

int failed(std::string_view what) {
  print_error("faults", what);
  return kExitFailed;
}

// --shard K/N (K from 1), else GTEST_SHARD_INDEX / GTEST_TOTAL_SHARDS (index from 0).
Result<std::pair<std::size_t, std::size_t>> shard_of(const ParsedArgs& args) {
  if (auto s = args.value("shard")) {
    auto slash = s->find('/');
    auto k = parse_uint(s->substr(0, slash));
    auto n = slash == std::string::npos ? k : parse_uint(s->substr(slash + 1));
    if (slash == std::string::npos || !k || !n || *n == 0 || *k == 0 || *k > *n)
      return fail(EINVAL, fmt::format("--shard wants K/N with 1 <= K <= N, not '{}'", *s));
    return std::pair{static_cast<std::size_t>(*k - 1), static_cast<std::size_t>(*n)};
  }
  const char* index = std::getenv("GTEST_SHARD_INDEX");
  const char* total = std::getenv("GTEST_TOTAL_SHARDS");
  if (index && total) {
    auto k = parse_uint(index);
    auto n = parse_uint(total);
    if (!k || !n || *n == 0 || *k >= *n)
      return fail(EINVAL, "bad GTEST_SHARD_INDEX / GTEST_TOTAL_SHARDS");
    return std::pair{static_cast<std::size_t>(*k), static_cast<std::size_t>(*n)};
  }
  return std::pair{std::size_t{0}, std::size_t{1}};
}

Result<faults::CaseConfig> case_config(const ParsedArgs& args) {
  faults::CaseConfig cfg;
  if (auto t = args.value("transport")) {
    if (*t == "fuse")
      cfg.transport = devices::Transport::kFuse;
    else if (*t == "fuse-flaky")
      cfg.transport = devices::Transport::kFuseFlaky;
    else if (*t != "direct")
      return fail(EINVAL, fmt::format("--transport is direct, fuse or fuse-flaky, not '{}'", *t));
  }
  if (auto s = args.value("size")) {
    auto v = parse_state_size(*s, "--size");
    if (!v) return std::unexpected(v.error());
    if (*v == 0) return fail(EINVAL, "--size: a case needs some device state, not 0");
    cfg.state_size = *v;
  }
  if (auto b = args.value("buffer-size")) {
    auto v = parse_size(*b);
    if (!v || *v == 0 || *v > (1u << 30))
      return fail(EINVAL, fmt::format("bad --buffer-size '{}'", *b));
    cfg.buffer_size = static_cast<std::size_t>(*v);
  }
  return cfg;
}

Result<faults::WatchdogOptions> watchdog_options(const ParsedArgs& args) {
  faults::WatchdogOptions w;
  if (auto t = args.value("timeout")) {
    auto d = faults::parse_duration(*t);
    if (!d || d->count() == 0) return fail(EINVAL, fmt::format("bad --timeout '{}'", *t));
    w.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  return w;
}

void print_trace(const std::vector<faults::TraceEntry>& trace) {
  for (const auto& e : trace)
    fmt::print("  {} {} #{}{}{}{}\n", faults::side_name(e.side), e.where, e.index,
               e.op == faults::Op::kConfigRead || e.op == faults::Op::kConfigWrite
                   ? fmt::format(" at {:#x}", e.offset)
                   : "",
               e.bytes ? fmt::format(" {} bytes", e.bytes) : "", e.failed ? " (failed)" : "");
}

int run_matrix_command(const ParsedArgs& args) {
  std::string which = *args.value("matrix");
  faults::MatrixOptions options;
  if (which == "all") {
    const auto all = faults::all_scenarios();
    options.scenarios.assign(all.begin(), all.end());
  } else if (auto s = faults::parse_scenario(which)) {
    options.scenarios = {*s};
  } else {
    return usage_error("faults", Error{EINVAL, fmt::format("unknown scenario '{}' (save, load, "
                                                           "migrate, cancel, precopy, "
                                                           "p2p-multi, all)",
                                                           which)});
  }
  const bool named = !args.positionals.empty();
  if (named && args.has("profile"))
    return usage_error("faults", Error{EINVAL,
                                       "--profile is for simulated matrices: with devices "
                                       "given, the devices are what the matrix runs on"});
  if (!named && args.has("check"))
    return usage_error("faults", Error{EINVAL,
                                       "--check runs after each case on devices given: "
                                       "name them (SRC DST)"});
  if (named) {
    for (const auto& d : args.positionals)
      if (auto arg = parse_device_arg(d); !arg) return usage_error("faults", arg.error());
    options.profiles = {"devices"};
  } else if (auto p = args.value("profile")) {
    std::stringstream list(*p);
    for (std::string name; std::getline(list, name, ',');) {
      if (!sim::find_profile(name))
        return usage_error("faults", Error{EINVAL, fmt::format("unknown profile '{}'", name)});
      options.profiles.push_back(name);
    }
  } else {
    for (const auto& p : sim::all_profiles()) options.profiles.emplace_back(p.name);
  }
  auto cfg = case_config(args);
  if (!cfg) return usage_error("faults", cfg.error());
  cfg->devices = args.positionals;
  cfg->check = args.value("check").value_or("");
  if (named) {
    const auto count = cfg->devices.size();
    std::erase_if(options.scenarios,
                  [&](faults::Scenario s) { return count != 2 * faults::scenario_devices(s); });
    if (options.scenarios.empty())
      return usage_error(
          "faults",
          Error{EINVAL, fmt::format("{} device(s) given: the {} scenario needs {} (a source and a "
                                    "destination per device of its VM)",
                                    count, which,
                                    which == "p2p-multi" ? "6"
                                    : which == "all"     ? "2 or 6"
                                                         : "2")});
    std::vector<std::string> said;
    if (auto learnt = faults::learn_device_facts(*cfg, said); !learnt)
      return failed(learnt.error().describe());
    for (const auto& s : said) fmt::print(stderr, "{}\n", printable(s));
    if (!cfg->facts.digest_stable)
      fmt::print(stderr,
                 "the source's state does not read back the same twice: its state is not "
                 "compared (--check CMD checks it your way)\n");
    bool kernel = false;
    for (const auto& d : cfg->devices) kernel = kernel || !d.starts_with("sim:");
    if (kernel && !args.has("kernel-log")) cfg->kernel_log = "/dev/kmsg";
  }
  options.base = *cfg;
  if (auto ok = devices::transport_available(cfg->transport); !ok)
    return failed(fmt::format("the {} transport is not usable here: {}",
                              devices::transport_name(cfg->transport), ok.error().describe()));
  for (auto [name, field] : {std::pair{"random", &options.random}, {"seed", &options.seed}}) {
    if (auto v = args.value(name)) {
      auto n = parse_uint(*v);
      if (!n)
        return usage_error("faults",
                           Error{EINVAL, fmt::format("--{}: {}", name, n.error().message)});
      *field = *n;
    }
  }
  if (options.random > faults::kMaxRandomCases)
    return usage_error("faults",
                       Error{EINVAL, fmt::format("--random: at most {} cases, not {}",
                                                 faults::kMaxRandomCases, options.random)});
  if (args.has("random") && !args.has("case")) options.systematic = args.has("systematic");
  if (auto j = args.value("jobs")) {
    auto n = parse_uint(*j);
    if (!n || *n == 0 || *n > 1024)
      return usage_error("faults", Error{EINVAL, fmt::format("bad --jobs '{}'", *j)});
    options.jobs = static_cast<unsigned>(*n);
  }
  auto watchdog = watchdog_options(args);
  if (!watchdog) return usage_error("faults", watchdog.error());
  options.watchdog = *watchdog;
  if (auto b = args.value("batch")) {
    auto n = parse_uint(*b);
    if (!n || *n > 100'000)
      return usage_error("faults",
                         Error{EINVAL, fmt::format("bad --batch '{}' (0 to 100000)", *b)});
    options.batch = static_cast<std::size_t>(*n);
  }
  if (auto ignore = args.value("kernel-log-ignore")) {
    if (auto rx = parse_kernel_log_ignore(*ignore); !rx) return usage_error("faults", rx.error());
    options.base.kernel_log_ignore = *ignore;
  }
  if (auto log = args.value("kernel-log")) options.base.kernel_log = *log;
  if (options.base.kernel_log == "none") options.base.kernel_log.reset();
  auto shard = shard_of(args);
  if (!shard) return usage_error("faults", shard.error());
  std::tie(options.shard_index, options.shard_count) = *shard;
  if (auto c = args.value("case")) {
    if (c->starts_with("random."))
      if (auto id = faults::parse_random_case_id(*c); !id) return usage_error("faults", id.error());
    options.only_case = *c;
  }

  if (args.has("list")) {
    auto cases = faults::list_cases(options);
    if (!cases) return failed(cases.error().describe());
    if (auto j = args.value("json")) {
      auto w = faults::write_case_list(*cases, options.shard_index, options.shard_count, *j);
      return w ? kExitOk : failed(w.error().describe());
    }
    std::string group;
    for (const auto& c : *cases) {
      auto now = fmt::format("{} on {}", faults::scenario_name(c.spec.scenario), c.cfg.profile);
      if (now != group) fmt::print("{}:\n", group = now);
      fmt::print("  {}\n", c.spec.id);
    }
    fmt::print("{} cases\n", cases->size());
    return kExitOk;
  }
  if (args.has("record")) {
    for (const auto& profile : options.profiles) {
      for (auto s : options.scenarios) {
        faults::CaseConfig c = *cfg;
        c.profile = profile;
        auto e = faults::enumerate_cases(s, c, true, options.random, options.seed);
        if (!e) return failed(e.error().describe());
        fmt::print("{} on {}: {} operations, {} cases\n", faults::scenario_name(s), profile,
                   e->trace.size(), e->cases.size());
        print_trace(e->trace);
      }
    }
    return kExitOk;
  }

  const bool quiet = args.has("quiet");
  const bool tty = ProgressLine::stderr_is_terminal() && !quiet;
  // Cases on named devices are slow enough to count one by one.
  const std::size_t every = named ? 1 : 50;
  options.on_result = [tty, every](const faults::CaseResult&, std::size_t done, std::size_t total) {
    if (tty && (done % every == 0 || done == total))
      fmt::print(stderr, "\r{}/{} cases", done, total);
  };
  auto result = faults::run_matrix(options);
  if (tty) fmt::print(stderr, "\n");
  if (!result) return failed(result.error().describe());
  if (options.only_case && result->cases.size() == 1) {
    faults::print_case(stdout, result->cases[0]);
    fmt::print("{}\n", faults::summary_line(faults::tally(*result)));
  } else {
    faults::print_report(stdout, *result, args.has("verbose"));
  }
  if (auto j = args.value("junit"))
    if (auto w = faults::write_junit(*result, *j); !w) return failed(w.error().describe());
  if (auto j = args.value("json"))
    if (auto w = faults::write_json(*result, *j); !w) return failed(w.error().describe());
  return faults::tally(*result).failed ? kExitFailed : kExitOk;
}

Result<std::string> plan_text(const ParsedArgs& args, std::string& origin) {
  if (auto f = args.value("fault")) {
    origin = "fault";
    return *f;
  }
  origin = *args.value("plan");
  return faults::read_plan_file(origin);
}

// One migration SRC -> DST under the plan; for simulated devices the oracles judge it too.
int run_plan_command(const ParsedArgs& args) {
  if (args.positionals.size() != 2)
    return usage_error("faults", Error{EINVAL, "--plan/--fault/--record need SRC and DST"});
  std::string origin;
  std::string text;
  if (args.has("plan") || args.has("fault")) {
    // A plan that cannot be read is bad input, like one that does not parse.
    auto t = plan_text(args, origin);
    if (!t) return usage_error("faults", t.error());
    text = *t;
  }
  auto plan = faults::parse_plan(text, origin);
  if (!plan) return usage_error("faults", plan.error());
  if (auto s = args.value("seed")) {
    auto n = parse_uint(*s);
    if (!n) return usage_error("faults", Error{EINVAL, fmt::format("bad --seed '{}'", *s)});
    plan->seed = *n;
  }
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("faults", setup.error());
  // The same pre-copy default as `migrate`, so that pre-copy faults fire on devices that offer it.
  if (auto p = precopy_setup(args, *setup); !p) return usage_error("faults", p.error());
  auto watchdog = watchdog_options(args);
  if (!watchdog) return usage_error("faults", watchdog.error());
  // A single run's injected hang lasts until the timeout (the matrix cancels it at once).
  watchdog->hang_grace = watchdog->timeout;
  std::vector<OpenedDevice> devs;
  for (std::size_t i = 0; i < 2; ++i) {
    auto opened = open_arg(args.positionals[i], i);
    if (!opened.device) {
      if (opened.usage) return usage_error("faults", opened.device.error());
      return failed(opened.device.error().describe());
    }
    devs.push_back(std::move(*opened.device));
  }
  faults::CaseControl control(std::move(*plan));
  faults::Injector& injector = control.injector;
  injector.set_recording(args.has("record"));
  std::unique_ptr<faults::SimHooks> hooks[2];
  for (int i = 0; i < 2; ++i)
    if (devs[i].model) hooks[i] = std::make_unique<faults::SimHooks>(devs[i].model);
  faults::FaultDevice src(*devs[0].device, injector, Side::kSource, hooks[0].get());
  faults::FaultDevice dst(*devs[1].device, injector, Side::kDestination, hooks[1].get());
  faults::Observation o;
  if (devs[0].model) {
    o.source_image = devs[0].model->image();
    o.source_config = devs[0].model->config();
  }
  SessionOptions quiet = setup->session;
  quiet.on_progress = nullptr;
  Session source(setup->session), destination(quiet);
  source.add_device(src, src.name(), devs[0].config_restore);
  destination.add_device(dst, dst.name(), devs[1].config_restore);
  control.attach(Side::kSource, &source);
  control.attach(Side::kDestination, &destination);
  // A signal cancels as the watchdog does: injected hangs end, both sessions stop.
  interrupt::OnInterrupt cancel([&control] { control.cancel(); });
  faults::FaultyMigration m;
  auto watched = faults::run_under_watchdog(
      control, [&] { m = faults::migrate_with_faults(source, destination, injector, true); },
      *watchdog);
  setup->progress->finish();
  if (watched.hung) {
    // Still blocked (in the kernel, or in a call no cancel reaches): nothing can be restored.
    fmt::print(
        "hang: the migration did not end {} ms after it was cancelled at the {} ms timeout\n",
        watchdog->cancel_grace.count(), watchdog->timeout.count());
    std::fflush(stdout);
    std::_Exit(kExitFailed);
  }
  control.attach(Side::kSource, nullptr);
  control.attach(Side::kDestination, nullptr);

  if (args.has("record")) {
    fmt::print("trace:\n");
    print_trace(injector.trace());
    if (injector.trace_overflowed())
      fmt::print("  ... (the trace stops after {} operations)\n", faults::Injector::kMaxTrace);
  }
  for (const auto& f : injector.fired()) fmt::print("{}\n", f.describe());
  if (injector.fired().empty() && !text.empty()) fmt::print("no fault fired\n");
  fmt::print("migration: {}\n",
             m.outcome ? "success" : "failed: " + printable(m.outcome.error().describe()));
  const bool hang_fired = injector.fired_kind(Side::kSource, faults::Kind::kHang) ||
                          injector.fired_kind(Side::kDestination, faults::Kind::kHang);
  if (watched.timed_out)
    fmt::print("hang: still running after the {} ms timeout ({}); cancelled\n",
               watchdog->timeout.count(),
               hang_fired ? "an injected hang blocked it" : "no hang fault fired");
  const int finished = watched.timed_out ? kExitFailed : kExitOk;  // unless it failed otherwise
  if (!devs[0].model || !devs[1].model) return m.outcome ? finished : kExitFailed;

  // Both simulated: judge the run as the matrix would.
  o.success = m.outcome.has_value();
  if (!m.outcome) o.error = m.outcome.error().message;
  o.timed_out = watched.timed_out;
  o.hang_injected = hang_fired;
  o.destination_loaded = m.loaded.has_value();
  o.stream = m.stream;
  auto observe = [](faults::DeviceEnd& end, OpenedDevice& d, Session& s) {
    end.present = true;
    if (Migration* mig = s.migration(0)) {
      end.cached = mig->device_state();
      end.broken = mig->broken();
      end.reset_failed_injected = end.broken;
    }
    end.state = query_device_state(*d.device).value_or(uapi::State::kError);
    end.image = d.model->image();
    end.config = d.model->config();
    end.open_sessions = d.model->open_sessions();
  };
  observe(o.src, devs[0], source);
  observe(o.dst, devs[1], destination);
  o.src.reset = injector.count(Side::kSource, faults::Op::kReset) > 0 ||
                injector.fired_kind(Side::kSource, faults::Kind::kAsyncReset);
  o.src.model_fault = injector.fired_kind(Side::kSource, faults::Kind::kAsyncReset) ||
                      injector.fired_kind(Side::kSource, faults::Kind::kLand);
  o.dst.model_fault = injector.fired_kind(Side::kDestination, faults::Kind::kAsyncReset) ||
                      injector.fired_kind(Side::kDestination, faults::Kind::kLand);
  for (const auto& f : injector.fired())
    if (f.op == "send") o.stream_mangled = true;  // conservative: any send fault may alter it
  auto j = faults::judge(o);
  for (const auto& p : j.problems) fmt::print("oracle: {}\n", printable(p));
  for (const auto& n : j.notes) fmt::print("note: {}\n", printable(n));
  fmt::print("verdict: {}\n", faults::verdict_name(j.verdict));
  return j.verdict == faults::Verdict::kFail ? kExitFailed : finished;
}

}  // namespace

int run_faults(const ParsedArgs& args) {
  const int modes = args.has("matrix") + (args.has("plan") || args.has("fault") ||
                                          (args.has("record") && !args.has("matrix")));
  if (modes != 1 || (args.has("plan") && args.has("fault")))
    return usage_error("faults", Error{EINVAL,
                                       "give --matrix SCENARIO, or --plan FILE / --fault "
                                       "RULES (or --record) with SRC DST"});
  if (args.has("matrix")) {
    if (args.has("precopy"))
      return usage_error("faults", Error{EINVAL,
                                         "--precopy is for --plan/--fault/--record runs (the "
                                         "matrix's precopy scenario pre-copies)"});
    return run_matrix_command(args);
  }
  return run_plan_command(args);
}

}  // namespace vfio::cli
