// conform: Positional I/O. The kernel's data fds are streams: every in-tree driver opens them with
// stream_open, so pread and pwrite fail ESPIPE before the driver sees them. A driver that forgets
// it gets the caller's position in its read/write and either ignores it (hisi_acc's chunked-read
// bug of 2024 was an offset ignored) or indexes its buffers with it (an out-of-bounds access at a
// large one). Each pread/pwrite here must be refused, move no data, and leave the stream whole.
#include <fmt/format.h>

#include <limits>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

// Bytes per pread/pwrite, and the positions tried: small, large, and the last one a call of that
// length can start at (a position plus length past 2^63 - 1 is EINVAL in the VFS, not the
// driver's).
constexpr std::size_t kLen = 4096;
// How much of the stream read after the preads is compared with the saved one.
constexpr std::size_t kJudged = 4 << 20;
struct Position {
  std::string_view name;
  std::int64_t at;
};
constexpr std::array kPositions = {
    Position{"at-1", 1}, Position{"at-2^40", std::int64_t{1} << 40},
    Position{"near-2^63", std::numeric_limits<std::int64_t>::max() - std::int64_t{kLen}}};

std::string no_file(const Device& dev) {
  return fmt::format(
      "{}'s data fds are no files (the in-process simulator): there is no position "
      "to give; transport=fuse and kernel devices have one",
      dev.name());
}

// One pread or pwrite's verdict: refused passes; data moved, or an end of file at that position
// (a seekable file, not a stream), fails.
std::pair<Verdict, std::string> judge(const Result<std::size_t>& r, std::string_view call,
                                      std::int64_t at) {
  const std::string what = fmt::format("{} of {} bytes at {}", call, kLen, at);
  if (!r)
    return {Verdict::kPass, fmt::format("{}: refused with {}", what, errno_name(r.error().code))};
  if (*r == 0)
    return {Verdict::kFail,
            fmt::format("{}: returned 0 (end of file there) instead of an error: the data fd is "
                        "seekable, not a stream (the kernel's refuse a position with ESPIPE)",
                        what)};
  return {Verdict::kFail,
          fmt::format("{}: moved {} bytes instead of failing: the data fd takes a position (the "
                      "kernel's are streams and refuse one with ESPIPE)",
                      what, *r)};
}

}  // namespace

void Checker::check_positional() {
  check_positional_save(State::kStopCopy);
  if (has(uapi::kMigrationPreCopy)) {
    check_positional_save(State::kPreCopy);
  } else {
    for (const Position& p : kPositions)
      add(fmt::format("positional-io/pread-PC-{}", p.name), kPositional, Verdict::kSkip,
          "device has no PRE_COPY");
  }
  check_positional_resume();
}

// preads at each position on a fresh save fd in `s`, each followed by a plain read; in STOP_COPY
// the plain reads and the rest of the stream must then be the saved stream, whole.
void Checker::check_positional_save(State s) {
  const bool judge_stream = s == State::kStopCopy;
  auto id_of = [&](const Position& p) {
    return fmt::format("positional-io/pread-{}-{}", name(s), p.name);
  };
  const std::string intact = "positional-io/save-stream-intact";
  auto fd = enter(s);
  if (!fd) {
    for (const Position& p : kPositions) skip(id_of(p), kPositional, fd.error());
    if (judge_stream) skip(intact, kPositional, fd.error());
    return;
  }
  std::vector<std::byte> got, page(kLen);
  std::optional<Error> plain_error;
  for (const Position& p : kPositions) {
    auto r = dev_.read_at(fd->get(), page, p.at);
    if (!r) {
      for (const Position& q : kPositions)
        add(id_of(q), kPositional, Verdict::kSkip, no_file(dev_));
      if (judge_stream) add(intact, kPositional, Verdict::kSkip, no_file(dev_));
      return;
    }
    auto [v, detail] = judge(*r, "pread", p.at);
    add(id_of(p), kPositional, v, std::move(detail));
    if (plain_error) continue;
    auto n = dev_.read(fd->get(), page);
    if (!n)
      plain_error = n.error();
    else
      got.insert(got.end(), page.begin(), page.begin() + *n);
  }
  if (!judge_stream) return;
  if (!saved_) return skip(intact, kPositional, saved_error_);
  const std::vector<std::byte>& ref = *saved_;
  if (plain_error)
    return add(intact, kPositional, Verdict::kFail,
               fmt::format("a plain read after a refused pread failed with {}",
                           errno_name(plain_error->code)));
  // The stream as far as it is judged: all of a small one with its end, the start of a big one
  // (where the preads would have moved data), so a huge stream is not read again.
  const bool whole = ref.size() < kJudged;
  const std::span<const std::byte> want = std::span(ref).first(std::min(ref.size(), kJudged));
  auto judged = [&](int from, std::vector<std::byte> head) -> Result<bool> {
    auto rest = read_stream(from, opt_.buffer_size,
                            want.size() + (whole ? 1 : 0) - std::min(want.size(), head.size()));
    if (!rest) return std::unexpected(rest.error());
    head.insert(head.end(), rest->bytes.begin(), rest->bytes.end());
    // Reads come buffer_size at a time: a big stream's may run past `want`.
    if (whole) return rest->complete && std::ranges::equal(head, want);
    return head.size() >= want.size() &&
           std::ranges::equal(std::span(head).first(want.size()), want);
  };
  const std::string what = fmt::format(
      "{} refused preads, each followed by a {}-byte read, then reads on: {}", kPositions.size(),
      kLen,
      whole ? fmt::format("the whole {}-byte stream", ref.size())
            : fmt::format("the first {} bytes of the {}-byte stream", want.size(), ref.size()));
  auto same = judged(fd->get(), std::move(got));
  if (!same) return add(intact, kPositional, Verdict::kFail, "reading on: " + same.error().message);
  if (*same) return add(intact, kPositional, Verdict::kPass, what + " as saved: no data moved");
  // The control: a plain session. If it is not the saved stream either, the device's state moves
  // on its own and nothing can be told.
  auto again = enter(State::kStopCopy);
  auto control = again ? judged(again->get(), {}) : Result<bool>(std::unexpected(again.error()));
  if (control && *control)
    add(intact, kPositional, Verdict::kFail,
        what +
            " differ from the saved stream, which a plain session still gives: the preads "
            "moved data");
  else
    add(intact, kPositional, Verdict::kDeviation,
        what +
            " differ from the saved stream, and so does a plain session's: the device's "
            "state moves on its own, not judged");
}

// pwrites of junk at each position on a fresh resume fd, between pieces of the saved stream; the
// stream must then load (RS->S) and a reset bring the device back to RUNNING.
void Checker::check_positional_resume() {
  auto id_of = [](const Position& p) { return fmt::format("positional-io/pwrite-RS-{}", p.name); };
  const std::string intact = "positional-io/resume-intact";
  auto skip_all = [&](const Error& why) {
    for (const Position& p : kPositions) skip(id_of(p), kPositional, why);
    skip(intact, kPositional, why);
  };
  if (!saved_) return skip_all(saved_error_);
  const std::vector<std::byte>& ref = *saved_;
  auto fd = enter(State::kResuming);
  if (!fd) return skip_all(fd.error());
  // All ones: no record-based device reads it as an empty record and takes it.
  const std::vector<std::byte> junk(kLen, std::byte{0xff});
  const std::size_t piece = std::min(kLen, ref.size() / (kPositions.size() + 1));
  std::size_t done = 0;
  std::optional<Error> plain_error;
  for (const Position& p : kPositions) {
    std::uint64_t n = 0;
    if (!plain_error) {
      if (auto w = write_all(fd->get(), std::span(ref).subspan(done, piece), n); !w)
        plain_error = w.error();
      done += n;
    }
    auto r = dev_.write_at(fd->get(), junk, p.at);
    if (!r) {
      for (const Position& q : kPositions)
        add(id_of(q), kPositional, Verdict::kSkip, no_file(dev_));
      return add(intact, kPositional, Verdict::kSkip, no_file(dev_));
    }
    auto [v, detail] = judge(*r, "pwrite", p.at);
    add(id_of(p), kPositional, v, std::move(detail));
  }
  std::uint64_t n = 0;
  if (!plain_error) {
    if (auto w = write_all(fd->get(), std::span(ref).subspan(done), n); !w) plain_error = w.error();
    done += n;
  }
  const std::string what = fmt::format("the saved {}-byte stream written around {} refused pwrites",
                                       ref.size(), kPositions.size());
  if (plain_error)
    return add(
        intact, kPositional, Verdict::kFail,
        fmt::format("{}: a plain write failed with {} after {} bytes: the pwrites moved data", what,
                    errno_name(plain_error->code), done));
  if (auto r = request_device_state(dev_, State::kStop); !r)
    return add(intact, kPositional, Verdict::kFail,
               fmt::format("{}: RS->S failed with {}: the pwrites moved data into the stream", what,
                           errno_name(r.error().code)));
  if (auto r = dev_.reset(); !r)
    return add(intact, kPositional, Verdict::kFail,
               fmt::format("{}: loads; then VFIO_DEVICE_RESET failed with {}", what,
                           errno_name(r.error().code)));
  const auto now = query_device_state(dev_);
  if (!now || *now != State::kRunning)
    return add(
        intact, kPositional, Verdict::kFail,
        fmt::format("{}: loads; after a reset GET {}", what, now ? name(*now) : outcome(now)));
  add(intact, kPositional, Verdict::kPass, what + ": RS->S loads it; a reset then gives RUNNING");
}

}  // namespace vfio::conform::detail
