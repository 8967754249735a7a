// conform: Concurrency: a reset (or a SET ending the session) against a thread doing I/O on the
// data fd, and two threads on one data fd. Verdicts never depend on how the threads interleave.
// Threads are simply joined: every device call goes through the watchdog, which reports one stuck
// past Options::call_timeout (watchdog/kernel-hang, naming it) and abandons the device and this
// check's thread with it.
#include <fmt/format.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

// What a check and its I/O thread share. The thread signals `started` before its first call and
// waits for `released` before its last: the one call begun after the reset (or SET) returned.
struct ResetRace {
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool released = false;  // the reset returned
  bool reset_ok = false;
  std::uint64_t before = 0;                  // bytes moved by calls begun before the release
  std::optional<Result<std::size_t>> after;  // the call begun after a successful reset
};

// Two threads on one fd; both start their calls together to make them overlap.
struct Pair {
  std::mutex mu;
  std::condition_variable cv;
  int ready = 0;
  void arrive() {
    std::unique_lock lock(mu);
    ++ready;
    cv.notify_all();
    cv.wait(lock, [&] { return ready >= 2; });
  }
};

// Whether `a` and `b` (each thread's chunks, in its own order) interleave into exactly
// stream[0, total): the chunks tile the stream, none overlapping or repeated.
bool tiles(std::span<const std::byte> stream, const std::vector<std::vector<std::byte>>& a,
           const std::vector<std::vector<std::byte>>& b) {
  std::vector<std::uint64_t> pa{0}, pb{0};
  for (const auto& c : a) pa.push_back(pa.back() + c.size());
  for (const auto& c : b) pb.push_back(pb.back() + c.size());
  if (pa.back() + pb.back() > stream.size()) return false;
  auto fits = [&](const std::vector<std::byte>& c, std::uint64_t at) {
    return std::equal(c.begin(), c.end(), stream.begin() + at);
  };
  // Reachable (i, j): a[0, i) and b[0, j) interleave into the stream's first pa[i] + pb[j].
  std::set<std::pair<std::size_t, std::size_t>> seen{{0, 0}};
  std::vector<std::pair<std::size_t, std::size_t>> todo{{0, 0}};
  while (!todo.empty()) {
    auto [i, j] = todo.back();
    todo.pop_back();
    if (i == a.size() && j == b.size()) return true;
    const std::uint64_t at = pa[i] + pb[j];
    if (i < a.size() && fits(a[i], at) && seen.insert({i + 1, j}).second)
      todo.push_back({i + 1, j});
    if (j < b.size() && fits(b[j], at) && seen.insert({i, j + 1}).second)
      todo.push_back({i, j + 1});
  }
  return false;
}

}  // namespace

void Checker::check_concurrency() {
  check_reset_against_io(State::kStopCopy);
  if (has(uapi::kMigrationPreCopy))
    check_reset_against_io(State::kPreCopy);
  else
    add("concurrency/reset-during-read-PC", kConcurrency, Verdict::kSkip, "device has no PRE_COPY");
  if (has(uapi::kMigrationPreCopy) && has(uapi::kMigrationP2p))
    check_reset_against_io(State::kPreCopyP2p);
  else
    add("concurrency/reset-during-read-PCP", kConcurrency, Verdict::kSkip,
        "device has no PRE_COPY_P2P");
  check_reset_against_io(State::kResuming);
  // A SET ending the session while a thread reads: the fd dies with the session as with a reset.
  check_reset_against_io(State::kStopCopy, State::kStop);
  if (has(uapi::kMigrationPreCopy))
    check_reset_against_io(State::kPreCopy, State::kRunning);
  else
    add("concurrency/set-during-read-PC", kConcurrency, Verdict::kSkip, "device has no PRE_COPY");
  check_two_readers(State::kStopCopy);
  if (has(uapi::kMigrationPreCopy))
    check_two_readers(State::kPreCopy);
  else
    add("concurrency/two-readers-PC", kConcurrency, Verdict::kSkip, "device has no PRE_COPY");
  check_two_writers();
}

// With `end_by`, the racing call is SET `end_by` (ending the session) instead of the reset.
void Checker::check_reset_against_io(State s, std::optional<State> end_by) {
  const bool writing = s == State::kResuming;
  const std::string id = fmt::format("concurrency/{}-during-{}-{}", end_by ? "set" : "reset",
                                     writing ? "write" : "read", name(s));
  const std::string ender =
      end_by ? fmt::format("SET {}->{}", name(s), name(*end_by)) : "VFIO_DEVICE_RESET";
  const State after = end_by.value_or(State::kRunning);
  const std::string call = writing ? "write() on the resume fd" : "read() on the save fd";
  if (writing && !saved_) return skip(id, kConcurrency, saved_error_);
  auto fd = enter(s);
  if (!fd) return skip(id, kConcurrency, fd.error());

  // The writer keeps the stream's last byte back: a device that ignored the reset takes it.
  std::vector<std::byte> data;
  if (writing)
    data.assign(saved_->begin(),
                saved_->begin() + std::min<std::size_t>(saved_->size(), kPageSize * 16 + 1));
  const std::size_t chunk = writing ? std::max<std::size_t>(1, (data.size() - 1) / 16) : kPageSize;
  ResetRace race;
  std::thread io([&race, &data, chunk, writing, dev = &dev_, fd = fd->get()] {
    std::vector<std::byte> buf(chunk);
    std::size_t off = 0;
    auto call = [&](std::size_t n) -> Result<std::size_t> {
      if (!writing) return dev->read(fd, buf);
      return dev->write(fd, std::span(data).subspan(off, n));
    };
    {
      std::lock_guard lock(race.mu);
      race.started = true;
    }
    race.cv.notify_all();
    bool more = true;
    for (;;) {
      bool released;
      {
        std::unique_lock lock(race.mu);
        if (!more) race.cv.wait(lock, [&] { return race.released; });
        released = race.released;
        if (released && !race.reset_ok) return;
      }
      const std::size_t want = writing ? std::min(chunk, data.size() - 1 - off) : chunk;
      auto r = call(released && writing ? 1 : want);
      std::lock_guard lock(race.mu);
      if (released) {
        race.after = r;
        return;
      }
      if (r && *r > 0) {
        race.before += *r;
        off += writing ? *r : 0;
      }
      // Out of data, at the end of it or failing: the next call waits for the reset.
      more = r && *r > 0 && !(writing && off + 1 >= data.size());
    }
  });

  {
    std::unique_lock lock(race.mu);
    race.cv.wait(lock, [&] { return race.started; });
  }
  // The reset from a thread of its own too: the race is between two threads of the check.
  Result<> reset = fail(EIO, "no reset");
  std::thread resetter(
      [&] { reset = end_by ? status(request_device_state(dev_, *end_by)) : dev_.reset(); });
  resetter.join();
  {
    std::lock_guard lock(race.mu);
    race.released = true;
    race.reset_ok = bool(reset);
  }
  race.cv.notify_all();
  io.join();

  if (!reset)
    return add(id, kConcurrency, Verdict::kFail,
               ender + " failed with " + errno_name(reset.error().code));
  const auto now = query_device_state(dev_);
  if (!now || *now != after)
    return add(id, kConcurrency, Verdict::kFail,
               fmt::format("GET after the {}: {}, expected {}", ender,
                           now ? name(*now) : outcome(now), uapi::state_name(after)));
  // How far the I/O thread got depends on timing: only a failure says it, to debug with.
  if (!race.after || *race.after)
    return add(id, kConcurrency, Verdict::kFail,
               fmt::format("{} after {} bytes of {}; a later {} {}: the fd outlived the {}", ender,
                           race.before, call, writing ? "write" : "read",
                           race.after ? fmt::format("returned {}", **race.after) : "was not made",
                           end_by ? "session" : "reset"));
  add(id, kConcurrency, Verdict::kPass,
      fmt::format("{} during {}; a later call failed with {}; GET {}", ender, call,
                  errno_name(race.after->error().code), uapi::state_name(after)));
}

// The first `limit` bytes of a fresh session in `s` (STOP_COPY or PRE_COPY, whose temporary end
// ends it), read by this thread alone.
Result<std::vector<std::byte>> Checker::session_prefix(State s, std::size_t limit) {
  auto fd = enter(s);
  if (!fd) return std::unexpected(fd.error());
  std::vector<std::byte> out;
  while (out.size() < limit) {
    auto n = dev_.read(fd->get(), std::span(buf_).first(std::min(buf_.size(), limit - out.size())));
    if (!n && s == State::kPreCopy && n.error().code == ENOMSG) break;
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    out.insert(out.end(), buf_.begin(), buf_.begin() + *n);
  }
  return out;
}

// Two threads reading one save fd in `s` (STOP_COPY or PRE_COPY).
void Checker::check_two_readers(State s) {
  const std::string id =
      s == State::kStopCopy ? "concurrency/two-readers" : "concurrency/two-readers-" + name(s);
  // At most kReads reads each: enough to interleave, without reading a huge stream again. The
  // reference is what one reader gets from a session before and one after; if they differ the
  // device's state moves on its own (a running guest) and there is nothing to compare with.
  constexpr int kReads = 64;
  auto before = session_prefix(s, 2 * kReads * kPageSize);
  if (!before) return skip(id, kConcurrency, before.error());
  const std::vector<std::byte>& stream = *before;
  auto fd = enter(s);
  if (!fd) return skip(id, kConcurrency, fd.error());
  const std::size_t chunk = std::clamp<std::size_t>(stream.size() / 32, 1, kPageSize);
  struct Reader {
    std::vector<std::vector<std::byte>> chunks;
    std::optional<Error> error;
    bool eof = false;
  };
  struct Shared {
    Pair pair;
    Reader readers[2];
  };
  Shared shared;
  const bool precopy = s == State::kPreCopy;
  auto run = [&shared, chunk, precopy, dev = &dev_, fd = fd->get()](int k) {
    Reader& me = shared.readers[k];
    std::vector<std::byte> buf(chunk);
    shared.pair.arrive();
    for (int i = 0; i < kReads; ++i) {
      auto n = dev->read(fd, buf);
      const bool end = n ? *n == 0 : precopy && n.error().code == ENOMSG;  // a temporary end
      if (!n && !end) me.error = n.error();
      if (!n || *n == 0) {
        me.eof = end;
        return;
      }
      me.chunks.emplace_back(buf.begin(), buf.begin() + *n);
    }
  };
  std::thread first(run, 0), second(run, 1);
  first.join();
  second.join();
  std::uint64_t total = 0;
  bool eof = false;
  for (const Reader& r : shared.readers) {
    if (r.error)
      return add(id, kConcurrency, Verdict::kFail,
                 "a read racing another failed with " + errno_name(r.error->code));
    for (const auto& c : r.chunks) total += c.size();
    eof |= r.eof;
  }
  const auto& [a, b] = shared.readers;
  // How the reads split between the threads depends on timing: only failures say it.
  const std::string counts =
      fmt::format("{} + {} reads, {} bytes", a.chunks.size(), b.chunks.size(), total);
  if (tiles(stream, a.chunks, b.chunks)) {
    if (eof && total < stream.size())
      return add(id, kConcurrency, Verdict::kFail,
                 fmt::format("{}: end of stream before its {} bytes", counts, stream.size()));
    return add(id, kConcurrency, Verdict::kPass,
               fmt::format("two threads read {} bytes in {}-byte reads: the chunks tile what a "
                           "single reader gets",
                           total, chunk));
  }
  auto after = session_prefix(s, stream.size());
  if (after && *after != stream)
    return add(id, kConcurrency, Verdict::kDeviation,
               "the device's stream changed between two single-reader sessions (its state "
               "moves on its own): two readers not judged");
  add(id, kConcurrency, Verdict::kFail,
      counts +
          ": the chunks do not tile what a single reader gets (overlapping, repeated or "
          "foreign data)");
}

void Checker::check_two_writers() {
  static constexpr std::string_view id = "concurrency/two-writers";
  if (!saved_) return skip(std::string(id), kConcurrency, saved_error_);
  const std::vector<std::byte>& stream = *saved_;
  // The bound the writers race for: the stream's length, if the device enforces it.
  {
    auto fd = enter(State::kResuming);
    if (!fd) return skip(std::string(id), kConcurrency, fd.error());
    std::uint64_t written = 0;
    if (auto w = write_all(fd->get(), stream, written); !w)
      return skip(std::string(id), kConcurrency,
                  Error{w.error().code, fmt::format("writing the stream failed with {}",
                                                    errno_name(w.error().code))});
    if (auto extra = dev_.write(fd->get(), std::span(stream).first(1)); extra)
      return add(std::string(id), kConcurrency, Verdict::kSkip,
                 "the device takes bytes past the stream's end: no bound to race for");
  }
  auto fd = enter(State::kResuming);
  if (!fd) return skip(std::string(id), kConcurrency, fd.error());
  const std::size_t tail = std::clamp<std::size_t>(stream.size() / 4, 1, kPageSize);
  std::uint64_t written = 0;
  if (auto w = write_all(fd->get(), std::span(stream).first(stream.size() - tail), written); !w)
    return skip(std::string(id), kConcurrency,
                Error{w.error().code, fmt::format("writing the stream failed with {}",
                                                  errno_name(w.error().code))});
  // Both threads write the same last `tail` bytes: the device has room for one of them.
  struct Shared {
    Pair pair;
    std::vector<std::byte> tail;
    std::optional<Result<std::size_t>> got[2];
  };
  Shared shared;
  shared.tail.assign(stream.end() - tail, stream.end());
  auto run = [&shared, dev = &dev_, fd = fd->get()](int k) {
    shared.pair.arrive();
    shared.got[k] = dev->write(fd, shared.tail);
  };
  std::thread first(run, 0), second(run, 1);
  first.join();
  second.join();
  std::uint64_t accepted = 0;
  for (const auto& g : shared.got) accepted += *g ? **g : 0;
  const std::string what =
      fmt::format("{} of {} bytes written, then two threads wrote the last {}: {} accepted",
                  stream.size() - tail, stream.size(), tail, accepted);
  if (accepted > tail)
    return add(std::string(id), kConcurrency, Verdict::kFail,
               what + ", more than the device's bound (it refuses a byte past the stream alone)");
  if (accepted < tail)
    return add(std::string(id), kConcurrency, Verdict::kFail,
               what + ": the stream cannot be completed");
  const auto r = request_device_state(dev_, State::kStop);
  add(std::string(id), kConcurrency, r ? Verdict::kPass : Verdict::kFail,
      fmt::format("{}; RS->S {}", what, outcome(r)));
}

}  // namespace vfio::conform::detail
