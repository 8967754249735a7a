// conform: size-estimate: MIG_DATA_SIZE in the states before STOP_COPY. The uAPI lets it be asked
// in any state, and a VMM asks before it stops the guest (QEMU's vfio_state_pending_exact in
// RUNNING and PRE_COPY, its save setup in RUNNING) to decide when to switch over: a driver that
// knows the size only once a STOP_COPY session exists (0, or a figure left from the previous
// session) makes it switch over with the downtime unplanned. Each figure is compared with the
// one STOP_COPY gives right after, from the same device state (data-size/stop-copy-estimate ties
// that one to the real stream), so a figure the guest changes by running stays comparable.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_size_estimate() {
  for (State s :
       {State::kStop, State::kRunning, State::kRunningP2p, State::kPreCopy, State::kPreCopyP2p}) {
    std::string id = "size-estimate/in-" + name(s);
    if (!uapi_has_state(s, flags_)) {
      add(std::move(id), kSizeEstimate, Verdict::kSkip, name(s) + " not supported");
      continue;
    }
    auto fd = enter(s);
    if (!fd) {
      skip(std::move(id), kSizeEstimate, fd.error());
      continue;
    }
    const auto estimate = query_stop_copy_size(dev_);
    if (!estimate) {
      add(std::move(id), kSizeEstimate, Verdict::kFail,
          fmt::format("GET MIG_DATA_SIZE in {} failed with {}", name(s),
                      errno_name(estimate.error().code)));
      continue;
    }
    // From PC and PCP the session goes on into STOP_COPY (no new fd); from the others a new one.
    auto stop_copy = request_device_state(dev_, State::kStopCopy);
    if (!stop_copy) {
      skip(std::move(id), kSizeEstimate,
           Error{stop_copy.error().code, fmt::format("SET {}->SC failed with {}", name(s),
                                                     errno_name(stop_copy.error().code))});
      continue;
    }
    DataFd held(dev_, *stop_copy);
    const auto truth = query_stop_copy_size(dev_);
    if (!truth) {
      skip(std::move(id), kSizeEstimate,
           Error{truth.error().code,
                 "GET MIG_DATA_SIZE in STOP_COPY failed with " + errno_name(truth.error().code)});
      continue;
    }
    const std::string why = estimate_problem(*estimate, *truth);
    add(std::move(id), kSizeEstimate, why.empty() ? Verdict::kPass : Verdict::kFail,
        fmt::format("{} bytes in {}, {} in STOP_COPY right after{}", *estimate, name(s), *truth,
                    why));
  }
}

}  // namespace vfio::conform::detail
