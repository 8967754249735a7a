// conform: stale-fd: a data fd kept after its session ended, while a new session of the same kind
// runs. The kernel hands out a new file per session; a driver that keys "disabled" (or its
// buffers) to the device rather than to the file lets the old fd reach the new session.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

constexpr std::size_t kProbe = 4096;  // bytes a stale read or write asks for

}  // namespace

void Checker::check_stale_fds() {
  const bool precopy = has(uapi::kMigrationPreCopy), p2p = has(uapi::kMigrationP2p);
  // A read on an fd whose session has ended must fail: data is another session's, and 0 tells
  // the reader its stream ended complete.
  auto expect_read_fails = [&](std::string id, int fd, std::string_view what) {
    expect_refused(std::move(id), kStaleFd,
                   dev_.read(fd, std::span(buf_).first(std::min(buf_.size(), kProbe))), what);
  };
  // Ends the session on `fd` by the SET to `end`, then begins a new one by the SET to `again`.
  auto replaced = [&](State s, State end, State again) -> Result<std::pair<DataFd, DataFd>> {
    auto old = enter(s);
    if (!old) return std::unexpected(old.error());
    if (auto r = request_device_state(dev_, end); !r)
      return fail(r.error().code, fmt::format("SET {}->{} failed with {}", name(s), name(end),
                                              errno_name(r.error().code)));
    auto fresh = request_device_state(dev_, again);
    if (!fresh)
      return fail(fresh.error().code, fmt::format("SET {}->{} failed with {}", name(end),
                                                  name(again), errno_name(fresh.error().code)));
    return std::pair{std::move(*old), DataFd(dev_, *fresh)};
  };

  // STOP_COPY: the old fd after SC->S->SC.
  if (auto fds = replaced(State::kStopCopy, State::kStop, State::kStopCopy); !fds)
    skip("stale-fd/read-old-SC", kStaleFd, fds.error());
  else
    expect_read_fails("stale-fd/read-old-SC", fds->first.get(),
                      "read on the STOP_COPY fd of the session before SC->S->SC");

  // Closing the old fd must leave the new session alone: a release() that tears down the
  // device's current migration file instead of its own ends (or frees) the new one.
  if (auto reference = session_prefix(State::kStopCopy, kProbe); !reference) {
    skip("stale-fd/close-old-SC", kStaleFd, reference.error());
  } else if (auto fds = replaced(State::kStopCopy, State::kStop, State::kStopCopy); !fds) {
    skip("stale-fd/close-old-SC", kStaleFd, fds.error());
  } else {
    { auto closing = std::move(fds->first); }
    judge_intact("stale-fd/close-old-SC", kStaleFd, State::kStopCopy, fds->second.get(), *reference,
                 "the stale fd of the previous session closed");
  }

  // PRE_COPY: the old fd after PC->R->PC, read and asked for PRECOPY_INFO.
  if (!precopy) {
    for (auto id : {"stale-fd/read-old-PC", "stale-fd/info-old-PC"})
      add(id, kStaleFd, Verdict::kSkip, "device has no PRE_COPY");
  } else if (auto fds = replaced(State::kPreCopy, State::kRunning, State::kPreCopy); !fds) {
    for (auto id : {"stale-fd/read-old-PC", "stale-fd/info-old-PC"})
      skip(id, kStaleFd, fds.error());
  } else {
    expect_read_fails("stale-fd/read-old-PC", fds->first.get(),
                      "read on the PRE_COPY fd of the session before PC->R->PC");
    // mlx5 and mtty check the device's state (PRE_COPY again) before the file's.
    expect_refused("stale-fd/info-old-PC", kStaleFd, precopy_info_of(fds->first.get()),
                   "PRECOPY_INFO on the PRE_COPY fd of the session before PC->R->PC");
  }

  // PRE_COPY_P2P: its own arc ends the session (a driver's step function has one case per arc).
  if (!precopy || !p2p) {
    add("stale-fd/read-after-PCP->RP", kStaleFd, Verdict::kSkip,
        "device has no PRE_COPY_P2P (needs PRE_COPY and P2P)");
  } else if (auto fd = enter(State::kPreCopyP2p); !fd) {
    skip("stale-fd/read-after-PCP->RP", kStaleFd, fd.error());
  } else if (auto r = request_device_state(dev_, State::kRunningP2p); !r) {
    skip("stale-fd/read-after-PCP->RP", kStaleFd,
         Error{r.error().code, "SET PCP->RP failed with " + errno_name(r.error().code)});
  } else {
    expect_read_fails("stale-fd/read-after-PCP->RP", fd->get(),
                      "read on the PRE_COPY_P2P fd after PCP->RP");
  }

  // RESUMING: a resume session ends only by loading a whole stream or by a reset; the reset
  // (cheap) then S->RS again. Nothing the old fd takes may land in the new session.
  if (auto old = enter(State::kResuming); !old) {
    skip("stale-fd/write-old-RS", kStaleFd, old.error());
  } else if (auto r = dev_.reset(); !r) {
    skip("stale-fd/write-old-RS", kStaleFd,
         Error{r.error().code, "reset failed with " + errno_name(r.error().code)});
  } else if (auto fresh = request_device_state(dev_, State::kResuming); !fresh) {
    skip("stale-fd/write-old-RS", kStaleFd,
         Error{fresh.error().code, "SET R->RS failed with " + errno_name(fresh.error().code)});
  } else {
    DataFd held(dev_, *fresh);
    // The saved stream's first bytes: what the new session would take, were they to reach it.
    const std::vector<std::byte> junk(kProbe, std::byte{0xff});
    const std::span<const std::byte> data =
        saved_ ? std::span(*saved_).first(std::min(saved_->size(), kProbe)) : std::span(junk);
    expect_refused(
        "stale-fd/write-old-RS", kStaleFd, dev_.write(old->get(), data),
        fmt::format("write of the {} on the resume fd of the session before a reset and R->RS",
                    saved_ ? "saved stream's start" : "0xff bytes"));
  }
}

}  // namespace vfio::conform::detail
