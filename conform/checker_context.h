// Internal to conform/: the checker's shared machinery (feature calls, data fds, verdict
// recording) and the Checker class, whose check groups live in conform/*.cc, one file per group.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "core/feature.h"

#include "conform/checker.h"
#include "conform/room.h"
#include "conform/uapi_arcs.h"

namespace vfio {
class KernelLog;
}

namespace vfio::conform::detail {

using uapi::State;

constexpr std::string_view kMigration = "migration";
constexpr std::string_view kArcs = "arcs";
constexpr std::string_view kStream = "stream";
constexpr std::string_view kPrecopy = "precopy";
constexpr std::string_view kDataSize = "data-size";
constexpr std::string_view kResume = "resume";
constexpr std::string_view kReset = "reset";
constexpr std::string_view kHeader = "header";
constexpr std::string_view kDma = "dma-logging";
constexpr std::string_view kDmaReport = "dma-report";
constexpr std::string_view kConcurrency = "concurrency";
constexpr std::string_view kAccounting = "precopy-accounting";
constexpr std::string_view kWatchdog = "watchdog";
// conform/reopen.cc, chunked.cc, overflow.cc
constexpr std::string_view kReopen = "reopen";
constexpr std::string_view kChunked = "chunked-io";
constexpr std::string_view kOverflow = "overflow";
// conform/positional.cc
constexpr std::string_view kPositional = "positional-io";
// conform/stale_fd.cc, fd_direction.cc, size_estimate.cc, set_invalid.cc, precopy_info.cc
constexpr std::string_view kStaleFd = "stale-fd";
constexpr std::string_view kFdDirection = "fd-direction";
constexpr std::string_view kSizeEstimate = "size-estimate";
constexpr std::string_view kSetInvalid = "set-invalid";
constexpr std::string_view kPrecopyInfo = "precopy-info";

constexpr std::uint32_t kHeaderSize = sizeof(uapi::FeatureHeader);
constexpr std::uint32_t kUnknownFeature = 0x3f;
constexpr std::uint32_t kUnknownFlagBit = 1u << 19;  // just above PROBE
// Never an fd: a SET that does not write data_fd back leaves this in place.
constexpr int kFdSentinel = -2;
constexpr std::uint64_t kPageSize = 4096;
// The kernel's limit on DMA logging ranges: PAGE_SIZE / sizeof(struct vfio_device_feature_dma_
// logging_range).
constexpr std::uint32_t kMaxLogRanges = kPageSize / sizeof(uapi::DmaLoggingRange);
constexpr std::uint64_t kLogLength = 1 << 20;  // the range logged by the DMA checks
// MIG_DATA_SIZE may be off by this much however small the stream (headers, rounding).
constexpr std::uint64_t kSizeSlack = 4096;

inline std::string errno_name(int code) {
  if (const char* n = ::strerrorname_np(code)) return n;
  return fmt::format("errno {}", code);
}

template <class T>
inline std::string outcome(const Result<T>& r) {
  return r ? "success" : errno_name(r.error().code);
}

// Only whether a call succeeded, and its error.
template <class T>
Result<> status(const Result<T>& r) {
  if (r) return {};
  return std::unexpected(r.error());
}

inline std::string name(State s) {
  return std::string(uapi::state_short_name(s));
}

inline std::string flag_names(std::uint64_t flags) {
  std::string out;
  for (auto [bit, text] :
       {std::pair{uapi::kMigrationStopCopy, "STOP_COPY"}, std::pair{uapi::kMigrationP2p, "P2P"},
        std::pair{uapi::kMigrationPreCopy, "PRE_COPY"}})
    if (flags & bit) out += (out.empty() ? "" : "|") + std::string(text);
  return out.empty() ? "none" : out;
}

inline std::uint32_t flags_of(uapi::Feature f, std::uint32_t ops) {
  return static_cast<std::uint32_t>(f) | ops;
}

// One VFIO_DEVICE_FEATURE call. argsz can be set apart from the payload so malformed calls can be
// made; the device is always handed the whole buffer, so it can read whatever argsz claims.
class FeatureCall {
 public:
  explicit FeatureCall(std::uint32_t flags) { buf_.header = {kHeaderSize, flags}; }
  template <class T>
  FeatureCall(std::uint32_t flags, const T& payload) : FeatureCall(flags) {
    static_assert(sizeof(T) <= sizeof(buf_.payload));
    std::memcpy(buf_.payload.data(), &payload, sizeof(T));
    buf_.header.argsz = kHeaderSize + sizeof(T);
  }
  FeatureCall& argsz(std::uint32_t n) {
    buf_.header.argsz = n;
    return *this;
  }
  Result<> run(Device& dev) { return dev.feature(std::as_writable_bytes(std::span(&buf_, 1))); }
  template <class T>
  T payload() const {
    T v;
    std::memcpy(&v, buf_.payload.data(), sizeof(T));
    return v;
  }

 private:
  struct Buffer {
    uapi::FeatureHeader header;
    alignas(8) std::array<std::byte, 56> payload{};
  };
  Buffer buf_{};
};

// A data fd a check holds; closed when the check is done with it, stale or not.
class DataFd {
 public:
  DataFd(Device& dev, int fd) : dev_(&dev), fd_(fd) {}
  DataFd(DataFd&& o) noexcept : dev_(o.dev_), fd_(std::exchange(o.fd_, -1)) {}
  DataFd& operator=(DataFd&&) = delete;
  ~DataFd() {
    if (fd_ >= 0) (void)dev_->close(fd_);
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  Device* dev_;
  int fd_;
};

// How reading a data fd until it stops producing data ended.
struct ReadEnd {
  std::uint64_t bytes = 0;
  std::optional<Error> error;  // unset: read() returned 0
  bool over_limit = false;     // still producing data at Options::stream_limit
  bool zero() const { return !error && !over_limit; }
};

// The device under check: forwards to the current open, which Options::reopen replaces. Between
// closing one open and getting the next (or after a failed reopen) every call fails ENODEV.
class CurrentDevice final : public Device {
 public:
  explicit CurrentDevice(Device& dev) : dev_(&dev), name_(dev.name()) {}
  void replace(Device* dev) {
    dev_ = dev;
    if (dev) name_ = dev->name();
  }

  Result<> feature(std::span<std::byte> arg) override {
    return dev_ ? dev_->feature(arg) : closed();
  }
  Result<> reset() override { return dev_ ? dev_->reset() : closed(); }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    return dev_ ? dev_->read(fd, buf) : closed();
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    return dev_ ? dev_->write(fd, buf) : closed();
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    return dev_ ? dev_->precopy_info(fd, info) : closed();
  }
  Result<> close(int fd) override { return dev_ ? dev_->close(fd) : closed(); }
  std::optional<Result<std::size_t>> read_at(int fd, std::span<std::byte> buf,
                                             std::int64_t offset) override {
    if (!dev_) return closed();
    return dev_->read_at(fd, buf, offset);
  }
  std::optional<Result<std::size_t>> write_at(int fd, std::span<const std::byte> buf,
                                              std::int64_t offset) override {
    if (!dev_) return closed();
    return dev_->write_at(fd, buf, offset);
  }
  Result<std::size_t> config_read(std::uint64_t off, std::span<std::byte> buf) override {
    return dev_ ? dev_->config_read(off, buf) : closed();
  }
  Result<std::size_t> config_write(std::uint64_t off, std::span<const std::byte> buf) override {
    return dev_ ? dev_->config_write(off, buf) : closed();
  }
  const std::string& name() const override { return name_; }

 private:
  static std::unexpected<Error> closed() { return fail(ENODEV, "device closed (reopen failed)"); }
  Device* dev_;
  std::string name_;
};

// A stream read from a save fd: `complete` when read() returned 0 (else it stopped at the cap).
struct SavedStream {
  std::vector<std::byte> bytes;
  bool complete = false;
};

class Checker {
 public:
  // `log`, when given, is watched for kernel trouble during each check; `current`, when given,
  // is the open under `dev` that Options::reopen replaces.
  Checker(Device& dev, const Options& options, std::unique_ptr<KernelLog> log,
          CurrentDevice* current = nullptr);
  ~Checker();

  Report run();
  // The checks recorded so far, in the order they ran; safe from another thread.
  Report snapshot() const;
  // Kernel trouble logged since the previous check, as a detail suffix ("; kernel log: N trouble
  // line(s) ..."), or "" when there is none or no log is watched; safe from another thread (the
  // watchdog's verdict quotes what a stuck call made the kernel log).
  std::string kernel_log_news();
  // Wall time since the last check was recorded; safe from another thread.
  std::chrono::microseconds since_last_check() const;

  static std::size_t rank(std::string_view group);

 private:
  // Records a check; kernel trouble logged since the previous one fails it.
  void add(std::string id, std::string_view group, Verdict v, std::string detail);
  void skip(std::string id, std::string_view group, const Error& setup) {
    add(std::move(id), group, Verdict::kSkip, "setup: " + setup.message);
  }

  void expect_errno(std::string id, std::string_view group, const Result<>& r, int want,
                    std::string_view what) {
    if (!r && r.error().code == want)
      add(std::move(id), group, Verdict::kPass, fmt::format("{}: {}", what, errno_name(want)));
    else
      add(std::move(id), group, Verdict::kFail,
          fmt::format("{}: expected {}, got {}", what, errno_name(want), outcome(r)));
  }
  void expect_error(std::string id, std::string_view group, const Result<>& r,
                    std::string_view what) {
    if (!r)
      add(std::move(id), group, Verdict::kPass,
          fmt::format("{}: failed with {}", what, errno_name(r.error().code)));
    else
      add(std::move(id), group, Verdict::kFail,
          fmt::format("{}: expected an error, got success", what));
  }
  void expect_ok(std::string id, std::string_view group, const Result<>& r, std::string_view what) {
    if (r)
      add(std::move(id), group, Verdict::kPass, fmt::format("{}: success", what));
    else
      add(std::move(id), group, Verdict::kFail,
          fmt::format("{}: expected success, got {}", what, errno_name(r.error().code)));
  }

  std::vector<State> reachable_states() const {
    std::vector<State> out;
    for (std::uint32_t s = 0; s < uapi::kStateCount; ++s) {
      const auto st = static_cast<State>(s);
      if (st != State::kError && uapi_has_state(st, flags_)) out.push_back(st);
    }
    return out;
  }
  bool has(std::uint64_t flag) const { return flags_ & flag; }

  // A fresh device moved to `s` by one SET; holds the data fd that SET produced, if any.
  Result<DataFd> enter(State s) {
    if (auto r = dev_.reset(); !r)
      return fail(r.error().code, "reset failed with " + errno_name(r.error().code));
    auto fd = request_device_state(dev_, s);
    if (!fd)
      return fail(fd.error().code,
                  fmt::format("SET R->{} failed with {}", name(s), errno_name(fd.error().code)));
    DataFd held(dev_, *fd);
    auto now = query_device_state(dev_);
    if (!now)
      return fail(now.error().code, fmt::format("GET after SET R->{} failed with {}", name(s),
                                                errno_name(now.error().code)));
    if (*now != s)
      return fail(EIO, fmt::format("SET R->{} left the device in {}", name(s), name(*now)));
    return held;
  }

  // Reads until read() returns 0 or fails; appends to `keep` while it stays under
  // max_saved_stream (clearing it and setting `*kept` false beyond). Kept bytes are read straight
  // into `keep`: reserve it, and a whole stream costs no copy.
  ReadEnd read_until_end(int fd, std::vector<std::byte>* keep = nullptr, bool* kept = nullptr) {
    ReadEnd end;
    while (end.bytes < opt_.stream_limit) {
      const bool keeping = keep && *kept;
      const std::size_t at = keeping ? keep->size() : 0;
      if (keeping) keep->resize(at + buf_.size());
      auto n = dev_.read(fd, keeping ? std::span(*keep).subspan(at) : std::span(buf_));
      if (keeping) keep->resize(at + (n ? *n : 0));
      if (!n) {
        end.error = n.error();
        return end;
      }
      if (*n == 0) return end;
      end.bytes += *n;
      if (keeping && keep->size() > opt_.max_saved_stream) {
        *kept = false;
        std::vector<std::byte>().swap(*keep);
      }
    }
    end.over_limit = true;
    return end;
  }

  // Writes all of `data`; on failure, the error and how much had been written.
  Result<> write_all(int fd, std::span<const std::byte> data, std::uint64_t& written) {
    written = 0;
    while (written < data.size()) {
      auto chunk =
          data.subspan(written, std::min<std::size_t>(opt_.buffer_size, data.size() - written));
      auto n = dev_.write(fd, chunk);
      if (!n) return std::unexpected(n.error());
      if (*n == 0) return fail(EIO, "write() returned 0");
      written += *n;
    }
    return {};
  }

  // 1. Every (current, target) pair: the SET succeeds or is refused as the kernel's table says,
  // GET agrees, and a data fd comes back exactly when the final arc opens a session.
  void check_arc(State cur, State target);

  // Why the kernel refuses cur -> target.
  std::string refusal_reason(State cur, State target) const {
    if (target == State::kError) return "ERROR is never a target";
    if (!uapi_has_state(target, flags_)) return name(target) + " not supported";
    return "no path from " + name(cur);
  }

  // 2a. STOP_COPY: data then 0 for good, MIG_DATA_SIZE close to the truth, SC->S ends the
  // session. Keeps the stream for the resume checks.
  void check_stop_copy();

  // 2b. PRE_COPY: PRECOPY_INFO in PC/PCP and not elsewhere, initial_bytes falling, and ENOMSG
  // at the temporary end of data.
  void check_precopy();

  // Why MIG_DATA_SIZE's `estimate` is wrong for `actual` bytes to send ("" when it is not): a VMM
  // plans the switchover from it, so 0 (or far off) while the device has data makes it stop the
  // guest for a stop-copy it thinks is free (an mlx5 bug class).
  std::string estimate_problem(std::uint64_t estimate, std::uint64_t actual) const {
    const std::uint64_t diff = estimate > actual ? estimate - actual : actual - estimate;
    const auto allowed = std::max<std::uint64_t>(
        kSizeSlack, static_cast<std::uint64_t>(static_cast<double>(actual) * opt_.size_tolerance));
    if (estimate == 0 && actual > 0) return ": 0 while the device has data to send";
    if (diff > allowed)
      return fmt::format(": off by {} bytes, beyond the tolerance of {}", diff, allowed);
    return "";
  }

  // 2c. MIG_DATA_SIZE answers in every state the device has.
  void check_data_size();

  // RS->S after an incomplete stream: it must fail and leave the device in RESUMING or ERROR.
  void expect_resume_refused(std::string id, std::string_view what);

  // 2d. Resume: the saved stream loads; a truncated or corrupted one does not.
  void check_resume();

  // 2e. Reset from every state: RUNNING again, and the old data fd is dead.
  void check_reset();

  // 3. How VFIO_DEVICE_FEATURE validates its header, in the kernel's order.
  void check_header();

  // 4. DMA dirty logging: START's validation, REPORT and STOP; ENOTTY when not advertised.
  void check_dma();

  // dma-report: REPORT's bitmap in one call and in windows, at page sizes up to 2^63, at
  // unaligned addresses, never written past (conform/dma_report.cc).
  void check_dma_report();
  // Concurrency and pre-copy accounting (conform/concurrency.cc, conform/accounting.cc).
  // 5a. A reset while another thread reads (SC, PC, PCP) or writes (RS) the data fd, a SET ending
  // the session while one reads (SC, PC); two threads reading one save fd (SC, PC) and writing
  // the end of one resume fd.
  void check_concurrency();
  void check_reset_against_io(State s, std::optional<State> end_by = std::nullopt);
  void check_two_readers(State s);
  Result<std::vector<std::byte>> session_prefix(State s, std::size_t limit);
  void check_two_writers();
  // 5b. PRECOPY_INFO against what the save fd really gives.
  void check_accounting();

  // Reopen and repeat, chunked I/O, overflowing resume (conform/reopen.cc, chunked.cc,
  // overflow.cc). Reopen last: it replaces the device.
  void check_reopen();
  // Left in `s`, closed, reopened: RUNNING (conform/reopen.cc).
  void check_fresh_open(State s);
  void check_chunked();
  void check_chunked_reads(const SavedStream& reference);
  void check_chunked_resume();
  void check_chunked_precopy();
  void check_overflow();
  // Closes the device and opens it again (Options::reopen); every DataFd must be gone.
  Result<> reopen();
  // Reads `fd` with `chunk` bytes per read() until read() returns 0 (with `precopy`, or fails
  // ENOMSG: pre-copy data's temporary end), or `cap` bytes are in.
  Result<SavedStream> read_stream(int fd, std::size_t chunk, std::uint64_t cap,
                                  bool precopy = false);
  // The same, read straight onto the end of `out` (a byte vector or a Room) until it holds `cap`
  // bytes; true when the end came.
  template <class Bytes>
  Result<bool> append_stream(int fd, std::size_t chunk, std::uint64_t cap, Bytes& out,
                             bool precopy = false) {
    const std::size_t start = out.size();
    while (out.size() < cap) {
      const std::size_t at = out.size();
      out.resize(at + chunk);
      auto n = dev_.read(fd, std::span(out.data() + at, chunk));
      out.resize(at + (n ? *n : 0));
      if (!n && precopy && n.error().code == ENOMSG) return true;
      if (!n)
        return fail(n.error().code, fmt::format("read of {} bytes failed with {} after {} bytes",
                                                chunk, errno_name(n.error().code), at - start));
      if (*n == 0) return true;
    }
    return false;
  }
  // The room for a whole stream besides saved_, emptied (conform/room.h).
  Room& scratch() {
    scratch_.resize(0);
    return scratch_;
  }
  // Whether `fd` reads back as `want`, then 0: read buffer_size bytes per read() and compared as
  // they come, so that a big stream costs no copy (at most want.size() + 1 bytes are read).
  Result<bool> reads_as(int fd, std::span<const std::byte> want, std::uint64_t& bytes);
  // Resumes `stream` into a fresh device, written chunks[0], chunks[1], ... bytes per write()
  // (cycling), and ends with RS->S; the device is then in STOP.
  Result<> resume_stream(std::span<const std::byte> stream, std::span<const std::size_t> chunks);

  // Positional I/O (conform/positional.cc): pread and pwrite at offsets on the save and resume
  // fds are refused, move no data, and leave the stream whole.
  void check_positional();
  void check_positional_save(State s);
  void check_positional_resume();

  // Data fds outside their session, MIG_DATA_SIZE in every state, SETs of states that do not
  // exist, PRECOPY_INFO against a concurrent reader and in PRE_COPY_P2P (conform/stale_fd.cc,
  // fd_direction.cc, size_estimate.cc, set_invalid.cc, precopy_info.cc).
  void check_stale_fds();
  void check_fd_direction();
  void check_size_estimate();
  void check_set_invalid();
  void check_precopy_info();
  // Reads `fd`, a save session in `s`, as far as `reference` (session_prefix of a session before
  // it) goes and judges the check `id`: the bytes must be the reference's, though `after`
  // happened first. A difference fails, unless a further session differs from the reference too
  // (the device's state moves by itself): a deviation then (conform/intact.cc).
  void judge_intact(std::string id, std::string_view group, State s, int fd,
                    std::span<const std::byte> reference, std::string_view after);
  // A call that must fail: any success fails the check, saying what came back.
  template <class T>
  void expect_refused(std::string id, std::string_view group, const Result<T>& r,
                      std::string_view what) {
    if (!r) return expect_error(std::move(id), group, status(r), what);
    add(std::move(id), group, Verdict::kFail,
        fmt::format("{}: expected an error, got {}", what, returned(*r)));
  }
  static std::string returned(std::size_t n) {
    return n ? fmt::format("{} bytes", n) : "0 (end of file)";
  }
  static std::string returned(const uapi::PrecopyInfo& info) {
    return fmt::format("initial_bytes {}, dirty_bytes {}", info.initial_bytes, info.dirty_bytes);
  }
  Result<uapi::PrecopyInfo> precopy_info_of(int fd) {
    uapi::PrecopyInfo info{sizeof(uapi::PrecopyInfo), 0, 0, 0};
    if (auto r = dev_.precopy_info(fd, info); !r) return std::unexpected(r.error());
    return info;
  }

  Device& dev_;
  CurrentDevice* current_;
  Options opt_;
  std::vector<std::byte> buf_;
  std::uint64_t flags_ = 0;
  std::unique_ptr<KernelLog> log_;
  std::mutex log_mu_;             // log_ from add() and from the watchdog
  mutable std::mutex report_mu_;  // add() against snapshot() from the watchdog
  Report report_;
  std::chrono::steady_clock::time_point last_added_ = std::chrono::steady_clock::now();
  std::optional<std::vector<std::byte>> saved_;  // the STOP_COPY stream, for resume
  Error saved_error_{EIO, "no STOP_COPY stream"};
  Room scratch_;  // scratch()
};

}  // namespace vfio::conform::detail
