// conform: set-invalid: SET MIG_DEVICE_STATE of a state that does not exist. The vfio core passes
// the u32 to the driver unchecked; vfio_mig_get_next_state refuses anything past PRE_COPY_P2P,
// but a driver indexing its own tables with it first (or comparing it as a signed number) reads
// past them. 8 catches an off-by-one bound, 0xffffffff a signed one (-1 < 8).
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_set_invalid() {
  for (std::uint32_t value : {std::uint32_t{uapi::kStateCount}, ~std::uint32_t{0}}) {
    std::string id = fmt::format("set-invalid/state-{:#x}", value);
    if (auto r = dev_.reset(); !r) {
      skip(std::move(id), kSetInvalid,
           Error{r.error().code, "reset failed with " + errno_name(r.error().code)});
      continue;
    }
    FeatureCall set(flags_of(uapi::Feature::kMigDeviceState, uapi::kFeatureSet),
                    uapi::MigState{value, kFdSentinel});
    const auto r = set.run(dev_);
    const auto back = set.payload<uapi::MigState>();
    DataFd produced(dev_, r && back.data_fd >= 0 ? back.data_fd : -1);
    const auto now = query_device_state(dev_);
    std::vector<std::string> problems;
    if (r)
      problems.push_back("expected EINVAL, got success");
    else if (r.error().code != EINVAL)
      problems.push_back("expected EINVAL, got " + errno_name(r.error().code));
    // As for any refused SET, the kernel copies the struct back: the requested value, data_fd -1.
    if (!r && back.data_fd != -1)
      problems.push_back(fmt::format("data_fd {} written back, expected -1", back.data_fd));
    if (!r && back.device_state != value)
      problems.push_back(
          fmt::format("device_state {:#x} written back, expected the requested {:#x}",
                      back.device_state, value));
    if (!now)
      problems.push_back("GET failed with " + errno_name(now.error().code));
    else if (*now != State::kRunning)
      problems.push_back("state changed to " + std::string(uapi::state_name(*now)));
    std::string detail;
    for (const auto& p : problems) detail += (detail.empty() ? "" : "; ") + p;
    add(std::move(id), kSetInvalid, problems.empty() ? Verdict::kPass : Verdict::kFail,
        problems.empty()
            ? fmt::format("SET R->{:#x} refused with EINVAL, struct written back, still RUNNING",
                          value)
            : fmt::format("SET R->{:#x}: {}", value, detail));
  }
}

}  // namespace vfio::conform::detail
