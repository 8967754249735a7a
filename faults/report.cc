#include "faults/report.h"

#include <algorithm>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "core/atomic_file.h"
#include "core/json_text.h"
#include "core/untrusted_text.h"

namespace vfio::faults {
namespace {

double seconds(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double>(ns).count();
}

std::string xml(std::string_view s) {
  std::string out;
  for (std::size_t n; !s.empty(); s.remove_prefix(std::max<std::size_t>(n, 1))) {
    const char c = s[0];
    n = utf8_sequence_length(s);
    if (n == 0) {
      out += "&#xfffd;";  // the report must stay UTF-8: a stray byte becomes the replacement mark
      continue;
    }
    if (n > 1) {
      out += s.substr(0, n);
      continue;
    }
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') out += c;
    }
  }
  return out;
}

std::string suite_of(const CaseResult& c) {
  return fmt::format("{}.{}", scenario_name(c.spec.scenario), c.config.profile);
}

}  // namespace

void Tally::add(Verdict v) {
  ++cases;
  if (v == Verdict::kPass) ++passed;
  if (is_failure(v)) ++failed;
  if (v == Verdict::kStateLost) ++state_lost;
  if (v == Verdict::kCrashed) ++crashed;
  if (v == Verdict::kTimeout) ++timed_out;
  if (v == Verdict::kKernelHang) ++kernel_hang;
}

Tally tally(const MatrixResult& r) {
  Tally t;
  for (const auto& c : r.cases) {
    t.add(c.judgement.verdict);
    if (!c.spec.plan.empty() && c.fired.empty() && !is_failure(c.judgement.verdict))
      ++t.never_fired;
  }
  return t;
}

std::string summary_line(const Tally& t) {
  std::string s =
      fmt::format("faults: {} cases, {} passed, {} failed", t.cases, t.passed, t.failed);
  if (t.crashed || t.timed_out || t.kernel_hang)
    s += fmt::format(" ({} crashed, {} timeout, {} kernel-hang)", t.crashed, t.timed_out,
                     t.kernel_hang);
  if (t.state_lost) s += fmt::format(", {} state-lost", t.state_lost);
  if (t.never_fired) s += fmt::format(", {} never fired", t.never_fired);
  return s;
}

void print_case(std::FILE* out, const CaseResult& c) {
  fmt::print(out, "case {} ({} on {}): {}\n", c.spec.id, scenario_name(c.spec.scenario),
             c.config.profile, verdict_name(c.judgement.verdict));
  if (!c.spec.plan.empty()) {
    fmt::print(out, "  plan:\n");
    std::string_view plan = c.spec.plan;
    while (!plan.empty()) {
      auto nl = plan.find('\n');
      if (auto line = plan.substr(0, nl); !line.empty()) fmt::print(out, "    {}\n", line);
      plan = nl == std::string_view::npos ? "" : plan.substr(nl + 1);
    }
  }
  if (c.spec.cancel_at_progress)
    fmt::print(out, "  cancel: {} session at progress callback {}\n", side_name(c.spec.cancel_side),
               c.spec.cancel_at_progress);
  for (const auto& f : c.fired) fmt::print(out, "  {}\n", f.describe());
  fmt::print(out, "  result: {}\n", c.error.empty() ? "success" : "failed: " + printable(c.error));
  for (const auto& p : c.judgement.problems) fmt::print(out, "  oracle: {}\n", printable(p));
  for (const auto& n : c.judgement.notes) fmt::print(out, "  note: {}\n", printable(n));
  fmt::print(out, "  reproduce: {}\n", c.repro);
}

void print_report(std::FILE* out, const MatrixResult& r, bool verbose) {
  // Per scenario and profile.
  std::map<std::pair<std::string, std::string>, std::pair<Tally, std::chrono::nanoseconds>> suites;
  std::map<std::tuple<std::string, std::string>, Tally> ops;
  for (const auto& c : r.cases) {
    auto& s = suites[{std::string(scenario_name(c.spec.scenario)), c.config.profile}];
    s.first.add(c.judgement.verdict);
    s.second += c.elapsed;
    ops[{c.spec.operation, c.spec.fault}].add(c.judgement.verdict);
  }
  fmt::print(out, "{:<10} {:<10} {:>7} {:>7} {:>7} {:>10} {:>9}\n", "scenario", "profile", "cases",
             "passed", "failed", "state-lost", "case-sec");
  for (const auto& [key, v] : suites)
    fmt::print(out, "{:<10} {:<10} {:>7} {:>7} {:>7} {:>10} {:>9.2f}\n", key.first, key.second,
               v.first.cases, v.first.passed, v.first.failed, v.first.state_lost,
               seconds(v.second));
  if (verbose || r.cases.size() <= 400) {
    fmt::print(out, "\n{:<28} {:<14} {:>7} {:>7} {:>7} {:>10}\n", "operation", "fault", "cases",
               "passed", "failed", "state-lost");
    for (const auto& [key, t] : ops)
      fmt::print(out, "{:<28} {:<14} {:>7} {:>7} {:>7} {:>10}\n", std::get<0>(key),
                 std::get<1>(key), t.cases, t.passed, t.failed, t.state_lost);
  }
  bool header = false;
  for (const auto& c : r.cases) {
    if (!is_failure(c.judgement.verdict) && !(verbose && !c.judgement.notes.empty())) continue;
    if (!header) fmt::print(out, "\n");
    header = true;
    print_case(out, c);
  }
  if (!r.stopped.empty())
    fmt::print(out, "\nstopped: {}; {} case(s) did not run\n", printable(r.stopped), r.not_run);
  fmt::print(out, "\n{} in {:.1f} s on {} thread(s)\n", summary_line(tally(r)), seconds(r.wall),
             r.jobs);
}

Result<> write_junit(const MatrixResult& r, const std::string& path) {
  std::map<std::string, std::vector<const CaseResult*>> suites;
  for (const auto& c : r.cases) suites[suite_of(c)].push_back(&c);
  Tally all = tally(r);
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  x += fmt::format(
      "<testsuites name=\"vfio-mig faults\" tests=\"{}\" failures=\"{}\" time=\"{:.3f}\">\n",
      all.cases, all.failed, seconds(r.wall));
  for (const auto& [name, cases] : suites) {
    std::size_t failures = 0;
    std::chrono::nanoseconds time{};
    for (auto* c : cases) {
      failures += is_failure(c->judgement.verdict);
      time += c->elapsed;
    }
    x += fmt::format(
        "  <testsuite name=\"faults.{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3f}\">\n",
        xml(name), cases.size(), failures, seconds(time));
    for (auto* c : cases) {
      x += fmt::format("    <testcase classname=\"faults.{}\" name=\"{}\" time=\"{:.3f}\">",
                       xml(name), xml(c->spec.id), seconds(c->elapsed));
      std::string detail;
      for (const auto& p : c->judgement.problems) detail += p + "\n";
      for (const auto& n : c->judgement.notes) detail += "note: " + n + "\n";
      for (const auto& f : c->fired) detail += f.describe() + "\n";
      if (!c->error.empty()) detail += "error: " + c->error + "\n";
      detail += "reproduce: " + c->repro + "\n";
      if (is_failure(c->judgement.verdict)) {
        x += fmt::format("\n      <failure message=\"{}\">{}</failure>\n    ",
                         xml(c->judgement.problems.empty() ? "failed" : c->judgement.problems[0]),
                         xml(detail));
      } else {
        x += fmt::format("\n      <system-out>{}{}</system-out>\n    ",
                         c->judgement.verdict == Verdict::kStateLost ? "state-lost\n" : "",
                         xml(detail));
      }
      x += "</testcase>\n";
    }
    x += "  </testsuite>\n";
  }
  x += "</testsuites>\n";
  return write_file_atomically(path, x);
}

Result<> write_json(const MatrixResult& r, const std::string& path) {
  Tally t = tally(r);
  std::string j = fmt::format(
      "{{\"cases\": {}, \"passed\": {}, \"failed\": {}, \"crashed\": {}, \"timeout\": {}, "
      "\"kernel_hang\": {}, \"state_lost\": {}, \"never_fired\": {}, \"not_run\": {}, "
      "\"seconds\": {:.3f}, "
      "\"threads\": {}, \"results\": [\n",
      t.cases, t.passed, t.failed, t.crashed, t.timed_out, t.kernel_hang, t.state_lost,
      t.never_fired, r.not_run, seconds(r.wall), r.jobs);
  bool first = true;
  for (const auto& c : r.cases) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s = "[";
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_quote(v[i]);
      return s + "]";
    };
    std::vector<std::string> fired;
    for (const auto& f : c.fired) fired.push_back(f.describe());
    j += fmt::format(
        "{}  {{\"id\": {}, \"scenario\": {}, \"profile\": {}, \"operation\": {}, \"fault\": {}, "
        "\"plan\": {}, \"verdict\": {}, \"error\": {}, \"problems\": {}, \"notes\": {}, "
        "\"fired\": {}, \"seconds\": {:.6f}, \"reproduce\": {}}}",
        first ? "" : ",\n", json_quote(c.spec.id), json_quote(scenario_name(c.spec.scenario)),
        json_quote(c.config.profile), json_quote(c.spec.operation), json_quote(c.spec.fault),
        json_quote(c.spec.plan), json_quote(verdict_name(c.judgement.verdict)), json_quote(c.error),
        list(c.judgement.problems), list(c.judgement.notes), list(fired), seconds(c.elapsed),
        json_quote(c.repro));
    first = false;
  }
  j += "\n]}\n";
  return write_file_atomically(path, j);
}

Result<> write_case_list(const std::vector<MatrixCase>& cases, std::size_t shard_index,
                         std::size_t shard_count, const std::string& path) {
  std::string j = fmt::format("{{\"cases\": {}, \"shard\": {}, \"shards\": {}, \"list\": [\n",
                              cases.size(), shard_index + 1, shard_count);
  for (std::size_t i = 0; i < cases.size(); ++i)
    j += fmt::format(
        "{}  {{\"id\": {}, \"scenario\": {}, \"profile\": {}, \"reproduce\": {}}}", i ? ",\n" : "",
        json_quote(cases[i].spec.id), json_quote(scenario_name(cases[i].spec.scenario)),
        json_quote(cases[i].cfg.profile), json_quote(repro_command(cases[i].spec, cases[i].cfg)));
  j += "\n]}\n";
  return write_file_atomically(path, j);
}

}  // namespace vfio::faults
