// conform: Reset from every state.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_reset() {
  for (State s : reachable_states()) {
    std::string id = "reset/from-" + name(s);
    std::string fd_id = "reset/kills-fd-" + name(s);
    auto fd = enter(s);
    if (!fd) {
      skip(std::move(id), kReset, fd.error());
      continue;
    }
    const auto r = dev_.reset();
    const auto now = query_device_state(dev_);
    if (!r)
      add(std::move(id), kReset, Verdict::kFail,
          "VFIO_DEVICE_RESET failed with " + errno_name(r.error().code));
    else if (!now)
      add(std::move(id), kReset, Verdict::kFail,
          "GET after reset failed with " + errno_name(now.error().code));
    else
      add(std::move(id), kReset, *now == State::kRunning ? Verdict::kPass : Verdict::kFail,
          fmt::format("reset ok, GET {}", name(*now)));
    if (!fd->valid() || !r) continue;
    if (s == State::kResuming) {
      const std::array<std::byte, 1> one{};
      auto w = dev_.write(fd->get(), one);
      expect_error(std::move(fd_id), kReset, status(w),
                   "write on the resume fd opened before the reset");
    } else {
      auto n = dev_.read(fd->get(), std::span(buf_).first(std::min<std::size_t>(buf_.size(), 16)));
      if (n)
        add(std::move(fd_id), kReset, Verdict::kFail,
            fmt::format("read on the save fd opened before the reset: expected an error, got "
                        "{} bytes",
                        *n));
      else
        expect_error(std::move(fd_id), kReset, std::unexpected(n.error()),
                     "read on the save fd opened before the reset");
    }
  }
}

}  // namespace vfio::conform::detail
