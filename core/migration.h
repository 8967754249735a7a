// The per-device migration engine: the reference's handlers (QEMU hw/vfio/migration.c at
// 370ed600) over the Device seam. The Session calls them in the order QEMU's migration core
// would. Behaviour follows the reference except where docs/deviations.md says otherwise.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/config_restore.h"
#include "core/container.h"
#include "core/device.h"
#include "core/payload.h"
#include "core/stream.h"

namespace vfio {

constexpr std::size_t kDefaultDataBufferSize = 1 << 20;
// Reported as pending when the device cannot estimate its stop-copy size, so that a
// downtime limit is never violated by an underestimate.
constexpr std::uint64_t kUnknownStopCopySize = 100ULL << 30;

// The reference's migration status values that reach the state notifier.
enum class MigrationStatus { kActive, kCancelling, kCancelled, kFailed, kCompleted };

struct MigrationOptions {
  // 0: the reference's choice, min(1 MiB, stop-copy size).
  std::size_t data_buffer_size = 0;
  // Save and restore the device's PCI config space in a CONFIG section.
  bool config_state = true;
  // How many config-space bytes to carry.
  std::uint32_t config_size = 256;
  // How a loaded CONFIG section goes into the device: chosen by whoever opened it (the
  // simulator takes the bytes as they are; a real device only the registers a VMM restores).
  ConfigRestore config_restore = ConfigRestore::kExact;
  // Called after every data block saved or loaded, with the block's size; returning false
  // cancels the transfer (ECANCELED). Progress reporting and cancellation hang here.
  std::function<bool(std::uint64_t)> on_block;
  // Use PRE_COPY when the device offers it, as the reference's later versions always do. Off
  // by default so that a plain stop-and-copy stream stays what it was; the CLI turns it on
  // (--precopy auto).
  bool precopy = false;
  // Source: end the iterate section that empties the initial data with INIT_DATA_SENT.
  bool switchover_ack = false;
  // Destination: a device's INIT_DATA_SENT arrived (switchover-ack). Unset, the tag is refused
  // as a destination without the capability refuses it.
  std::function<Result<>()> approve_switchover;
};

class Migration {
 public:
  // vfio_migration_init: queries the migration flags; STOP_COPY is mandatory (EOPNOTSUPP).
  static Result<std::unique_ptr<Migration>> create(Device& dev, MigrationOptions options = {});

  // Requests `new_state`; on failure tries `recover_state`, and resets the device when the
  // recover state is ERROR or cannot be reached. A failed reset is returned as a fatal error.
  Result<> set_state(uapi::State new_state, uapi::State recover_state);

  // The device's real state (GET MIG_DEVICE_STATE), which becomes the cached one. The reference
  // assumes a device fresh from open, in RUNNING; one left by an earlier process may not be
  // (docs/deviations.md).
  Result<uapi::State> query_state();
  // VFIO_DEVICE_RESET (allowed from every state), then a GET that must find RUNNING. A failed
  // reset is fatal, as in set_state.
  Result<> reset_to_running();

  // Source side.
  // With pre-copy, RUNNING -> PRE_COPY (RUNNING_P2P -> PRE_COPY_P2P): the data fd opens here.
  Result<> save_setup(StreamWriter& out);
  // One pre-copy block (none at a temporary end of data), then END_OF_STATE or INIT_DATA_SENT.
  // Returns the bytes sent.
  Result<std::uint64_t> save_iterate(StreamWriter& out);
  // Pre-copy data still to send, from VFIO_MIG_GET_PRECOPY_INFO; 0 outside pre-copy.
  std::uint64_t state_pending_estimate();
  std::uint64_t pending_exact();  // MIG_DATA_SIZE: bytes the device still has to send
  Result<> save_complete_precopy(StreamWriter& out);
  Result<> save_state(StreamWriter& out);  // the config section
  void save_cleanup();

  // Destination side.
  Result<> load_setup();
  // One section's payload, as its type admits (core/payload.h): DATA goes into the device as
  // it arrives; a config blob is only held, for commit_config. The order of sections is the
  // caller's to check.
  Result<> load_state(StreamReader& in, container::SectionType type);
  // Writes the held config blob into the device: called once the whole stream is verified,
  // so that no unchecked byte reaches the config space.
  Result<> commit_config();
  // Closes the data fd and drops a config blob that was never committed (a failed load's).
  void load_cleanup();

  // The VM's run state is about to change (vfio_vmstate_change_prepare, P2P devices only): to
  // RUNNING_P2P, or PRE_COPY_P2P from PRE_COPY, so that no device is stopped or started while
  // another can still reach it by peer-to-peer DMA.
  Result<> vm_state_change_prepare(StreamWriter* out = nullptr);
  // The VM's run state changed (vfio_vmstate_change). Stopping for a migration from pre-copy
  // goes straight to STOP_COPY. Errors are also set on `out` when a migration is writing one,
  // as the reference does with the outgoing file.
  Result<> vm_state_change(bool running, StreamWriter* out = nullptr, bool migrating = false);
  // Discards whatever a failed resume left in the device: reset, back to RUNNING.
  Result<> abandon();
  // Migration status notifier: cancel and failure return the device to RUNNING.
  Result<> on_status(MigrationStatus status);

  Device& device() { return dev_; }
  uapi::State device_state() const { return device_state_; }
  std::uint64_t mig_flags() const { return mig_flags_; }
  int data_fd() const { return data_fd_; }
  std::size_t data_buffer_size() const { return buffer_.size(); }
  std::uint64_t bytes_transferred() const { return bytes_transferred_; }
  // True once a reset failed: the device must not be used any more.
  bool broken() const { return broken_; }
  // Whether the device supports DMA dirty-page logging (probed at creation).
  bool dirty_pages_supported() const { return dirty_pages_supported_; }
  bool p2p_supported() const { return mig_flags_ & uapi::kMigrationP2p; }
  // PRE_COPY offered by the device and wanted by the options.
  bool precopy_supported() const {
    return (mig_flags_ & uapi::kMigrationPreCopy) && options_.precopy;
  }
  bool in_precopy() const;
  // The initial pre-copy data left, as last learnt (info at setup, minus what was sent since).
  std::uint64_t precopy_init_size() const { return precopy_init_size_; }
  bool initial_data_sent() const { return initial_data_sent_; }

 private:
  Migration(Device& dev, std::uint64_t mig_flags, MigrationOptions options);

  // One read from the data fd into the stream: the bytes read, 0 at the end of the data
  // (STOP_COPY) or a temporary end of it (ENOMSG or 0 in pre-copy).
  Result<std::uint64_t> save_block(StreamWriter& out);
  void query_precopy_size();
  void update_estimated_pending_data(std::uint64_t sent);
  Result<> block_done(std::uint64_t bytes);
  // VFIO_DEVICE_RESET (EINTR/EAGAIN retried), the data fd closed first: RUNNING again, or
  // broken() when the reset fails. The two below only word its failure.
  Result<> reset_now();
  // After `cause` (a failed arc): always fails, with `cause`, fatal when the reset failed too.
  Result<> reset_device(Error cause);
  // A failure is fatal and named by `what`.
  Result<> hard_reset(std::string_view what);
  void close_data_fd();
  Result<> save_config(StreamWriter& out);
  // One DATA chunk into the device; errors name the chunk.
  Result<> load_data(StreamReader& in, std::uint64_t size, std::uint64_t offset);
  Result<> load_init_data_sent(std::uint64_t offset);
  // Leaving RESUMING failed: say whether the device refused the data, and why.
  void explain_rejected_resume(Error& cause, uapi::State target);

  Device& dev_;
  std::uint64_t mig_flags_;
  MigrationOptions options_;
  uapi::State device_state_ = uapi::State::kRunning;
  int data_fd_ = -1;
  AlignedBuffer buffer_;
  std::uint64_t bytes_transferred_ = 0;
  bool broken_ = false;
  bool dirty_pages_supported_ = false;
  std::uint64_t precopy_init_size_ = 0;
  std::uint64_t precopy_dirty_size_ = 0;
  bool initial_data_sent_ = false;      // source: INIT_DATA_SENT is in the stream
  bool initial_data_received_ = false;  // destination: INIT_DATA_SENT was loaded
  std::vector<std::byte> config_blob_;  // destination: loaded, not yet committed
  std::uint64_t config_offset_ = 0;     // where its section's payload ended in the stream
};

}  // namespace vfio
