#include "simdev/sim_device.h"

#include <fmt/format.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/state_machine.h"

namespace vfio::sim {
namespace {

using uapi::State;

constexpr std::uint64_t kConfigSalt = 0xc0f1c0f1c0f1c0f1ULL;
constexpr std::uint32_t kMaxLogRanges = 4096 / sizeof(uapi::DmaLoggingRange);  // PAGE_SIZE/16

bool is_precopy(State s) {
  return s == State::kPreCopy || s == State::kPreCopyP2p;
}
bool is_running(State s) {
  return s == State::kRunning || s == State::kRunningP2p || is_precopy(s);
}

template <class T>
T load(std::span<const std::byte> bytes) {
  T v;
  std::memcpy(&v, bytes.data(), sizeof(T));
  return v;
}
template <class T>
void store(std::span<std::byte> bytes, const T& v) {
  std::memcpy(bytes.data(), &v, sizeof(T));
}

// A refusal, formatted out of line. Built in place, every refusal's temporaries would share
// the frame of the call that may refuse, and sanitizer builds set up that whole frame on each
// call (feature_call's was 3 KiB): the fuzz targets' loads into many devices ran a quarter
// faster without.
template <class T = void, class... Args>
[[gnu::noinline, gnu::cold]] Result<T> refuse(int code, fmt::format_string<Args...> format,
                                              Args... args) {
  return std::unexpected(Error{code, fmt::format(format, std::move(args)...)});
}

// What the kernel's vfio_check_feature needs to know about a feature.
struct FeatureSpec {
  std::uint32_t ops;  // kFeatureGet and/or kFeatureSet
  std::size_t minsz;  // payload bytes
  bool dma;           // needs DMA logging support
};

std::optional<FeatureSpec> spec_of(std::uint32_t index) {
  switch (static_cast<uapi::Feature>(index)) {
    case uapi::Feature::kMigration:
      return FeatureSpec{uapi::kFeatureGet, sizeof(uapi::MigrationFlags), false};
    case uapi::Feature::kMigDeviceState:
      return FeatureSpec{uapi::kFeatureGet | uapi::kFeatureSet, sizeof(uapi::MigState), false};
    case uapi::Feature::kMigDataSize:
      return FeatureSpec{uapi::kFeatureGet, sizeof(uapi::MigDataSize), false};
    case uapi::Feature::kDmaLoggingStart:
      return FeatureSpec{uapi::kFeatureSet, sizeof(uapi::DmaLoggingControl), true};
    case uapi::Feature::kDmaLoggingStop:
      return FeatureSpec{uapi::kFeatureSet, 0, true};
    case uapi::Feature::kDmaLoggingReport:
      return FeatureSpec{uapi::kFeatureGet, sizeof(uapi::DmaLoggingReport), true};
  }
  return std::nullopt;
}

// Sets bit `i` of a user bitmap laid out as an array of u64 (the kernel's unsigned long).
void set_user_bit(std::byte* bitmap, std::uint64_t i) {
  std::uint64_t byte = (i / 64) * 8 + (i % 64) / 8;
  if constexpr (std::endian::native == std::endian::big) byte = (i / 64) * 8 + 7 - (i % 64) / 8;
  bitmap[byte] |= static_cast<std::byte>(1u << (i % 8));
}

}  // namespace

SimDevice::SimDevice(const Profile& profile, SimOptions options)
    : profile_(&profile),
      options_(options),
      accrued_at_(std::chrono::steady_clock::now()),
      image_{options.seed, options.state_size.value_or(profile.default_state_size)},
      config_(options.config_size) {
  // Config space: deterministic bytes from the seed under a PCI-looking type 0 header.
  render_body(mix64(options.seed ^ kConfigSalt), 0, config_);
  auto put = [&](std::size_t off, unsigned v) {
    if (off < config_.size()) config_[off] = static_cast<std::byte>(v);
  };
  put(0, 0xf4), put(1, 0x1a);                                                // vendor 0x1af4
  put(2, 0xf0 | (options.seed & 0xf)), put(3, 0x10);                         // device 0x10fX
  put(4, 0), put(5, 0), put(6, 0), put(7, 0);                                // command, status
  put(8, options.seed & 0xff);                                               // revision
  put(9, 0), put(10, 0), put(11, 0xff), put(12, 0), put(13, 0), put(14, 0);  // class ff, type 0
}

State SimDevice::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

Image SimDevice::image() const {
  std::lock_guard lock(mu_);
  return image_;
}

void SimDevice::set_image(Image image) {
  std::lock_guard lock(mu_);
  image_ = image;
}

bool SimDevice::mutate() {
  std::lock_guard lock(mu_);
  if (!is_running(state_)) return false;
  image_ = mutated(image_);
  return true;
}

bool SimDevice::guest_write(std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  accrue_locked();
  if (!is_running(state_) || image_.size == 0) return false;
  image_.written = std::min(image_.written + bytes, kMaxCursor);
  return true;
}

void SimDevice::accrue_locked() {
  const auto now = std::chrono::steady_clock::now();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - accrued_at_).count();
  if (options_.dirty_rate == 0 || !is_running(state_) || image_.size == 0) {
    accrued_at_ = now;
    return;
  }
  const auto bytes = static_cast<std::uint64_t>(static_cast<unsigned __int128>(ns) *
                                                options_.dirty_rate / 1'000'000'000);
  if (bytes == 0) return;  // keep the time: slow rates still add up
  image_.written = std::min(image_.written + bytes, kMaxCursor);
  accrued_at_ = now;
}

std::uint64_t SimDevice::stream_size() const {
  std::lock_guard lock(mu_);
  return stream_length(*profile_, image_);
}

Result<> SimDevice::feature(std::span<std::byte> arg, const FdOpener& open_fd) {
  return noted(feature_call(arg, open_fd));
}

Result<std::size_t> SimDevice::write(SessionId id, std::span<const std::byte> buf) {
  return noted(write_call(id, buf));
}

template <class T>
Result<T> SimDevice::noted(Result<T> r) {
  std::lock_guard lock(mu_);
  if (r)
    refusal_.reset();
  else
    refusal_ = r.error();
  return r;
}

std::optional<std::string> SimDevice::take_refusal(int code) {
  std::lock_guard lock(mu_);
  auto refusal = std::exchange(refusal_, std::nullopt);
  if (!refusal || refusal->code != code) return std::nullopt;
  return std::move(refusal->message);
}

Result<> SimDevice::feature_call(std::span<std::byte> arg, const FdOpener& open_fd) {
  if (arg.size() < sizeof(uapi::FeatureHeader))
    return refuse(EFAULT, "feature header cannot be read");
  const auto hdr = load<uapi::FeatureHeader>(arg);
  if (hdr.argsz < sizeof(hdr)) return refuse(EINVAL, "argsz {} < 8", hdr.argsz);
  if (hdr.argsz > arg.size())
    return refuse(EFAULT, "argsz {} exceeds the {} readable bytes", hdr.argsz, arg.size());
  constexpr std::uint32_t kKnown =
      uapi::kFeatureMask | uapi::kFeatureGet | uapi::kFeatureSet | uapi::kFeatureProbe;
  if (hdr.flags & ~kKnown) return refuse(EINVAL, "unknown flags {:#x}", hdr.flags);
  const bool get = hdr.flags & uapi::kFeatureGet, set = hdr.flags & uapi::kFeatureSet,
             probe = hdr.flags & uapi::kFeatureProbe;
  if (get && set && !probe) return refuse(EINVAL, "GET and SET together without PROBE");

  const std::uint32_t index = hdr.flags & uapi::kFeatureMask;
  const auto spec = spec_of(index);
  if (!spec) return refuse(ENOTTY, "unknown feature {}", index);
  if (profile_->mig_flags == 0) return refuse(ENOTTY, "device has no migration support");
  if (spec->dma && !profile_->dma_logging)
    return refuse(ENOTTY, "feature {} needs DMA logging support", index);
  if ((get && !(spec->ops & uapi::kFeatureGet)) || (set && !(spec->ops & uapi::kFeatureSet)))
    return refuse(EINVAL, "feature {} does not support {}", index, get ? "GET" : "SET");
  if (probe) return {};
  if (!get && !set) return refuse(EINVAL, "neither GET nor SET");
  const std::span<std::byte> payload = arg.subspan(sizeof(hdr), hdr.argsz - sizeof(hdr));
  if (payload.size() < spec->minsz)
    return refuse(EINVAL, "payload of {} bytes, feature {} needs {}", payload.size(), index,
                  spec->minsz);

  switch (static_cast<uapi::Feature>(index)) {
    case uapi::Feature::kMigration:
      store(payload, uapi::MigrationFlags{profile_->mig_flags});
      return {};
    case uapi::Feature::kMigDeviceState:
      return feature_device_state(payload, hdr.flags, open_fd);
    case uapi::Feature::kMigDataSize: {
      std::lock_guard lock(mu_);
      accrue_locked();
      store(payload, uapi::MigDataSize{data_size_locked()});
      return {};
    }
    case uapi::Feature::kDmaLoggingStart:
      return dma_logging_start(payload);
    case uapi::Feature::kDmaLoggingStop: {
      std::lock_guard lock(mu_);
      logging_ = false;
      log_ranges_.clear();
      dirty_.clear();
      return {};
    }
    case uapi::Feature::kDmaLoggingReport:
      return dma_logging_report(payload);
  }
  return refuse(ENOTTY, "unreachable feature");
}

Result<> SimDevice::feature_device_state(std::span<std::byte> payload, std::uint32_t flags,
                                         const FdOpener& open_fd) {
  auto mig = load<uapi::MigState>(payload);
  mig.data_fd = -1;
  if (flags & uapi::kFeatureGet) {
    std::lock_guard lock(mu_);
    mig.device_state = static_cast<std::uint32_t>(state_);
    store(payload, mig);
    return {};
  }
  // As the kernel: on failure the struct goes back with data_fd -1 and the requested state.
  store(payload, mig);
  const auto target = static_cast<State>(mig.device_state);
  std::optional<SessionId> opened;
  {
    std::unique_lock lock(mu_);
    accrue_locked();  // the writes made while the device still ran
    if (hangs_locked(target)) {
      ++hung_arcs_;
      hang_released_cv_.wait_for(lock, kHangLimit, [this] { return hang_released_; });
      return refuse(EINVAL,
                    "transition {} -> {} hung (as Linux 6.12's "
                    "vfio_mig_get_next_state does) and was released",
                    uapi::state_name(state_), uapi::state_name(target));
    }
    const State start = state_;
    while (state_ != target) {
      const auto next = next_arc(state_, target, profile_->mig_flags);
      if (!next)
        return refuse(EINVAL, "transition {} -> {} refused", uapi::state_name(state_),
                      uapi::state_name(target));
      auto arc = apply_arc(state_, *next);
      if (!arc) {
        land_after_failed_arc(start, state_);
        return std::unexpected(arc.error());
      }
      state_ = *next;
      if (*arc) {
        if (state_ != target) {  // only the final arc may produce a channel (a kernel WARN)
          std::erase(open_, **arc);
          return refuse(EINVAL, "intermediate arc opened a data channel");
        }
        opened = **arc;
      }
    }
  }
  if (opened) {
    // Outside the lock: the transport may do anything, including calling back into us.
    auto fd = open_fd(*opened);
    if (!fd) {
      release(*opened);
      return std::unexpected(fd.error());
    }
    mig.data_fd = *fd;
    store(payload, mig);
  }
  return {};
}

SimDevice::ArcResult SimDevice::apply_arc(State from, State to) {
  switch (arc_effect(from, to)) {
    case ArcEffect::kOpensSave: {
      const SessionId id = new_session_locked();
      const bool precopy = is_precopy(to) && (options_.framed_precopy || options_.dirty_rate ||
                                              options_.dirty_per_read);
      save_ = SaveSession{
          .id = id,
          .image = image_,
          .precopy = precopy,
          .initial_length = (precopy ? kPreambleSize : 0) + stream_length(*profile_, image_),
          .record = {},
          .sent = image_.written,
          .not_ready = profile_->nonblock_eagain};
      return id;
    }
    case ArcEffect::kOpensResume: {
      const SessionId id = new_session_locked();
      resume_.emplace(ResumeSession{id, ResumeValidator(*profile_)});
      return id;
    }
    case ArcEffect::kEndsSave:
      save_.reset();
      return std::nullopt;
    case ArcEffect::kConsumesResume: {
      if (!resume_) return refuse<std::optional<SessionId>>(EINVAL, "no resume data");
      const ResumeValidator& v = resume_->validator;
      if (!v.header_valid())
        return refuse<std::optional<SessionId>>(EINVAL, "resume stream header {} after {} bytes",
                                                v.framing_bad() ? "malformed" : "incomplete",
                                                v.received());
      if (!v.bytes_ok())
        return refuse<std::optional<SessionId>>(EINVAL, "resume stream does not match its header");
      if (!v.complete())
        return refuse<std::optional<SessionId>>(EINVAL, "resume stream truncated: {} of {} bytes",
                                                v.received(), v.expected_length());
      image_ = *v.image();
      resume_.reset();
      return std::nullopt;
    }
    case ArcEffect::kNone:
      // PC/PCP -> SC continues the session; an async driver prepares the final data again.
      if (to == State::kStopCopy && save_ && profile_->nonblock_eagain) save_->not_ready = true;
      return std::nullopt;
  }
  return std::nullopt;
}

void SimDevice::land_after_failed_arc(State start, State from) {
  // The device is still at `from`. A last-good driver stays there; others only manage that
  // when nothing had changed yet (first arc), and otherwise give up in ERROR.
  if (!profile_->failed_arc_lands_last_good && from != start) state_ = State::kError;
}

SimDevice::SessionId SimDevice::new_session_locked() {
  const SessionId id = next_session_++;
  open_.push_back(id);
  return id;
}

Result<> SimDevice::check_session_locked(SessionId id, const char* op) const {
  if (std::ranges::find(open_, id) == open_.end())
    return refuse(EBADF, "{}: no data session {}", op, id);
  if ((save_ && save_->id == id) || (resume_ && resume_->id == id)) return {};
  return refuse(ENODEV, "{}: data session {} is stale", op, id);
}

std::uint64_t SimDevice::data_size_locked() const {
  using Piece = SaveSession::Piece;
  if (save_ && (state_ == State::kStopCopy || is_precopy(state_))) {
    const SaveSession& s = *save_;
    const std::uint64_t trailer = !s.precopy || s.piece == Piece::kDone ? 0
                                  : s.piece == Piece::kTrailer          ? kTrailerSize - s.offset
                                                                        : kTrailerSize;
    return initial_left_locked() + dirty_left_locked() + trailer;
  }
  return stream_length(*profile_, image_);
}

std::uint64_t SimDevice::initial_left_locked() const {
  const SaveSession& s = *save_;
  return s.piece == SaveSession::Piece::kInitial ? s.initial_length - s.offset : 0;
}

std::uint64_t SimDevice::initial_end_locked() const {
  const SaveSession& s = *save_;
  if (!profile_->precopy_header_only || !is_precopy(state_)) return s.initial_length;
  const std::uint64_t header = (s.precopy ? kPreambleSize : 0) + stream_header_size(*profile_);
  return std::min(s.initial_length, header);
}

DirtyRange SimDevice::next_record_locked() const {
  const SaveSession& s = *save_;
  // Writes up to the end of the record being read are covered already (`sent` moves there only
  // when it is done): counting them again would over-report dirty_bytes mid-record.
  const std::uint64_t sent = s.record.length ? s.record.cursor + s.record.length : s.sent;
  // A rewrite (mutate) replaced the seed: the session keeps its snapshot, no dirty data.
  if (image_.seed != s.image.seed || image_.written <= sent) return {};
  // A writer that lapped the reader: only the last body's worth is still visible.
  const std::uint64_t from =
      std::max(sent, image_.written - std::min(image_.written, s.image.size));
  return {from, image_.written - from};
}

std::uint64_t SimDevice::dirty_left_locked() const {
  const SaveSession& s = *save_;
  using Piece = SaveSession::Piece;
  if (s.piece == Piece::kTrailer || s.piece == Piece::kDone) return 0;
  std::uint64_t left = 0;
  if (s.piece == Piece::kRecords && s.record.length)
    left = dirty_record_length(s.record.length) - s.offset;
  return left + dirty_record_length(next_record_locked().length);
}

Result<std::size_t> SimDevice::read(SessionId id, std::span<std::byte> buf, bool nonblock) {
  using Piece = SaveSession::Piece;
  std::uint64_t pos;
  std::size_t n;
  SaveSession at;  // what to render, copied out of the lock
  {
    std::lock_guard lock(mu_);
    if (auto ok = check_session_locked(id, "read"); !ok) return std::unexpected(ok.error());
    // The kernel's resume files are O_WRONLY: the VFS refuses a read before the driver sees it.
    if (!save_ || save_->id != id) return fail(EBADF, "read: resume sessions are write-only");
    SaveSession& s = *save_;
    if (s.not_ready) {
      s.not_ready = false;  // a blocking read would have waited for it
      if (nonblock) return fail(EAGAIN, "read: no data ready yet");
    }
    if (buf.empty()) return 0;
    const bool precopy = is_precopy(state_);
    accrue_locked();
    // The guest keeps writing while the engine reads: the deterministic dirty rate.
    if (precopy && options_.dirty_per_read && image_.size)
      image_.written = std::min(image_.written + options_.dirty_per_read, kMaxCursor);
    auto precopy_eof = [this]() -> Result<std::size_t> {
      if (!profile_->precopy_eof_returns_zero)
        return fail(ENOMSG, "read: no more precopy data for now");
      return 0;
    };
    if (s.piece == Piece::kInitial && s.offset == initial_end_locked()) {
      if (s.offset < s.initial_length) return precopy_eof();  // the body waits for STOP_COPY
      s.piece = Piece::kRecords;
      s.offset = 0;
    }
    if (s.piece == Piece::kRecords && s.offset == dirty_record_length(s.record.length)) {
      // The current record is done (or there is none): cut the next from the writes since.
      if (s.record.length) s.sent = s.record.cursor + s.record.length;
      s.record = next_record_locked();
      s.offset = 0;
      if (!s.record.length) {
        if (precopy) return precopy_eof();
        // Stopped: the writes are final. A pre-copy session says where they ended.
        s.piece = s.precopy ? Piece::kTrailer : Piece::kDone;
      }
    }
    if (s.piece == Piece::kTrailer && s.offset == kTrailerSize) s.piece = Piece::kDone;
    if (s.piece == Piece::kDone) return 0;
    const std::uint64_t limit = s.piece == Piece::kInitial   ? initial_end_locked()
                                : s.piece == Piece::kRecords ? dirty_record_length(s.record.length)
                                                             : kTrailerSize;
    n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), limit - s.offset));
    pos = s.offset;
    s.offset += n;
    at = s;
  }
  // The rendering depends only on what was copied out: no lock needed for the bulk work.
  std::span<std::byte> out = buf.first(n);
  switch (at.piece) {
    case Piece::kInitial: {
      const std::uint64_t pre = at.precopy ? kPreambleSize : 0;
      if (pos < pre) {
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(pre - pos, n));
        render_preamble(pos, out.first(k));
        out = out.subspan(k);
        pos += k;
      }
      render_stream(*profile_, at.image, pos - pre, out);
      break;
    }
    case Piece::kRecords:
      render_dirty_record(at.image, at.record, pos, out);
      break;
    case Piece::kTrailer:
      render_trailer(at.sent, pos, out);
      break;
    case Piece::kDone:
      break;
  }
  return n;
}

Result<std::size_t> SimDevice::write_call(SessionId id, std::span<const std::byte> buf) {
  std::lock_guard lock(mu_);
  if (auto ok = check_session_locked(id, "write"); !ok) return std::unexpected(ok.error());
  if (!resume_ || resume_->id != id)
    return refuse<std::size_t>(EBADF, "write: save sessions are read-only");  // O_RDONLY files
  ResumeSession& r = *resume_;
  if (r.write_failed && profile_->sticky_write_error)
    return refuse<std::size_t>(ENODEV, "write: an earlier write failed");
  switch (r.validator.feed(buf)) {
    case ResumeValidator::Feed::kOk:
      return buf.size();
    case ResumeValidator::Feed::kBadHeader:
      if (profile_->bad_header_errno == 0) return buf.size();  // surfaces at RS->S
      r.write_failed = true;
      return refuse<std::size_t>(profile_->bad_header_errno,
                                 "write: malformed stream header or record");
    case ResumeValidator::Feed::kOverflow:
      r.write_failed = true;
      return refuse<std::size_t>(ENOMEM, "write: stream longer than the {} bytes declared",
                                 r.validator.expected_length());
  }
  return refuse<std::size_t>(EINVAL, "write: unreachable");
}

Result<> SimDevice::precopy_info(SessionId id, uapi::PrecopyInfo& info) {
  std::lock_guard lock(mu_);
  if (auto ok = check_session_locked(id, "precopy info"); !ok) return std::unexpected(ok.error());
  // The drivers' resume files have no ioctl handler: ENOTTY before anything is looked at.
  if (!save_ || save_->id != id) return fail(ENOTTY, "precopy info: not a save session");
  if (info.argsz < sizeof(uapi::PrecopyInfo))
    return fail(EINVAL, fmt::format("precopy info: argsz {} < 24", info.argsz));
  if (!is_precopy(state_))
    return fail(EINVAL, fmt::format("precopy info: device in {}", uapi::state_name(state_)));
  accrue_locked();
  info.flags = 0;
  // A body held back for STOP_COPY (precopy_header_only) is no pre-copy data, and the dirty
  // records behind it cannot be read either. Reads stop before it, so the session is still in
  // its initial piece.
  const std::uint64_t held = save_->initial_length - initial_end_locked();
  info.initial_bytes = initial_left_locked() - held;
  info.dirty_bytes = held ? 0 : dirty_left_locked();
  return {};
}

void SimDevice::release(SessionId id) {
  std::lock_guard lock(mu_);
  std::erase(open_, id);
}

Result<> SimDevice::reset() {
  std::lock_guard lock(mu_);
  reset_locked();
  return {};
}

void SimDevice::restore(const Image& image, std::span<const std::byte> config) {
  std::lock_guard lock(mu_);
  reset_locked();
  image_ = image;
  std::copy_n(config.begin(), std::min(config.size(), config_.size()), config_.begin());
  refusal_.reset();
}

void SimDevice::reset_locked() {
  // deferred_reset (mtty) differs only in timing we do not model: callers see a finished reset.
  state_ = State::kRunning;
  save_.reset();
  resume_.reset();
  logging_ = false;
  log_ranges_.clear();
  dirty_.clear();
}

void SimDevice::open_device() {
  std::lock_guard lock(mu_);
  ++users_;
}

void SimDevice::close_device() {
  std::lock_guard lock(mu_);
  if (users_ > 0) --users_;
  if (users_ > 0) return;
  if (!options_.keep_state.value_or(profile_->keeps_state_on_close)) reset_locked();
  unused_cv_.notify_all();
}

bool SimDevice::wait_unused(std::chrono::milliseconds limit) const {
  std::unique_lock lock(mu_);
  return unused_cv_.wait_for(lock, limit, [&] { return users_ == 0; });
}

bool SimDevice::hangs_locked(State target) const {
  // Linux refuses an unsupported target before its walk; only a supported one spins.
  return options_.hang_stop_copy_to_precopy && state_ == State::kStopCopy &&
         (target == State::kPreCopy || target == State::kPreCopyP2p) &&
         state_supported(target, profile_->mig_flags);
}

std::size_t SimDevice::hung_arcs() const {
  std::lock_guard lock(mu_);
  return hung_arcs_;
}

void SimDevice::release_hangs() {
  {
    std::lock_guard lock(mu_);
    hang_released_ = true;
  }
  hang_released_cv_.notify_all();
}

Result<std::size_t> SimDevice::config_read(std::uint64_t offset, std::span<std::byte> buf) const {
  std::lock_guard lock(mu_);
  if (offset > config_.size())
    return fail(EINVAL, fmt::format("config read at {} beyond {} bytes", offset, config_.size()));
  const std::size_t n = std::min<std::uint64_t>(buf.size(), config_.size() - offset);
  std::memcpy(buf.data(), config_.data() + offset, n);
  return n;
}

Result<std::size_t> SimDevice::config_write(std::uint64_t offset, std::span<const std::byte> buf) {
  std::lock_guard lock(mu_);
  if (offset > config_.size())
    return fail(EINVAL, fmt::format("config write at {} beyond {} bytes", offset, config_.size()));
  const std::size_t n = std::min<std::uint64_t>(buf.size(), config_.size() - offset);
  std::memcpy(config_.data() + offset, buf.data(), n);
  return n;
}

std::vector<std::byte> SimDevice::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

Result<> SimDevice::dma_logging_start(std::span<std::byte> payload) {
  const auto ctl = load<uapi::DmaLoggingControl>(payload);
  if (ctl.num_ranges == 0) return fail(EINVAL, "DMA logging start: no ranges");
  if (ctl.num_ranges > kMaxLogRanges)
    return fail(E2BIG, fmt::format("DMA logging start: {} ranges, at most {}", ctl.num_ranges,
                                   kMaxLogRanges));
  if (!std::has_single_bit(ctl.page_size))
    return fail(EINVAL, fmt::format("DMA logging start: page size {:#x}", ctl.page_size));
  if (ctl.ranges == 0) return fail(EFAULT, "DMA logging start: null ranges pointer");
  // `ranges` is a user pointer into this process (the sim serves its own address space).
  const auto* user = reinterpret_cast<const std::byte*>(static_cast<std::uintptr_t>(ctl.ranges));
  std::vector<DmaRange> ranges(ctl.num_ranges);
  for (std::uint32_t i = 0; i < ctl.num_ranges; ++i) {
    uapi::DmaLoggingRange r;
    std::memcpy(&r, user + i * sizeof(r), sizeof(r));
    if (r.length == 0 || r.iova % ctl.page_size || r.length % ctl.page_size)
      return fail(EINVAL, fmt::format("DMA logging start: range {} not page aligned", i));
    std::uint64_t end;
    if (__builtin_add_overflow(r.iova, r.length, &end))
      return fail(EOVERFLOW, fmt::format("DMA logging start: range {} overflows", i));
    ranges[i] = {r.iova, r.length};
  }
  std::sort(ranges.begin(), ranges.end(), [](auto& a, auto& b) { return a.iova < b.iova; });
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i - 1].iova + ranges[i - 1].length > ranges[i].iova)
      return fail(EINVAL, "DMA logging start: ranges overlap");

  std::lock_guard lock(mu_);
  if (logging_) return fail(EBUSY, "DMA logging start: already started");
  logging_ = true;
  log_page_size_ = ctl.page_size;
  log_ranges_ = std::move(ranges);
  dirty_.clear();
  return {};
}

Result<> SimDevice::dma_logging_report(std::span<std::byte> payload) {
  const auto rep = load<uapi::DmaLoggingReport>(payload);
  if (rep.page_size < 4096 || !std::has_single_bit(rep.page_size))
    return fail(EINVAL, fmt::format("DMA logging report: page size {:#x}", rep.page_size));
  std::uint64_t end;
  if (__builtin_add_overflow(rep.iova, rep.length, &end))
    return fail(EOVERFLOW, "DMA logging report: range overflows");
  if (rep.length == 0) return fail(EINVAL, "DMA logging report: empty range");
  if (rep.bitmap == 0) return fail(EFAULT, "DMA logging report: null bitmap");
  auto* bitmap = reinterpret_cast<std::byte*>(static_cast<std::uintptr_t>(rep.bitmap));

  std::lock_guard lock(mu_);
  if (!logging_) return fail(EINVAL, "DMA logging report: logging not started");
  // Bits are only ever set, as the kernel does: the caller zeroes the bitmap.
  auto it = dirty_.lower_bound(rep.iova - rep.iova % log_page_size_);
  while (it != dirty_.end() && *it < end) {
    const std::uint64_t lo = std::max(*it, rep.iova);
    const std::uint64_t hi = std::min(*it + log_page_size_, end);  // exclusive
    if (lo < hi)
      for (std::uint64_t bit = (lo - rep.iova) / rep.page_size;
           bit <= (hi - 1 - rep.iova) / rep.page_size; ++bit)
        set_user_bit(bitmap, bit);
    it = dirty_.erase(it);
  }
  return {};
}

void SimDevice::force_state(State state) {
  std::lock_guard lock(mu_);
  state_ = state;
  if (state != State::kStopCopy && !is_precopy(state)) save_.reset();
  if (state != State::kResuming) resume_.reset();
}

std::size_t SimDevice::open_sessions() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

bool SimDevice::dma_logging() const {
  std::lock_guard lock(mu_);
  return logging_;
}

std::vector<std::uint64_t> SimDevice::simulate_dma(std::uint64_t count) {
  std::lock_guard lock(mu_);
  std::vector<std::uint64_t> out;
  if (!logging_) return out;
  std::uint64_t total = 0;
  for (const DmaRange& r : log_ranges_) total += r.length / log_page_size_;
  for (std::uint64_t i = 0; i < count && total; ++i) {
    std::uint64_t page = mix64(options_.dma_seed * 0x9e3779b97f4a7c15ULL + ++dma_draws_) % total;
    for (const DmaRange& r : log_ranges_) {
      const std::uint64_t pages = r.length / log_page_size_;
      if (page < pages) {
        out.push_back(r.iova + page * log_page_size_);
        dirty_.insert(out.back());
        break;
      }
      page -= pages;
    }
  }
  return out;
}

void SimDevice::mark_dirty(std::uint64_t iova) {
  std::lock_guard lock(mu_);
  if (!logging_) return;
  for (const DmaRange& r : log_ranges_) {
    if (iova >= r.iova && iova - r.iova < r.length) {
      dirty_.insert(iova - iova % log_page_size_);
      return;
    }
  }
}

}  // namespace vfio::sim
