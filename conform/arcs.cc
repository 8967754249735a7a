// conform: Arcs: every (current, target) SET against the kernel's table.
#include <fmt/format.h>

#include "conform/checker_context.h"
#include "conform/uapi_arcs.h"

namespace vfio::conform::detail {

void Checker::check_arc(State cur, State target) {
  std::string id = fmt::format("arc/{}->{}", name(cur), name(target));
  const bool hangs_linux = cur == State::kStopCopy && uapi_has_state(target, flags_) &&
                           (target == State::kPreCopy || target == State::kPreCopyP2p);
  if (hangs_linux && !opt_.send_hanging_arcs) {
    return add(std::move(id), kArcs, Verdict::kSkip,
               "not sent: Linux's vfio core loops forever on this refused request "
               "(vfio_mig_get_next_state); --unsafe-arcs sends it");
  }
  auto held = enter(cur);
  if (!held) return skip(std::move(id), kArcs, held.error());
  const auto expected = uapi_path(cur, target, flags_);
  const std::vector<State> path = expected.value_or(std::vector<State>{});
  const bool legal = expected.has_value();
  // Leaving RESUMING consumes the resume data: give it a whole stream to accept.
  const bool resumes = cur == State::kResuming && !path.empty();
  if (resumes) {
    if (!saved_) return skip(std::move(id), kArcs, saved_error_);
    std::uint64_t written = 0;
    if (auto w = write_all(held->get(), *saved_, written); !w)
      return skip(std::move(id), kArcs,
                  Error{w.error().code,
                        "writing the saved stream failed with " + errno_name(w.error().code)});
  }

  FeatureCall set(flags_of(uapi::Feature::kMigDeviceState, uapi::kFeatureSet),
                  uapi::MigState{static_cast<std::uint32_t>(target), kFdSentinel});
  const auto r = set.run(dev_);
  const auto written_back = set.payload<uapi::MigState>();
  const int data_fd = written_back.data_fd;
  DataFd produced(dev_, r && data_fd >= 0 ? data_fd : -1);
  const auto now = query_device_state(dev_);

  std::vector<std::string> problems;
  std::string summary;
  if (legal) {
    Opens opened = Opens::kNothing;
    std::string route = name(cur);
    for (std::size_t i = 0; i < path.size(); ++i) {
      opened = uapi_opens(i == 0 ? cur : path[i - 1], path[i]);
      route += "->" + name(path[i]);
    }
    const bool opens = opened != Opens::kNothing;
    const char* kind = opened == Opens::kSave ? "save" : "resume";
    if (!r) {
      problems.push_back(
          fmt::format("expected success ({}), got {}", route, errno_name(r.error().code)));
    } else if (opens && data_fd < 0) {
      problems.push_back(
          fmt::format("no data fd (data_fd {}); the last arc opens a {} session", data_fd, kind));
    } else if (!opens && data_fd != -1) {
      problems.push_back(fmt::format("data_fd {}, expected -1 (no session opened)", data_fd));
    }
    if (!now)
      problems.push_back("GET failed with " + errno_name(now.error().code));
    else if (r && *now != target)
      problems.push_back(fmt::format("GET reports {}, expected {}", name(*now), name(target)));
    summary = fmt::format("{}{} ok, GET {}, {}", resumes ? "saved stream written, " : "", route,
                          name(target), opens ? fmt::format("new {} data fd", kind) : "no data fd");
  } else {
    if (r)
      problems.push_back("expected EINVAL (refused), got success");
    else if (r.error().code != EINVAL)
      problems.push_back("expected EINVAL (refused), got " + errno_name(r.error().code));
    // The kernel copies the struct back even on failure: the requested state, data_fd -1.
    if (!r && data_fd != -1)
      problems.push_back(fmt::format("data_fd {} written back, expected -1", data_fd));
    if (!r && written_back.device_state != static_cast<std::uint32_t>(target))
      problems.push_back(fmt::format("device_state {} written back, expected the requested {}",
                                     written_back.device_state, name(target)));
    if (!now)
      problems.push_back("GET failed with " + errno_name(now.error().code));
    else if (*now != cur)
      problems.push_back(fmt::format("state changed to {}", name(*now)));
    summary = fmt::format("refused with EINVAL ({}), struct written back, state unchanged",
                          refusal_reason(cur, target));
  }
  if (problems.empty()) return add(std::move(id), kArcs, Verdict::kPass, summary);
  std::string detail;
  for (const auto& p : problems) detail += (detail.empty() ? "" : "; ") + p;
  add(std::move(id), kArcs, Verdict::kFail, detail);
}

}  // namespace vfio::conform::detail
