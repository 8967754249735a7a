#include "faults/oracles.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

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
    case Scenario::kPrecopy:
      return "precopy";
    case Scenario::kP2pMulti:
      return "p2p-multi";
  }
  return "?";
}

std::span<const Scenario> all_scenarios() {
  static constexpr Scenario kAll[] = {Scenario::kSave,   Scenario::kLoad,    Scenario::kMigrate,
                                      Scenario::kCancel, Scenario::kPrecopy, Scenario::kP2pMulti};
  return kAll;
}

std::optional<Scenario> parse_scenario(std::string_view name) {
  for (auto s : all_scenarios())
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
    case Verdict::kCrashed:
      return "crashed";
    case Verdict::kTimeout:
      return "timeout";
    case Verdict::kKernelHang:
      return "kernel-hang";
  }
  return "?";
}

bool is_failure(Verdict v) {
  return v != Verdict::kPass && v != Verdict::kStateLost;
}

namespace {

// The oracles on one source/destination pair of devices. `label` names the pair when the VM
// has several ("device 2: ").
void judge_pair(const Observation& o, const std::string& label, const sim::Image& source_image,
                const std::vector<std::byte>& source_config, const DeviceEnd& src,
                const DeviceEnd& dst, Judgement& j, bool& lost) {
  auto problem = [&](std::string s) { j.problems.push_back(label + std::move(s)); };
  // The guest may write device state while it runs (Image::written): the destination must
  // match the source as it was when it stopped, and the source may change only by such writes.
  const sim::Image& expected = src.present ? src.image : source_image;
  if (o.success) {
    // save: the clean load afterwards may refuse data a fault altered; if it accepts, the
    // result must be exact like any other destination.
    const bool compare = o.scenario != Scenario::kSave || o.verify_loaded == true;
    if (dst.present && compare) {
      if (dst.image != expected && dst.model_fault) {
        // A reset behind the engine's back after the data went in: RESUMING->RUNNING then
        // looks like RUNNING->RUNNING, which succeeds. The uAPI gives no way to notice.
        j.notes.push_back(label +
                          "the destination was reset behind the engine's back after its data "
                          "was loaded: it runs with its own state (undetectable, see "
                          "docs/faults.md)");
        lost = true;
      } else if (dst.image != expected)
        problem(
            fmt::format("success, but the destination image (seed {:#x}, {} bytes, {} "
                        "written) differs from the source's (seed {:#x}, {} bytes, {} "
                        "written)",
                        dst.image.seed, dst.image.size, dst.image.written, expected.seed,
                        expected.size, expected.written));
      if (dst.config != source_config)
        problem("success, but the destination's config space differs from the source's");
      if (dst.state != State::kRunning)
        problem(fmt::format("success, but the destination is in {}", st(dst.state)));
    }
  } else {
    if (src.present && src.state != State::kRunning) {
      if (src.broken && src.reset_failed_injected) {
        j.notes.push_back(label + fmt::format("source broken in {} after an injected reset failure",
                                              st(src.state)));
        lost = true;
      } else {
        problem(fmt::format("failed, but the source was left in {}", st(src.state)));
      }
    }
    if (dst.present && o.scenario != Scenario::kSave && dst.state != State::kRunning &&
        !(dst.broken && dst.reset_failed_injected))
      problem(fmt::format("failed, but the destination was left in {}", st(dst.state)));
  }
  if (src.present && (src.image.seed != source_image.seed || src.image.size != source_image.size ||
                      src.image.written < source_image.written))
    problem("the source's image changed");
  check_cached((label + "source").c_str(), src, j, lost);
  check_cached((label + "destination").c_str(), dst, j, lost);
  if (src.open_sessions) problem(fmt::format("source: {} data fd(s) leaked", src.open_sessions));
  if (dst.open_sessions)
    problem(fmt::format("destination: {} data fd(s) leaked", dst.open_sessions));
  auto check_logging = [&](std::string_view side, const DeviceEnd& d) {
    if (!d.dma_logging) return;
    if (d.dma_stop_faulted)
      j.notes.push_back(label + fmt::format("{}: DMA logging left running: its stop failed", side));
    else
      problem(fmt::format("{}: DMA logging left running after the session", side));
  };
  check_logging("source", src);
  check_logging("destination", dst);
  if (src.present && src.reset) {
    j.notes.push_back(label + "the source was reset during the case");
    lost = true;
  }
}

// Named devices: the state read back must be the source's as it was before the case, on the
// source whatever happened (unless it was reset) and on the destination after a success.
void judge_digests(const Observation& o, Judgement& j, bool& lost) {
  if (!o.source_digest) return;
  auto check = [&](std::string_view side, const DeviceEnd& d, bool moved) {
    if (!d.digest_error.empty())
      j.problems.push_back(
          fmt::format("{}: reading its state back failed: {}", side, d.digest_error));
    if (!d.digest || *d.digest == *o.source_digest) return;
    auto msg = fmt::format(
        "{}: its state read back ({}) differs from the source's before the "
        "case ({})",
        side, d.digest->describe(), o.source_digest->describe());
    if (moved) {
      j.notes.push_back(msg + " (a fault reset or moved it)");
      lost = true;
    } else {
      j.problems.push_back(msg);
    }
  };
  check("source", o.src, o.src.reset || o.src.model_fault);
  check("destination", o.dst, o.dst.model_fault);
}

}  // namespace

Judgement judge(const Observation& o) {
  Judgement j;
  bool lost = false;
  auto problem = [&](std::string s) { j.problems.push_back(std::move(s)); };

  for (const auto& v : o.invariant_violations) problem("invariant: " + v);
  if (o.hung) problem("hang: the case did not finish after it was cancelled");
  if (o.timed_out && !o.hang_injected) problem("no hang fault, yet the case had to be cancelled");
  if (o.success) {
    if (o.verify_loaded == false && !o.data_altered)
      problem("save reported success, but its stream does not load: " + o.verify_error);
  } else {
    if (o.tolerable_faults_only)
      problem("only tolerable faults fired (short, delay, EINTR, EAGAIN), yet it failed: " +
              o.error);
    if (o.error.empty()) problem("failure without an error message");
    if (o.destination_loaded)
      problem("the destination runs the VM although the migration failed (split brain)");
  }
  if (o.next_save_ok == false)
    problem(fmt::format("a clean {} after the case fails: {}", o.next_attempt, o.next_save_error));
  for (const auto& n : o.prepared) j.notes.push_back(n);
  if (!o.leaked_fds.empty())
    problem(fmt::format("{} file(s) left open after the case: {}", o.leaked_fds.size(),
                        fmt::join(o.leaked_fds, ", ")));
  judge_digests(o, j, lost);
  judge_pair(o, o.more.empty() ? "" : "device 0: ", o.source_image, o.source_config, o.src, o.dst,
             j, lost);
  for (std::size_t i = 0; i < o.more.size(); ++i) {
    const auto& p = o.more[i];
    judge_pair(o, fmt::format("device {}: ", i + 1), p.source_image, p.source_config, p.src, p.dst,
               j, lost);
  }
  if (o.stream && !o.stream->well_formed && !o.stream_mangled)
    problem("malformed stream: " + o.stream->problem);
  j.verdict = !j.problems.empty() ? Verdict::kFail : lost ? Verdict::kStateLost : Verdict::kPass;
  return j;
}

}  // namespace vfio::faults
