#include "core/migration.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/feature.h"
#include "core/retry.h"

namespace vfio {
namespace {

using uapi::State;

// The reference sizes its buffer by the stop-copy estimate alone, so an estimate of 0 made
// the allocation fail and a tiny one made every read tiny; this floor avoids both.
constexpr std::size_t kMinDataBufferSize = 4096;

std::string_view name_of(State s) {
  return uapi::state_name(s);
}

}  // namespace

Migration::Migration(Device& dev, std::uint64_t mig_flags, MigrationOptions options)
    : dev_(dev), mig_flags_(mig_flags), options_(options) {}

Result<std::unique_ptr<Migration>> Migration::create(Device& dev, MigrationOptions options) {
  auto flags = query_migration_flags(dev);
  if (!flags) {
    Error e = flags.error();
    e.message = e.code == ENOTTY
                    ? dev.name() + ": VFIO migration is not supported by the device or kernel"
                    : dev.name() + ": failed to query VFIO migration support";
    return std::unexpected(e);
  }
  if (!(*flags & uapi::kMigrationStopCopy)) {
    return fail(EOPNOTSUPP,
                fmt::format("{}: device lacks the mandatory STOP_COPY migration flag (flags {:#x})",
                            dev.name(), *flags));
  }
  std::unique_ptr<Migration> m(new Migration(dev, *flags, options));
  // As the reference: a PROBE with no direction bit succeeds when the feature exists.
  m->dirty_pages_supported_ = probe_feature(dev, uapi::Feature::kDmaLoggingStart, 0);
  return m;
}

Result<> Migration::set_state(State new_state, State recover_state) {
  auto data_fd = request_device_state(dev_, new_state);
  if (!data_fd) {
    Error cause = data_fd.error();
    if (device_state_ == State::kResuming) explain_rejected_resume(cause, new_state);
    if (recover_state == State::kError) {
      cause.message += "; the recover state is ERROR, resetting the device";
      return reset_device(std::move(cause));
    }
    auto recovered = request_device_state(dev_, recover_state);
    if (!recovered) {
      cause.message += fmt::format("; recovering to {} failed too ({}), resetting the device",
                                   name_of(recover_state), std::strerror(recovered.error().code));
      return reset_device(std::move(cause));
    }
    // A recover transition that opened a session would leak its fd: nobody reads it.
    if (*recovered != -1) (void)dev_.close(*recovered);
    device_state_ = recover_state;
    cause.message += fmt::format("; the device was put back in {}", name_of(recover_state));
    return std::unexpected(cause);
  }

  device_state_ = new_state;
  if (*data_fd != -1) {
    if (data_fd_ != -1) {
      // The device handed out a new session while ours is open: it was reset behind our back.
      (void)dev_.close(*data_fd);
      return fail(EBADF, dev_.name() + ": data fd out of sync (device reset asynchronously?)");
    }
    data_fd_ = *data_fd;
  }
  return {};
}

Result<State> Migration::query_state() {
  auto state = query_device_state(dev_);
  if (!state) {
    Error e = state.error();
    e.message = dev_.name() + ": reading the device state (GET MIG_DEVICE_STATE): " + e.message;
    return std::unexpected(e);
  }
  device_state_ = *state;
  return *state;
}

Result<> Migration::reset_to_running() {
  if (auto r = hard_reset("VFIO_DEVICE_RESET"); !r) return r;
  auto state = query_state();
  if (!state) return std::unexpected(std::move(state).error());
  if (*state != State::kRunning)
    return fail(EIO, fmt::format("{}: in {} after VFIO_DEVICE_RESET, not RUNNING", dev_.name(),
                                 name_of(*state)));
  return {};
}

void Migration::explain_rejected_resume(Error& cause, State target) {
  // RESUMING's only arc is to STOP, where the device checks what it was given. A device that
  // moved on accepted the data: a later arc failed, and the message says which as it is.
  auto now = query_device_state(dev_);
  if (now && *now != State::kResuming && *now != State::kError) return;
  cause.message = fmt::format(
      "{}: the destination device rejected the loaded data: the arc RESUMING -> STOP failed "
      "(on the way to {}){}; likely causes: a stream saved from another device or profile, or a "
      "damaged device payload",
      dev_.name(), name_of(target),
      cause.reason.empty() ? " and the device gave no reason (a kernel driver may log one: dmesg)"
                           : ": " + cause.reason);
}

Result<> Migration::reset_now() {
  close_data_fd();  // the reset makes it stale
  auto r = retry_transient([&] { return dev_.reset(); });
  if (!r) {
    broken_ = true;
    return r;
  }
  device_state_ = State::kRunning;
  return {};
}

Result<> Migration::reset_device(Error cause) {
  if (auto r = reset_now(); !r) {
    cause.message += "; the reset failed: " + r.error().describe();
    cause.fatal = true;
  }
  return std::unexpected(cause);
}

void Migration::close_data_fd() {
  if (data_fd_ != -1) (void)dev_.close(data_fd_);
  data_fd_ = -1;
}

bool Migration::in_precopy() const {
  return device_state_ == State::kPreCopy || device_state_ == State::kPreCopyP2p;
}

Result<> Migration::save_setup(StreamWriter& out) {
  out.put_be64(tag::kSetupState);
  std::uint64_t stop_copy_size = query_stop_copy_size(dev_).value_or(kDefaultDataBufferSize);
  std::size_t size = options_.data_buffer_size;
  if (size == 0) {
    size =
        static_cast<std::size_t>(std::min<std::uint64_t>(kDefaultDataBufferSize, stop_copy_size));
    size = std::max(size, kMinDataBufferSize);
  }
  buffer_.resize(size);
  if (precopy_supported()) {
    switch (device_state_) {
      case State::kRunning:
      case State::kRunningP2p: {
        const State target =
            device_state_ == State::kRunning ? State::kPreCopy : State::kPreCopyP2p;
        if (auto r = set_state(target, device_state_); !r) return r;
        query_precopy_size();
        break;
      }
      case State::kStop:
        break;  // a stopped VM: save_complete_precopy goes to STOP_COPY
      default:
        return fail(EINVAL, fmt::format("{}: invalid device state {} for pre-copy", dev_.name(),
                                        name_of(device_state_)));
    }
  }
  out.put_be64(tag::kEndOfState);
  return out.status();
}

void Migration::save_cleanup() {
  buffer_.clear();
  close_data_fd();
  precopy_init_size_ = precopy_dirty_size_ = 0;
  initial_data_sent_ = false;
}

void Migration::query_precopy_size() {
  // As the reference: a failed query counts as nothing pending.
  precopy_init_size_ = precopy_dirty_size_ = 0;
  uapi::PrecopyInfo info{};
  info.argsz = sizeof(info);
  if (!retry_transient([&] { return dev_.precopy_info(data_fd_, info); })) return;
  precopy_init_size_ = info.initial_bytes;
  precopy_dirty_size_ = info.dirty_bytes;
}

void Migration::update_estimated_pending_data(std::uint64_t sent) {
  if (sent == 0) {
    // A temporary end of data: the device has nothing more for now.
    precopy_init_size_ = precopy_dirty_size_ = 0;
    return;
  }
  const std::uint64_t init = std::min(precopy_init_size_, sent);
  precopy_init_size_ -= init;
  sent -= init;
  precopy_dirty_size_ -= std::min(precopy_dirty_size_, sent);
}

Result<std::uint64_t> Migration::save_iterate(StreamWriter& out) {
  auto sent = save_block(out);
  if (!sent) return sent;
  update_estimated_pending_data(*sent);
  if (options_.switchover_ack && precopy_init_size_ == 0 && !initial_data_sent_) {
    out.put_be64(tag::kInitDataSent);
    initial_data_sent_ = true;
  } else {
    out.put_be64(tag::kEndOfState);
  }
  if (auto s = out.status(); !s) return std::unexpected(s.error());
  return *sent;
}

std::uint64_t Migration::state_pending_estimate() {
  if (!in_precopy()) return 0;
  query_precopy_size();
  return precopy_init_size_ + precopy_dirty_size_;
}

std::uint64_t Migration::pending_exact() {
  return query_stop_copy_size(dev_).value_or(kUnknownStopCopySize);
}

Result<std::uint64_t> Migration::save_block(StreamWriter& out) {
  auto n = retry_transient([&] { return dev_.read(data_fd_, buffer_.span()); });
  // ENOMSG: pre-copy emptied the device's data for now (the uAPI's temporary end of data).
  if (!n && n.error().code == ENOMSG) return 0;
  if (!n) return std::unexpected(n.error());
  if (*n == 0) return 0;
  out.put_be64(tag::kDataState);
  out.put_be64(*n);
  out.put_buffer(buffer_.span().first(*n));
  bytes_transferred_ += *n;
  if (auto s = out.status(); !s) return std::unexpected(s.error());
  if (auto b = block_done(*n); !b) return std::unexpected(b.error());
  return *n;
}

Result<> Migration::block_done(std::uint64_t bytes) {
  if (options_.on_block && !options_.on_block(bytes)) {
    return fail(ECANCELED, dev_.name() + ": migration cancelled");
  }
  return {};
}

Result<> Migration::save_complete_precopy(StreamWriter& out) {
  // The VM is stopped, so the device is in STOP, or in STOP_COPY when it came from pre-copy.
  if (auto r = set_state(State::kStopCopy, State::kStop); !r) return r;
  for (;;) {
    auto n = save_block(out);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
  }
  out.put_be64(tag::kEndOfState);
  if (auto s = out.status(); !s) return s;
  // Failing to leave STOP_COPY leaves nothing to recover to: reset.
  return set_state(State::kStop, State::kError);
}

Result<> Migration::save_config(StreamWriter& out) {
  std::array<std::byte, kMaxConfigBlob> blob;
  auto want = std::min<std::size_t>(options_.config_size, blob.size());
  // A region read may return fewer bytes than asked (pread semantics): read on until the
  // region ends (0) rather than ship a silently shortened config space.
  std::size_t got = 0;
  while (got < want) {
    auto n = retry_transient(
        [&] { return dev_.config_read(got, std::span(blob).subspan(got, want - got)); });
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    got += *n;
  }
  out.put_be64(got);
  out.put_buffer(std::span(blob).first(got));
  return {};
}

Result<> Migration::save_state(StreamWriter& out) {
  out.put_be64(tag::kConfigState);
  if (options_.config_state) {
    if (auto r = save_config(out); !r) {
      Error e = r.error();
      e.message = dev_.name() + ": failed to save device config space: " + e.message;
      out.set_error(e);
    }
  } else {
    out.put_be64(0);
  }
  out.put_be64(tag::kEndOfState);
  return out.status();
}

Result<> Migration::load_setup() {
  initial_data_received_ = false;
  config_blob_.clear();
  return set_state(State::kResuming, device_state_);
}

void Migration::load_cleanup() {
  close_data_fd();
  config_blob_ = std::vector<std::byte>();  // not committed by now: its load failed
}

Result<> Migration::commit_config() {
  const std::vector<std::byte> blob = std::exchange(config_blob_, {});
  if (!options_.config_state || blob.empty()) return {};
  // A blob the region cannot hold would be written in part: refuse it before any write.
  std::byte last;
  if (auto r =
          retry_transient([&] { return dev_.config_read(blob.size() - 1, std::span(&last, 1)); });
      !r || *r != 1) {
    return fail(EINVAL, fmt::format("{}: the config space of {} bytes (config section ending at "
                                    "stream offset {}) is larger than the device's config region: "
                                    "nothing written",
                                    dev_.name(), blob.size(), config_offset_));
  }
  if (auto r = restore_config(dev_, blob, options_.config_restore); !r) {
    Error e = std::move(r).error();
    e.message = fmt::format(
        "{}: failed to load device config space (config section ending at stream offset {}): {}",
        dev_.name(), config_offset_, e.message);
    return std::unexpected(std::move(e));
  }
  return {};
}

Result<> Migration::load_data(StreamReader& in, std::uint64_t size, std::uint64_t offset) {
  if (auto r = in.copy_to_device(dev_, data_fd_, size); !r) {
    Error e = std::move(r).error();
    // The device's own message already starts with its name.
    std::string_view cause = e.message;
    if (cause.starts_with(dev_.name() + ": ")) cause.remove_prefix(dev_.name().size() + 2);
    const bool stream = !in.status();
    e.message = fmt::format("DEV_DATA_STATE chunk of {} bytes at stream offset {}: {}{}", size,
                            offset, stream ? "" : "the device refused it: ", cause);
    return std::unexpected(std::move(e));
  }
  bytes_transferred_ += size;
  return block_done(size);
}

Result<> Migration::load_init_data_sent(std::uint64_t offset) {
  // As the reference, the tag ends the section; it is refused where switchover-ack is not in
  // use (or the device cannot pre-copy), and a second one is refused too.
  if (!options_.approve_switchover || !precopy_supported())
    return fail(EINVAL, fmt::format("unknown tag {:#x} at stream offset {} (DEV_INIT_DATA_SENT, "
                                    "but switchover-ack is not in use)",
                                    tag::kInitDataSent, offset));
  if (initial_data_received_)
    return fail(EINVAL,
                fmt::format("DEV_INIT_DATA_SENT at stream offset {} received twice", offset));
  initial_data_received_ = true;
  return options_.approve_switchover();
}

Result<> Migration::load_state(StreamReader& in, container::SectionType type) {
  auto payload =
      read_payload(in, type, [this](StreamReader& r, std::uint64_t size, std::uint64_t offset) {
        return load_data(r, size, offset);
      });
  Result<> r;
  if (!payload) {
    r = std::unexpected(std::move(payload).error());
  } else if (payload->init_data_sent) {
    r = load_init_data_sent(payload->end_offset);
  } else if (type == container::SectionType::kConfig) {
    if (payload->config.empty() && options_.config_state) {
      r = fail(EINVAL, fmt::format("no config space in it (the stream was saved with "
                                   "--no-config; section end at stream offset {}): load with "
                                   "--no-config to keep the destination's config space as it is",
                                   payload->end_offset));
    }
    config_blob_ = std::move(payload->config);
    config_offset_ = payload->end_offset;
  }
  if (!r) {
    Error e = std::move(r).error();
    e.message =
        fmt::format("{}: {} section: {}", dev_.name(), container::section_name(type), e.message);
    return std::unexpected(std::move(e));
  }
  return {};
}

Result<> Migration::vm_state_change_prepare(StreamWriter* out) {
  const State target = device_state_ == State::kPreCopy ? State::kPreCopyP2p : State::kRunningP2p;
  auto r = set_state(target, State::kError);
  if (!r && out) out->set_error(r.error());
  return r;
}

Result<> Migration::vm_state_change(bool running, StreamWriter* out, bool migrating) {
  State target = State::kRunning;
  if (!running) target = migrating && in_precopy() ? State::kStopCopy : State::kStop;
  // Failing to reach the new run state leaves nothing sensible to recover to: reset.
  auto r = set_state(target, State::kError);
  if (!r && out) out->set_error(r.error());
  return r;
}

Result<> Migration::abandon() {
  return hard_reset("resetting the device after a failed resume");
}

Result<> Migration::hard_reset(std::string_view what) {
  if (auto r = reset_now(); !r) {
    Error e = std::move(r).error();
    e.message = fmt::format("{}: {}: {}", dev_.name(), what, e.message);
    e.fatal = true;
    return std::unexpected(std::move(e));
  }
  return {};
}

Result<> Migration::on_status(MigrationStatus status) {
  switch (status) {
    case MigrationStatus::kCancelling:
    case MigrationStatus::kCancelled:
    case MigrationStatus::kFailed:
      bytes_transferred_ = 0;
      precopy_init_size_ = precopy_dirty_size_ = 0;
      initial_data_sent_ = false;
      return set_state(State::kRunning, State::kError);
    case MigrationStatus::kActive:
    case MigrationStatus::kCompleted:
      break;
  }
  return {};
}

}  // namespace vfio
