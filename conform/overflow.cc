// conform: Overflowing resume. Bytes past what the device's state can hold are refused with an
// errno (the uAPI names ENOMEM for a stream larger than expected), and a reset recovers the
// device: a driver that trusts the writer's lengths overruns its buffers.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

// Junk after a complete stream: all ones, so that no record-based device reads it as empty
// records (a zero length) and takes it.
constexpr std::byte kJunk{0xff};
// How far past a complete stream the writes go.
constexpr std::uint64_t kOverflowBytes = 16 << 20;
// The single huge write: the stream, then this much more in the same write().
constexpr std::uint64_t kHugeExtra = 1ULL << 30;

}  // namespace

void Checker::check_overflow() {
  static constexpr std::array kIds = {"overflow/past-state-size", "overflow/huge-write",
                                      "overflow/recovers"};
  if (!saved_) {
    for (auto id : kIds) skip(id, kOverflow, saved_error_);
    return;
  }
  const std::vector<std::byte>& ref = *saved_;

  // Writes `data` (the whole stream, then junk) in writes of at most `chunk` bytes, until one
  // fails; judges whether the device refused the bytes past the stream.
  // Writes `stream` (none: it leads `junk`), then `total` bytes of `junk`, repeated, one
  // write() per `junk` until one fails; judges whether the device refused the bytes past the
  // stream.
  auto overflow = [&](std::string id, std::span<const std::byte> stream,
                      std::span<const std::byte> junk, std::uint64_t total, std::string_view how) {
    auto fd = enter(State::kResuming);
    if (!fd) return skip(std::move(id), kOverflow, fd.error());
    std::uint64_t first = 0;
    if (auto w = write_all(fd->get(), stream, first); !w)
      return skip(
          std::move(id), kOverflow,
          Error{w.error().code, fmt::format("the stream itself was refused with {} after {} "
                                            "bytes",
                                            errno_name(w.error().code), first)});
    std::uint64_t done = 0;
    while (done < total) {
      const std::size_t at = done % junk.size();
      auto n = dev_.write(
          fd->get(), junk.subspan(at, std::min<std::uint64_t>(junk.size() - at, total - done)));
      if (!n)
        return add(std::move(id), kOverflow, Verdict::kPass,
                   fmt::format("{}: refused with {}, {} bytes taken (the stream is {} bytes)", how,
                               errno_name(n.error().code), first + done, ref.size()));
      if (*n == 0) break;
      done += *n;
    }
    const std::uint64_t taken = first + done, past = taken - ref.size();
    const auto r = request_device_state(dev_, State::kStop);
    if (r)
      add(std::move(id), kOverflow, Verdict::kFail,
          fmt::format("{}: took all {} bytes, {} past the {}-byte stream, and RS->S succeeded", how,
                      taken, past, ref.size()));
    else
      add(std::move(id), kOverflow, Verdict::kDeviation,
          fmt::format("{}: took all {} bytes, {} past the {}-byte stream, and refused them only "
                      "at RS->S ({})",
                      how, taken, past, ref.size(), errno_name(r.error().code)));
  };

  {
    const std::vector<std::byte> junk(std::min<std::uint64_t>(kOverflowBytes, opt_.buffer_size),
                                      kJunk);
    overflow(
        kIds[0], ref, junk, kOverflowBytes,
        fmt::format("the stream, then {} junk bytes {} per write()", kOverflowBytes, junk.size()));
  }
  // In the scratch room: it keeps its pages for reopen's streams, and the 1 GiB after the stream
  // reads as zeros without costing memory. One junk page right after the stream.
  Room& huge = scratch();
  if (!huge.try_resize(ref.size() + kHugeExtra)) {
    skip(kIds[1], kOverflow, Error{ENOMEM, "cannot map the huge write's buffer"});
  } else {
    std::copy(ref.begin(), ref.end(), huge.data());
    std::fill_n(huge.data() + ref.size(), kPageSize, kJunk);
    huge.zero_from(ref.size() + kPageSize);
    overflow(kIds[1], {}, huge.bytes(), huge.size(),
             fmt::format("one write() of the stream then {} more bytes", kHugeExtra));
  }

  if (auto r = dev_.reset(); !r)
    return add(kIds[2], kOverflow, Verdict::kFail,
               "VFIO_DEVICE_RESET after the overflows failed with " + errno_name(r.error().code));
  auto now = query_device_state(dev_);
  if (!now || *now != State::kRunning)
    return add(kIds[2], kOverflow, Verdict::kFail,
               "GET after the reset: " + (now ? name(*now) : outcome(now)));
  if (auto loaded = resume_stream(ref, std::array{opt_.buffer_size}); !loaded)
    add(kIds[2], kOverflow, Verdict::kFail,
        "reset ok, GET RUNNING, but resuming the saved stream then failed: " +
            loaded.error().message);
  else
    add(kIds[2], kOverflow, Verdict::kPass,
        fmt::format("reset ok, GET RUNNING; the saved {}-byte stream resumes", ref.size()));
}

}  // namespace vfio::conform::detail
