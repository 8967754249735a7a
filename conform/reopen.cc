// conform: Reopen and repeat. A device opened again starts a migration afresh: it is RUNNING, and
// its next stream is complete (a hisi_acc flag not reset on open skipped the second transfer
// until a 2026 fix); pre-copy sessions abandoned part way leave nothing behind.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

constexpr int kPrecopyCycles = 3;
constexpr std::size_t kPartialRead = 1024;

// The states a device is closed in before a reopen: every one but RUNNING and ERROR.
constexpr std::array kLeftIn = {State::kStopCopy,   State::kStop,    State::kResuming,
                                State::kRunningP2p, State::kPreCopy, State::kPreCopyP2p};

std::string fresh_open_id(State s) {
  if (s == State::kStopCopy) return "reopen/fresh-open-running";
  return "reopen/fresh-open-from-" + name(s);
}

}  // namespace

void Checker::check_reopen() {
  // Without a reset in between, so that whatever an abandoned session leaves behind shows.
  if (!has(uapi::kMigrationPreCopy)) {
    add("reopen/precopy-cycles", kReopen, Verdict::kSkip, "no PRE_COPY support");
  } else if (auto r = dev_.reset(); !r) {
    skip("reopen/precopy-cycles", kReopen, r.error());
  } else {
    auto migrate = [&]() -> Result<std::span<std::byte>> {
      for (int i = 0; i < kPrecopyCycles; ++i) {
        auto fd = request_device_state(dev_, State::kPreCopy);
        if (!fd)
          return fail(fd.error().code, fmt::format("cycle {}: R->PC failed with {}", i + 1,
                                                   errno_name(fd.error().code)));
        DataFd held(dev_, *fd);
        std::array<std::byte, kPartialRead> part;
        if (auto n = dev_.read(held.get(), part); !n)
          return fail(n.error().code, fmt::format("cycle {}: a {}-byte read failed with {}", i + 1,
                                                  kPartialRead, errno_name(n.error().code)));
        if (auto r = request_device_state(dev_, State::kRunning); !r)
          return fail(r.error().code, fmt::format("cycle {}: PC->R failed with {}", i + 1,
                                                  errno_name(r.error().code)));
      }
      auto fd = request_device_state(dev_, State::kPreCopy);
      if (!fd)
        return fail(fd.error().code,
                    "full migration: R->PC failed with " + errno_name(fd.error().code));
      DataFd held(dev_, *fd);
      Room& stream = scratch();
      const std::uint64_t cap = opt_.max_saved_stream + 1;
      // Pre-copy data up to its (temporary) end, then the rest in STOP_COPY.
      auto ended = append_stream(held.get(), opt_.buffer_size, cap, stream, /*precopy=*/true);
      if (!ended)
        return fail(ended.error().code, "full migration: pre-copy " + ended.error().message);
      if (!*ended) return fail(EFBIG, "full migration: pre-copy data beyond the bytes kept");
      if (auto r = request_device_state(dev_, State::kStopCopy); !r)
        return fail(r.error().code,
                    "full migration: PC->SC failed with " + errno_name(r.error().code));
      ended = append_stream(held.get(), opt_.buffer_size, cap, stream);
      if (!ended) return std::unexpected(ended.error());
      if (!*ended) return fail(EFBIG, "full migration: stream beyond the bytes kept");
      return stream.bytes();
    };
    auto stream = migrate();
    auto loaded = stream ? resume_stream(*stream, std::array{opt_.buffer_size})
                         : Result<>(std::unexpected(stream.error()));
    if (!loaded)
      add("reopen/precopy-cycles", kReopen, Verdict::kFail,
          fmt::format("{} cycles of R->PC, a {}-byte read, PC->R, then a full migration: {}",
                      kPrecopyCycles, kPartialRead, loaded.error().message));
    else
      add("reopen/precopy-cycles", kReopen, Verdict::kPass,
          fmt::format("{} cycles of R->PC, a {}-byte read, PC->R; then a full {}-byte pre-copy "
                      "migration loads",
                      kPrecopyCycles, kPartialRead, stream->size()));
  }

  if (!opt_.reopen) {
    const Error none{ENOTSUP, "the device cannot be reopened here (no reopen given)"};
    skip("reopen/second-stream", kReopen, none);
    for (State s : kLeftIn) skip(fresh_open_id(s), kReopen, none);
    return;
  }

  // Migrate into the same device, close, reopen, migrate again.
  auto second = [&]() -> Result<std::string> {
    // The first migration's save is the STOP_COPY check's.
    if (!saved_) return std::unexpected(saved_error_);
    const auto* first = &*saved_;
    if (auto r = resume_stream(*first, std::array{opt_.buffer_size}); !r)
      return fail(r.error().code, "first resume: " + r.error().message);
    if (auto r = reopen(); !r) return std::unexpected(r.error());
    // No reset: it could clear what the open forgot to. A device kept in STOP (mtty) saves from
    // there; one elsewhere is reset, and the detail says so.
    auto now = query_device_state(dev_);
    if (!now) return fail(now.error().code, "GET after the reopen failed");
    std::string how = "from " + name(*now);
    if (*now != State::kRunning && *now != State::kStop) {
      if (auto r = dev_.reset(); !r) return fail(r.error().code, "reset after the reopen failed");
      how += ", reset";
    }
    auto fd = request_device_state(dev_, State::kStopCopy);
    if (!fd)
      return fail(fd.error().code, fmt::format("second save: SET STOP_COPY {} failed with {}", how,
                                               errno_name(fd.error().code)));
    DataFd held(dev_, *fd);
    Room& again = scratch();
    auto ended = append_stream(held.get(), opt_.buffer_size, opt_.max_saved_stream + 1, again);
    if (!ended) return fail(ended.error().code, "second save: " + ended.error().message);
    if (!*ended) return fail(EFBIG, "second save: stream beyond the bytes kept");
    if (again.empty())
      return fail(ENODATA, fmt::format("second save ({}): an empty stream after a {}-byte first "
                                       "one",
                                       how, first->size()));
    if (auto r = resume_stream(again.bytes(), std::array{opt_.buffer_size}); !r)
      return fail(r.error().code,
                  fmt::format("second stream ({} bytes, first {}) does not load: {}", again.size(),
                              first->size(), r.error().message));
    return fmt::format(
        "first stream {} bytes, resumed; reopened; second stream ({}) {} bytes, "
        "resumed",
        first->size(), how, again.size());
  }();
  if (second)
    add("reopen/second-stream", kReopen, Verdict::kPass, *second);
  else if (!saved_)
    skip("reopen/second-stream", kReopen, second.error());
  else
    add("reopen/second-stream", kReopen, Verdict::kFail, second.error().message);

  // Left in each state but RUNNING, closed, opened again: STOP_COPY's check keeps its first name.
  for (State s : kLeftIn) check_fresh_open(s);
  (void)dev_.reset();
}

}  // namespace vfio::conform::detail

namespace vfio::conform::detail {

// Left in `s` (its data fd closed), closed, opened again: GET must say RUNNING.
void Checker::check_fresh_open(State s) {
  const std::string id = fresh_open_id(s);
  if (!uapi_has_state(s, flags_))
    return add(id, kReopen, Verdict::kSkip, name(s) + " not supported");
  const std::string how = fmt::format("left in {}, closed, reopened", name(s));
  auto fresh = [&]() -> Result<State> {
    {
      auto fd = enter(s);
      if (!fd) return std::unexpected(fd.error());
    }
    if (auto r = reopen(); !r) return std::unexpected(r.error());
    return query_device_state(dev_);
  }();
  if (!fresh)
    add(id, kReopen, Verdict::kFail, how + ": " + fresh.error().message);
  else if (*fresh == State::kRunning)
    add(id, kReopen, Verdict::kPass, how + ": GET RUNNING");
  else
    // The uAPI moves a device only by SETs and by a reset ("the kernel never changes the state
    // on its own, except by a reset"), and a VMM opening a device starts from RUNNING (QEMU's
    // vfio_migration_init sets its cached state to RUNNING without asking). A state kept from
    // the last user leaves the new one a session it holds no fd for.
    add(id, kReopen, Verdict::kFail,
        fmt::format("{}: GET {}, not RUNNING. A VMM opening a device starts from RUNNING (QEMU "
                    "sets it without a GET), and the uAPI moves a device only by SET and by "
                    "VFIO_DEVICE_RESET (\"which puts the device in RUNNING\"), so the close must "
                    "have reset it",
                    how, name(*fresh)));
  (void)dev_.reset();
}

}  // namespace vfio::conform::detail
