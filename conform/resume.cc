// conform: Resume: the saved stream loads, damaged ones do not.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::expect_resume_refused(std::string id, std::string_view what) {
  const auto r = request_device_state(dev_, State::kStop);
  const auto now = query_device_state(dev_);
  const std::string after = now ? std::string(uapi::state_name(*now)) : outcome(now);
  if (r)
    add(std::move(id), kResume, Verdict::kFail, fmt::format("{}: RS->S succeeded", what));
  else if (now && (*now == State::kResuming || *now == State::kError))
    add(std::move(id), kResume, Verdict::kPass,
        fmt::format("{}: RS->S failed with {}; state afterwards {}", what,
                    errno_name(r.error().code), after));
  else
    add(std::move(id), kResume, Verdict::kFail,
        fmt::format("{}: RS->S failed with {} but left the device in {} (RESUMING or ERROR "
                    "expected)",
                    what, errno_name(r.error().code), after));
}

void Checker::check_resume() {
  if (auto fd = enter(State::kResuming); !fd) {
    skip("resume/empty", kResume, fd.error());
  } else {
    expect_resume_refused("resume/empty", "nothing written");
  }

  if (!saved_) {
    for (auto id : {"resume/round-trip", "resume/truncated", "resume/corrupted"})
      skip(id, kResume, saved_error_);
    return;
  }
  const std::vector<std::byte>& stream = *saved_;

  if (auto fd = enter(State::kResuming); !fd) {
    skip("resume/round-trip", kResume, fd.error());
  } else {
    std::uint64_t written = 0;
    if (auto w = write_all(fd->get(), stream, written); !w) {
      add("resume/round-trip", kResume, Verdict::kFail,
          fmt::format("write failed with {} after {} of {} bytes", errno_name(w.error().code),
                      written, stream.size()));
    } else if (auto r = request_device_state(dev_, State::kStop); !r) {
      add("resume/round-trip", kResume, Verdict::kFail,
          fmt::format("RS->S failed with {} after writing the whole {}-byte stream",
                      errno_name(r.error().code), stream.size()));
    } else {
      auto now = query_device_state(dev_);
      const bool ok = now && *now == State::kStop;
      add("resume/round-trip", kResume, ok ? Verdict::kPass : Verdict::kFail,
          fmt::format("wrote {} bytes, RS->S ok, GET {}", stream.size(),
                      now ? name(*now) : outcome(now)));
    }
  }

  if (stream.size() < 2) {
    add("resume/truncated", kResume, Verdict::kSkip, "stream too short to truncate");
  } else if (auto fd = enter(State::kResuming); !fd) {
    skip("resume/truncated", kResume, fd.error());
  } else {
    const auto half = std::span(stream).first(stream.size() / 2);
    std::uint64_t written = 0;
    if (auto w = write_all(fd->get(), half, written); !w) {
      // The contract expects a prefix to be taken and refused at RS->S; refusing it earlier
      // still keeps the device from running on half a state.
      add("resume/truncated", kResume, Verdict::kDeviation,
          fmt::format("writing the first {} of {} bytes failed with {}", half.size(), stream.size(),
                      errno_name(w.error().code)));
    } else {
      expect_resume_refused("resume/truncated",
                            fmt::format("{} of {} bytes written", half.size(), stream.size()));
    }
  }

  if (stream.empty()) {
    add("resume/corrupted", kResume, Verdict::kSkip, "empty stream, nothing to corrupt");
  } else if (auto fd = enter(State::kResuming); !fd) {
    skip("resume/corrupted", kResume, fd.error());
  } else {
    // Flipped in place and back, not copied: a copy of a big stream costs more than its writes.
    const std::size_t at = stream.size() / 2;
    std::byte& flipped = (*saved_)[at];
    flipped = ~flipped;
    std::uint64_t written = 0;
    const auto w = write_all(fd->get(), stream, written);
    flipped = ~flipped;
    if (!w) {
      add("resume/corrupted", kResume, Verdict::kPass,
          fmt::format("byte {} flipped: write failed with {} after {} bytes", at,
                      errno_name(w.error().code), written));
    } else if (auto r = request_device_state(dev_, State::kStop); !r) {
      add("resume/corrupted", kResume, Verdict::kPass,
          fmt::format("byte {} flipped: RS->S failed with {}", at, errno_name(r.error().code)));
    } else {
      add("resume/corrupted", kResume,
          opt_.strict_resume_validation ? Verdict::kFail : Verdict::kDeviation,
          fmt::format("device accepted a corrupted stream (byte {} of {} flipped)", at,
                      stream.size()));
    }
  }
}

}  // namespace vfio::conform::detail
