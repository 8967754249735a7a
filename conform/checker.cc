#include "conform/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>

#include "core/feature.h"
#include "core/state_machine.h"

namespace vfio::conform {
namespace {

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

std::string errno_name(int code) {
  if (const char* n = ::strerrorname_np(code)) return n;
  return fmt::format("errno {}", code);
}

template <class T>
std::string outcome(const Result<T>& r) {
  return r ? "success" : errno_name(r.error().code);
}

// Only whether a call succeeded, and its error.
template <class T>
Result<> status(const Result<T>& r) {
  if (r) return {};
  return std::unexpected(r.error());
}

std::string name(State s) {
  return std::string(uapi::state_short_name(s));
}

std::string flag_names(std::uint64_t flags) {
  std::string out;
  for (auto [bit, text] :
       {std::pair{uapi::kMigrationStopCopy, "STOP_COPY"}, std::pair{uapi::kMigrationP2p, "P2P"},
        std::pair{uapi::kMigrationPreCopy, "PRE_COPY"}})
    if (flags & bit) out += (out.empty() ? "" : "|") + std::string(text);
  return out.empty() ? "none" : out;
}

std::uint32_t flags_of(uapi::Feature f, std::uint32_t ops) {
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

class Checker {
 public:
  Checker(Device& dev, const Options& options)
      : dev_(dev), opt_(options), buf_(options.buffer_size) {
    report_.device = dev.name();
  }

  Report run() {
    auto flags = query_migration_flags(dev_);
    if (!flags) {
      add("migration/flags", kMigration, Verdict::kFail,
          fmt::format("GET MIGRATION failed with {}: no migration support",
                      errno_name(flags.error().code)));
      return std::move(report_);
    }
    flags_ = report_.mig_flags = *flags;
    add("migration/flags", kMigration,
        flags_ & uapi::kMigrationStopCopy ? Verdict::kPass : Verdict::kFail,
        fmt::format("{:#x} ({}){}", flags_, flag_names(flags_),
                    flags_ & uapi::kMigrationStopCopy ? "" : ": STOP_COPY (mandatory) missing"));
    // The STOP_COPY stream first: the arcs out of RESUMING need one to load.
    check_stop_copy();
    for (State cur : reachable_states())
      for (std::uint32_t t = 0; t < uapi::kStateCount; ++t) check_arc(cur, static_cast<State>(t));
    check_precopy();
    check_data_size();
    check_resume();
    check_reset();
    check_header();
    check_dma();
    (void)dev_.reset();  // leave the device running, with no session open
    // Report in the contract's order, whatever order the checks had to run in.
    std::stable_sort(report_.checks.begin(), report_.checks.end(),
                     [](const Check& a, const Check& b) { return rank(a.group) < rank(b.group); });
    return std::move(report_);
  }

  static std::size_t rank(std::string_view group) {
    static constexpr std::array kOrder = {kMigration, kArcs,  kStream, kPrecopy, kDataSize,
                                          kResume,    kReset, kHeader, kDma};
    return std::find(kOrder.begin(), kOrder.end(), group) - kOrder.begin();
  }

 private:
  void add(std::string id, std::string_view group, Verdict v, std::string detail) {
    report_.checks.push_back({std::move(id), std::string(group), v, std::move(detail)});
  }
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
      if (st != State::kError && state_supported(st, flags_)) out.push_back(st);
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
  // max_saved_stream (clearing it and setting `*kept` false beyond).
  ReadEnd read_until_end(int fd, std::vector<std::byte>* keep = nullptr, bool* kept = nullptr) {
    ReadEnd end;
    while (end.bytes < opt_.stream_limit) {
      auto n = dev_.read(fd, buf_);
      if (!n) {
        end.error = n.error();
        return end;
      }
      if (*n == 0) return end;
      end.bytes += *n;
      if (keep && *kept) {
        if (keep->size() + *n > opt_.max_saved_stream) {
          *kept = false;
          std::vector<std::byte>().swap(*keep);
        } else {
          keep->insert(keep->end(), buf_.begin(), buf_.begin() + *n);
        }
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
  void check_arc(State cur, State target) {
    std::string id = fmt::format("arc/{}->{}", name(cur), name(target));
    const bool hangs_linux = cur == State::kStopCopy && state_supported(target, flags_) &&
                             (target == State::kPreCopy || target == State::kPreCopyP2p);
    if (hangs_linux && !opt_.send_hanging_arcs) {
      return add(std::move(id), kArcs, Verdict::kSkip,
                 "not sent: Linux's vfio core loops forever on this refused request "
                 "(vfio_mig_get_next_state); --unsafe-arcs sends it");
    }
    auto held = enter(cur);
    if (!held) return skip(std::move(id), kArcs, held.error());
    const auto path = transition_path(cur, target, flags_);
    const bool legal = cur == target || !path.empty();
    // Leaving RESUMING consumes the resume data: give it a whole stream to accept.
    const bool resumes = cur == State::kResuming && !path.empty();
    if (resumes) {
      if (!saved_) return skip(std::move(id), kArcs, saved_error_);
      std::uint64_t written = 0;
      if (auto w = write_all(held->get(), *saved_, written); !w)
        return skip(std::move(id), kArcs,
                    Error{w.error().code,
                          "writing the saved stream failed with " + errno_name(w.error().code)});
    }

    FeatureCall set(flags_of(uapi::Feature::kMigDeviceState, uapi::kFeatureSet),
                    uapi::MigState{static_cast<std::uint32_t>(target), kFdSentinel});
    const auto r = set.run(dev_);
    const int data_fd = set.payload<uapi::MigState>().data_fd;
    DataFd produced(dev_, r && data_fd >= 0 ? data_fd : -1);
    const auto now = query_device_state(dev_);

    std::vector<std::string> problems;
    std::string summary;
    if (legal) {
      ArcEffect effect = ArcEffect::kNone;
      std::string route = name(cur);
      for (std::size_t i = 0; i < path.size(); ++i) {
        effect = arc_effect(i == 0 ? cur : path[i - 1], path[i]);
        route += "->" + name(path[i]);
      }
      const bool opens = effect == ArcEffect::kOpensSave || effect == ArcEffect::kOpensResume;
      const char* kind = effect == ArcEffect::kOpensSave ? "save" : "resume";
      if (!r) {
        problems.push_back(
            fmt::format("expected success ({}), got {}", route, errno_name(r.error().code)));
      } else if (opens && data_fd < 0) {
        problems.push_back(
            fmt::format("no data fd (data_fd {}); the last arc opens a {} session", data_fd, kind));
      } else if (!opens && data_fd != -1) {
        problems.push_back(fmt::format("data_fd {}, expected -1 (no session opened)", data_fd));
      }
      if (!now)
        problems.push_back("GET failed with " + errno_name(now.error().code));
      else if (r && *now != target)
        problems.push_back(fmt::format("GET reports {}, expected {}", name(*now), name(target)));
      summary =
          fmt::format("{}{} ok, GET {}, {}", resumes ? "saved stream written, " : "", route,
                      name(target), opens ? fmt::format("new {} data fd", kind) : "no data fd");
    } else {
      if (r)
        problems.push_back("expected EINVAL (refused), got success");
      else if (r.error().code != EINVAL)
        problems.push_back("expected EINVAL (refused), got " + errno_name(r.error().code));
      if (!r && data_fd >= 0)
        problems.push_back(fmt::format("data_fd {} after a failed SET", data_fd));
      if (!now)
        problems.push_back("GET failed with " + errno_name(now.error().code));
      else if (*now != cur)
        problems.push_back(fmt::format("state changed to {}", name(*now)));
      summary =
          fmt::format("refused with EINVAL ({}), state unchanged", refusal_reason(cur, target));
    }
    if (problems.empty()) return add(std::move(id), kArcs, Verdict::kPass, summary);
    std::string detail;
    for (const auto& p : problems) detail += (detail.empty() ? "" : "; ") + p;
    add(std::move(id), kArcs, Verdict::kFail, detail);
  }

  // Why the kernel refuses cur -> target.
  std::string refusal_reason(State cur, State target) const {
    if (target == State::kError) return "ERROR is never a target";
    if (!state_supported(target, flags_)) return name(target) + " not supported";
    return "no path from " + name(cur);
  }

  // 2a. STOP_COPY: data then 0 for good, MIG_DATA_SIZE close to the truth, SC->S ends the
  // session. Keeps the stream for the resume checks.
  void check_stop_copy() {
    auto fd = enter(State::kStopCopy);
    if (!fd) {
      saved_error_ = fd.error();
      for (auto id :
           {"stream/stop-copy-eof", "stream/stop-copy-eof-sticky", "stream/session-ends-SC->S"})
        skip(id, kStream, fd.error());
      return skip("data-size/stop-copy-estimate", kDataSize, fd.error());
    }
    const auto estimate = query_stop_copy_size(dev_);
    std::vector<std::byte> stream;
    bool kept = true;
    const ReadEnd end = read_until_end(fd->get(), &stream, &kept);
    if (end.error) {
      add("stream/stop-copy-eof", kStream, Verdict::kFail,
          fmt::format("read failed with {} after {} bytes", errno_name(end.error->code),
                      end.bytes));
    } else if (end.over_limit) {
      add("stream/stop-copy-eof", kStream, Verdict::kFail,
          fmt::format("no end of stream within {} bytes", end.bytes));
    } else {
      add("stream/stop-copy-eof", kStream, Verdict::kPass,
          fmt::format("{} bytes, then read() returned 0", end.bytes));
    }

    if (!end.zero()) {
      skip("stream/stop-copy-eof-sticky", kStream, Error{EIO, "no end of stream reached"});
    } else {
      std::string problem;
      for (int i = 0; i < 2 && problem.empty(); ++i) {
        auto n = dev_.read(fd->get(), buf_);
        if (!n)
          problem = "read after EOF failed with " + errno_name(n.error().code);
        else if (*n != 0)
          problem = fmt::format("read after EOF returned {} bytes", *n);
      }
      add("stream/stop-copy-eof-sticky", kStream, problem.empty() ? Verdict::kPass : Verdict::kFail,
          problem.empty() ? "read() after EOF returns 0 again (twice)" : problem);
    }

    if (!estimate) {
      add("data-size/stop-copy-estimate", kDataSize, Verdict::kFail,
          "GET MIG_DATA_SIZE in STOP_COPY failed with " + errno_name(estimate.error().code));
    } else if (!end.zero()) {
      skip("data-size/stop-copy-estimate", kDataSize, Error{EIO, "stream length unknown"});
    } else {
      const std::uint64_t actual = end.bytes, est = *estimate;
      const std::uint64_t diff = est > actual ? est - actual : actual - est;
      const auto allowed = std::max<std::uint64_t>(
          kSizeSlack,
          static_cast<std::uint64_t>(static_cast<double>(actual) * opt_.size_tolerance));
      // An estimate: a big mismatch misleads a VMM's downtime planning, but is not a violation.
      add("data-size/stop-copy-estimate", kDataSize,
          diff <= allowed ? Verdict::kPass : Verdict::kDeviation,
          fmt::format("estimate {} bytes, stream {} bytes{}", est, actual,
                      diff <= allowed ? "" : " (beyond the tolerance)"));
    }

    if (auto r = request_device_state(dev_, State::kStop); !r) {
      skip("stream/session-ends-SC->S", kStream,
           Error{r.error().code, "SET SC->S failed with " + errno_name(r.error().code)});
    } else {
      expect_error("stream/session-ends-SC->S", kStream, status(dev_.read(fd->get(), buf_)),
                   "read on the save fd after SC->S");
    }

    if (!end.zero())
      saved_error_ = Error{EIO, "no complete STOP_COPY stream"};
    else if (!kept)
      saved_error_ = Error{EFBIG, fmt::format("stream of {} bytes exceeds the {} bytes kept",
                                              end.bytes, opt_.max_saved_stream)};
    else
      saved_ = std::move(stream);
  }

  // 2b. PRE_COPY: PRECOPY_INFO in PC/PCP and not elsewhere, initial_bytes falling, and ENOMSG
  // at the temporary end of data.
  void check_precopy() {
    static constexpr std::array kIds = {"precopy/info-in-PC",
                                        "precopy/initial-bytes-fall",
                                        "precopy/info-short-argsz",
                                        "precopy/temporary-eof",
                                        "precopy/info-in-PCP",
                                        "precopy/info-in-SC-after-precopy",
                                        "precopy/info-on-stop-copy-session",
                                        "precopy/session-ends-PC->R"};
    constexpr std::size_t kSessionChecks = 6;  // kIds[0..5] share one precopy session
    if (!has(uapi::kMigrationPreCopy)) {
      for (auto id : kIds) add(id, kPrecopy, Verdict::kSkip, "device has no PRE_COPY");
      return;
    }
    auto info_call = [&](int fd, std::uint32_t argsz) -> Result<uapi::PrecopyInfo> {
      uapi::PrecopyInfo info{argsz, 0, 0, 0};
      if (auto r = dev_.precopy_info(fd, info); !r) return std::unexpected(r.error());
      return info;
    };

    if (auto fd = enter(State::kPreCopy); !fd) {
      for (std::size_t i = 0; i < kSessionChecks; ++i) skip(kIds[i], kPrecopy, fd.error());
    } else {
      const auto info0 = info_call(fd->get(), sizeof(uapi::PrecopyInfo));
      if (info0)
        add(kIds[0], kPrecopy, Verdict::kPass,
            fmt::format("initial_bytes {}, dirty_bytes {}", info0->initial_bytes,
                        info0->dirty_bytes));
      else
        expect_ok(kIds[0], kPrecopy, status(info0), "PRECOPY_INFO in PRE_COPY");

      // A small first read, so initial_bytes cannot drop to 0 by coincidence of chunk sizes.
      const std::size_t first = std::min<std::size_t>(buf_.size(), kPageSize);
      const auto n = dev_.read(fd->get(), std::span(buf_).first(first));
      const auto info1 = info_call(fd->get(), sizeof(uapi::PrecopyInfo));
      if (!info0 || !info1) {
        skip(kIds[1], kPrecopy, Error{EIO, "PRECOPY_INFO failed"});
      } else if (info0->initial_bytes == 0) {
        add(kIds[1], kPrecopy, Verdict::kSkip, "device reports no initial data");
      } else if (!n || *n == 0) {
        add(kIds[1], kPrecopy, Verdict::kFail,
            fmt::format("initial_bytes {} but the first read gave {}", info0->initial_bytes,
                        n ? "0" : errno_name(n.error().code)));
      } else {
        const bool fell = info1->initial_bytes < info0->initial_bytes;
        add(kIds[1], kPrecopy, fell ? Verdict::kPass : Verdict::kFail,
            fmt::format("initial_bytes {} -> {} after reading {} bytes", info0->initial_bytes,
                        info1->initial_bytes, *n));
      }

      expect_errno(kIds[2], kPrecopy, status(info_call(fd->get(), 16)), EINVAL,
                   "PRECOPY_INFO with argsz 16");

      const ReadEnd end = read_until_end(fd->get());
      const std::uint64_t total = end.bytes + (n ? *n : 0);
      if (end.over_limit)
        add(kIds[3], kPrecopy, Verdict::kFail,
            fmt::format("no end of precopy data within {} bytes", total));
      else if (!end.error)
        add(kIds[3], kPrecopy, Verdict::kDeviation,
            fmt::format("{} bytes, then read() returns 0 instead of ENOMSG, as mtty", total));
      else if (end.error->code == ENOMSG)
        add(kIds[3], kPrecopy, Verdict::kPass, fmt::format("{} bytes, then ENOMSG", total));
      else
        add(kIds[3], kPrecopy, Verdict::kFail,
            fmt::format("{} bytes, then read failed with {}, expected ENOMSG", total,
                        errno_name(end.error->code)));

      bool moved = true;
      if (!has(uapi::kMigrationP2p)) {
        add(kIds[4], kPrecopy, Verdict::kSkip, "device has no P2P");
      } else if (auto r = request_device_state(dev_, State::kPreCopyP2p); !r) {
        moved = false;
        skip(kIds[4], kPrecopy,
             Error{r.error().code, "SET PC->PCP failed with " + errno_name(r.error().code)});
      } else {
        DataFd extra(dev_, *r);  // the arc checks judge it; just do not leak it
        expect_ok(kIds[4], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))),
                  "PRECOPY_INFO in PRE_COPY_P2P");
      }

      if (!moved) {
        skip(kIds[5], kPrecopy, Error{EIO, "could not leave PRE_COPY_P2P"});
      } else if (auto r = request_device_state(dev_, State::kStopCopy); !r) {
        skip(kIds[5], kPrecopy,
             Error{r.error().code, "SET to STOP_COPY failed with " + errno_name(r.error().code)});
      } else {
        DataFd extra(dev_, *r);
        expect_errno(kIds[5], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))),
                     EINVAL, "PRECOPY_INFO on the precopy session once in STOP_COPY");
      }
    }

    if (auto fd = enter(State::kStopCopy); !fd) {
      skip(kIds[6], kPrecopy, fd.error());
    } else {
      expect_errno(kIds[6], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))),
                   EINVAL, "PRECOPY_INFO on a STOP_COPY session");
    }

    if (auto fd = enter(State::kPreCopy); !fd) {
      skip(kIds[7], kPrecopy, fd.error());
    } else if (auto r = request_device_state(dev_, State::kRunning); !r) {
      skip(kIds[7], kPrecopy,
           Error{r.error().code, "SET PC->R failed with " + errno_name(r.error().code)});
    } else {
      expect_error(kIds[7], kPrecopy, status(dev_.read(fd->get(), buf_)),
                   "read on the precopy fd after PC->R");
    }
  }

  // 2c. MIG_DATA_SIZE answers in every state the device has.
  void check_data_size() {
    for (State s : reachable_states()) {
      std::string id = "data-size/in-" + name(s);
      auto fd = enter(s);
      if (!fd) {
        skip(std::move(id), kDataSize, fd.error());
        continue;
      }
      auto size = query_stop_copy_size(dev_);
      if (size)
        add(std::move(id), kDataSize, Verdict::kPass, fmt::format("{} bytes", *size));
      else
        add(std::move(id), kDataSize, Verdict::kFail,
            fmt::format("GET MIG_DATA_SIZE in {} failed with {}", name(s),
                        errno_name(size.error().code)));
    }
  }

  // RS->S after an incomplete stream: it must fail and leave the device in RESUMING or ERROR.
  void expect_resume_refused(std::string id, std::string_view what) {
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

  // 2d. Resume: the saved stream loads; a truncated or corrupted one does not.
  void check_resume() {
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
            fmt::format("writing the first {} of {} bytes failed with {}", half.size(),
                        stream.size(), errno_name(w.error().code)));
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
      std::vector<std::byte> bad = stream;
      const std::size_t at = bad.size() / 2;
      bad[at] = ~bad[at];
      std::uint64_t written = 0;
      if (auto w = write_all(fd->get(), bad, written); !w) {
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
                        bad.size()));
      }
    }
  }

  // 2e. Reset from every state: RUNNING again, and the old data fd is dead.
  void check_reset() {
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
        auto n =
            dev_.read(fd->get(), std::span(buf_).first(std::min<std::size_t>(buf_.size(), 16)));
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

  // 3. How VFIO_DEVICE_FEATURE validates its header, in the kernel's order.
  void check_header() {
    using uapi::Feature;
    const auto get = uapi::kFeatureGet, set = uapi::kFeatureSet, probe = uapi::kFeatureProbe;
    const uapi::MigState running{static_cast<std::uint32_t>(State::kRunning), -1};
    // Each call on a fresh device; the payloads are harmless if a device wrongly accepts them.
    auto call = [&](FeatureCall c) -> Result<> {
      if (auto r = dev_.reset(); !r) return r;
      return c.run(dev_);
    };
    expect_errno(
        "header/argsz-below-8", kHeader,
        call(FeatureCall(flags_of(Feature::kMigration, get), uapi::MigrationFlags{}).argsz(4)),
        EINVAL, "GET MIGRATION with argsz 4");
    expect_errno("header/unknown-flag-bits", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigration, get | kUnknownFlagBit),
                                  uapi::MigrationFlags{})),
                 EINVAL, "GET MIGRATION with flag bit 19 set");
    expect_errno("header/get-and-set-without-probe", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigDeviceState, get | set), running)), EINVAL,
                 "GET|SET MIG_DEVICE_STATE");
    expect_errno("header/neither-get-nor-set", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigration, 0), uapi::MigrationFlags{})),
                 EINVAL, "MIGRATION without GET, SET or PROBE");
    expect_errno("header/unknown-feature", kHeader,
                 call(FeatureCall(kUnknownFeature | get, uapi::MigrationFlags{})), ENOTTY,
                 "GET feature 0x3f");
    expect_errno("header/unknown-feature-probe", kHeader,
                 call(FeatureCall(kUnknownFeature | get | probe)), ENOTTY, "PROBE feature 0x3f");
    expect_errno("header/set-on-get-only-MIGRATION", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigration, set), uapi::MigrationFlags{})),
                 EINVAL, "SET MIGRATION");
    expect_errno("header/set-on-get-only-MIG_DATA_SIZE", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigDataSize, set), uapi::MigDataSize{})),
                 EINVAL, "SET MIG_DATA_SIZE");
    expect_errno("header/probe-unsupported-op", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigration, set | probe))), EINVAL,
                 "PROBE SET MIGRATION");
    // The only SET-only features are the DMA logging ones; without them ENOTTY comes first.
    if (probe_feature(dev_, Feature::kDmaLoggingStop, set))
      expect_errno("header/get-on-set-only", kHeader,
                   call(FeatureCall(flags_of(Feature::kDmaLoggingStop, get))), EINVAL,
                   "GET DMA_LOGGING_STOP");
    else
      add("header/get-on-set-only", kHeader, Verdict::kSkip,
          "no SET-only feature without DMA logging");
    expect_errno(
        "header/short-payload-set", kHeader,
        call(FeatureCall(flags_of(Feature::kMigDeviceState, set), running).argsz(kHeaderSize + 4)),
        EINVAL, "SET MIG_DEVICE_STATE with a 4-byte payload");
    expect_errno("header/short-payload-get", kHeader,
                 call(FeatureCall(flags_of(Feature::kMigration, get), uapi::MigrationFlags{})
                          .argsz(kHeaderSize)),
                 EINVAL, "GET MIGRATION without a payload");
    expect_ok("header/probe-migration-get", kHeader,
              call(FeatureCall(flags_of(Feature::kMigration, get | probe))), "PROBE GET MIGRATION");
    expect_ok("header/probe-device-state-get-set", kHeader,
              call(FeatureCall(flags_of(Feature::kMigDeviceState, get | set | probe))),
              "PROBE GET|SET MIG_DEVICE_STATE");
  }

  // 4. DMA dirty logging: START's validation, REPORT and STOP; ENOTTY when not advertised.
  void check_dma() {
    using uapi::Feature;
    if (auto r = dev_.reset(); !r) {
      for (auto id : {"dma/start", "dma/report", "dma/stop"})
        skip(id, kDma, Error{r.error().code, "reset failed with " + errno_name(r.error().code)});
      return;
    }
    std::vector<uapi::DmaLoggingRange> ranges;
    std::array<std::uint64_t, kLogLength / kPageSize / 64> bitmap{};
    auto start = [&](std::uint32_t count) {
      uapi::DmaLoggingControl ctl{kPageSize, count, 0,
                                  reinterpret_cast<std::uintptr_t>(ranges.data())};
      return FeatureCall(flags_of(Feature::kDmaLoggingStart, uapi::kFeatureSet), ctl).run(dev_);
    };
    auto report = [&](std::uint64_t page_size) {
      uapi::DmaLoggingReport rep{0, kLogLength, page_size,
                                 reinterpret_cast<std::uintptr_t>(bitmap.data())};
      return FeatureCall(flags_of(Feature::kDmaLoggingReport, uapi::kFeatureGet), rep).run(dev_);
    };
    auto stop = [&] {
      return FeatureCall(flags_of(Feature::kDmaLoggingStop, uapi::kFeatureSet)).run(dev_);
    };

    if (!probe_feature(dev_, Feature::kDmaLoggingStart, uapi::kFeatureSet)) {
      ranges = {{0, kLogLength}};
      expect_errno("dma/unsupported-start", kDma, start(1), ENOTTY,
                   "DMA_LOGGING_START, not advertised");
      expect_errno("dma/unsupported-report", kDma, report(kPageSize), ENOTTY,
                   "DMA_LOGGING_REPORT, not advertised");
      expect_errno("dma/unsupported-stop", kDma, stop(), ENOTTY,
                   "DMA_LOGGING_STOP, not advertised");
      return;
    }

    // A START that must fail; if it did not, logging is stopped again before the next check.
    auto bad_start = [&](std::string id, std::vector<uapi::DmaLoggingRange> rs, std::uint32_t count,
                         int want, std::string_view what) {
      (void)dev_.reset();
      ranges = std::move(rs);
      auto r = start(count);
      if (r) (void)stop();
      expect_errno(std::move(id), kDma, r, want, what);
    };
    bad_start("dma/start-zero-ranges", {{0, kLogLength}}, 0, EINVAL, "START with 0 ranges");
    bad_start("dma/start-unaligned", {{kPageSize, kPageSize / 2}}, 1, EINVAL,
              "START with a range of half a page");
    bad_start("dma/start-overlap", {{0, 2 * kPageSize}, {kPageSize, 2 * kPageSize}}, 2, EINVAL,
              "START with overlapping ranges");
    std::vector<uapi::DmaLoggingRange> many(kMaxLogRanges + 1);
    for (std::size_t i = 0; i < many.size(); ++i) many[i] = {2 * i * kPageSize, kPageSize};
    bad_start("dma/start-too-many", std::move(many), kMaxLogRanges + 1, E2BIG,
              fmt::format("START with {} ranges", kMaxLogRanges + 1));
    bad_start("dma/start-overflow", {{~std::uint64_t{0} - kPageSize + 1, 2 * kPageSize}}, 1,
              EOVERFLOW, "START with iova + length past 2^64");

    (void)dev_.reset();
    // The contract says only that it fails; no errno is pinned.
    expect_error("dma/report-without-start", kDma, report(kPageSize), "REPORT before START");

    (void)dev_.reset();
    ranges = {{0, kLogLength}};
    const auto started = start(1);
    expect_ok("dma/start", kDma, started,
              fmt::format("START [0, {:#x}) in 4 KiB pages", kLogLength));
    if (!started) {
      for (auto id : {"dma/start-twice", "dma/report", "dma/report-bad-page-size", "dma/stop",
                      "dma/report-after-stop"})
        skip(id, kDma, Error{EIO, "START failed"});
      return;
    }
    // One START at a time; the errno is not pinned either.
    if (auto again = start(1); again) {
      add("dma/start-twice", kDma, Verdict::kDeviation,
          "a second START while logging succeeded (the contract allows one at a time)");
    } else {
      expect_error("dma/start-twice", kDma, again, "a second START while logging");
    }
    if (auto rep = report(kPageSize); !rep && rep.error().code == EOPNOTSUPP) {
      add("dma/report", kDma, Verdict::kDeviation,
          "REPORT failed with EOPNOTSUPP: the kernel cannot read dirty bits for this device "
          "(built without IOMMUFD_DRIVER?)");
    } else {
      expect_ok("dma/report", kDma, rep, "REPORT with 4 KiB pages");
    }
    expect_errno("dma/report-bad-page-size", kDma, report(1000), EINVAL,
                 "REPORT with page_size 1000");
    expect_ok("dma/stop", kDma, stop(), "STOP");
    expect_error("dma/report-after-stop", kDma, report(kPageSize), "REPORT after STOP");
  }

  Device& dev_;
  Options opt_;
  std::vector<std::byte> buf_;
  std::uint64_t flags_ = 0;
  Report report_;
  std::optional<std::vector<std::byte>> saved_;  // the STOP_COPY stream, for resume
  Error saved_error_{EIO, "no STOP_COPY stream"};
};

}  // namespace

Result<Report> check_device(Device& dev, const Options& options) {
  if (options.buffer_size == 0) return fail(EINVAL, "conformance: buffer size must not be 0");
  if (!(options.size_tolerance >= 0)) return fail(EINVAL, "conformance: negative size tolerance");
  return Checker(dev, options).run();
}

}  // namespace vfio::conform
