#include "faults/oracles.h"

#include <fmt/format.h>

namespace vfio::faults {
namespace {

using uapi::State;

std::string_view st(State s) {
  return uapi::state_short_name(s);
}

// The engine's cached state must equal the device's, unless a fault moved the device behind
// its back (land=, async-reset: nothing an engine can see) or the device is marked broken.
void check_cached(const char* side, const DeviceEnd& d, Judgement& j, bool& lost) {
  if (!d.present || !d.cached || d.broken || *d.cached == d.state) return;
  auto msg = fmt::format("{}: engine believes {} but the device is in {}", side, st(*d.cached),
                         st(d.state));
  if (d.model_fault) {
    j.notes.push_back(msg + " (a fault moved it)");
    lost = true;
  } else {
    j.problems.push_back(msg);
  }
}

}  // namespace

std::string_view scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kSave:
      return "save";
    case Scenario::kLoad:
      return "load";
    case Scenario::kMigrate:
      return "migrate";
    case Scenario::kCancel:
      return "cancel";
  }
  return "?";
}

std::optional<Scenario> parse_scenario(std::string_view name) {
  for (auto s : {Scenario::kSave, Scenario::kLoad, Scenario::kMigrate, Scenario::kCancel})
    if (scenario_name(s) == name) return s;
  return std::nullopt;
}

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "FAIL";
    case Verdict::kStateLost:
      return "state-lost";
  }
  return "?";
}

Judgement judge(const Observation& o) {
  Judgement j;
  bool lost = false;
  auto problem = [&](std::string s) { j.problems.push_back(std::move(s)); };

  if (o.hung) problem("hang: the case did not finish after it was cancelled");
  if (o.timed_out && !o.hang_injected) problem("no hang fault, yet the case had to be cancelled");

  // What counts as "the destination": the device loaded into, or for save the clean device
  // the saved stream was loaded into afterwards.
  const DeviceEnd& dst = o.dst;
  if (o.success) {
    // save: the clean load afterwards may refuse data a fault altered; if it accepts, the
    // result must be exact like any other destination.
    const bool compare = o.scenario != Scenario::kSave || o.verify_loaded == true;
    if (dst.present && compare) {
      if (dst.image != o.source_image && dst.model_fault) {
        // A reset behind the engine's back after the data went in: RESUMING->RUNNING then
        // looks like RUNNING->RUNNING, which succeeds. The uAPI gives no way to notice.
        j.notes.push_back(
            "the destination was reset behind the engine's back after its data "
            "was loaded: it runs with its own state (undetectable, see "
            "docs/faults.md)");
        lost = true;
      } else if (dst.image != o.source_image)
        problem(
            fmt::format("success, but the destination image (seed {:#x}, {} bytes) differs "
                        "from the source's (seed {:#x}, {} bytes)",
                        dst.image.seed, dst.image.size, o.source_image.seed, o.source_image.size));
      if (dst.config != o.source_config)
        problem("success, but the destination's config space differs from the source's");
      if (dst.state != State::kRunning)
        problem(fmt::format("success, but the destination is in {}", st(dst.state)));
    }
    if (o.verify_loaded == false && !o.data_altered)
      problem("save reported success, but its stream does not load: " + o.verify_error);
  } else {
    if (o.error.empty()) problem("failure without an error message");
    if (o.destination_loaded)
      problem("the destination runs the VM although the migration failed (split brain)");
    if (o.src.present && o.src.state != State::kRunning) {
      if (o.src.broken && o.src.reset_failed_injected) {
        j.notes.push_back(
            fmt::format("source broken in {} after an injected reset failure", st(o.src.state)));
        lost = true;
      } else {
        problem(fmt::format("failed, but the source was left in {}", st(o.src.state)));
      }
    }
    if (dst.present && o.scenario != Scenario::kSave && dst.state != State::kRunning &&
        !(dst.broken && dst.reset_failed_injected))
      problem(fmt::format("failed, but the destination was left in {}", st(dst.state)));
  }
  if (o.src.present && o.src.image != o.source_image) problem("the source's image changed");
  check_cached("source", o.src, j, lost);
  check_cached("destination", o.dst, j, lost);
  if (o.src.open_sessions)
    problem(fmt::format("source: {} data fd(s) leaked", o.src.open_sessions));
  if (o.dst.open_sessions)
    problem(fmt::format("destination: {} data fd(s) leaked", o.dst.open_sessions));
  if (o.stream && !o.stream->well_formed && !o.stream_mangled)
    problem("malformed stream: " + o.stream->problem);

  if (o.src.present && o.src.reset) {
    j.notes.push_back("the source was reset during the case");
    lost = true;
  }
  j.verdict = !j.problems.empty() ? Verdict::kFail : lost ? Verdict::kStateLost : Verdict::kPass;
  return j;
}

}  // namespace vfio::faults
