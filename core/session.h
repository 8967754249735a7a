// Plays the role of QEMU's migration core for one side of a migration: realizes the devices
// (recording migration blockers), drives the per-device handlers in order, frames their output
// in the container format, times the phases, reports progress, and on any failure runs the
// cancel/fail path so that a source keeps running.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/channel.h"
#include "core/container.h"
#include "core/migration.h"
#include "core/switchover_gate.h"

namespace vfio {

enum class Phase { kSetup, kPrecopy, kStopVm, kStopCopy, kConfig, kCleanup, kLoad, kStartVm };
std::string_view phase_name(Phase phase);

struct Progress {
  Phase phase;
  std::uint64_t device_bytes;   // device data moved so far
  std::uint64_t estimate;       // expected total device data (0 when unknown)
  std::uint64_t iteration = 0;  // pre-copy iterations done
  std::uint64_t pending = 0;    // pre-copy: the devices' summed estimate of what is left
};

struct PhaseTiming {
  Phase phase;
  std::chrono::nanoseconds elapsed;
};

struct Report {
  std::uint64_t device_bytes = 0;  // device data moved
  std::uint64_t stream_bytes = 0;  // container bytes written or read
  std::vector<PhaseTiming> phases;
  std::chrono::nanoseconds total{};
  // CPU time of the thread that ran the save or load, over `total`: on devices called in
  // process (direct simulated devices) the device's own work is in it too.
  std::chrono::nanoseconds cpu{};
  // Source only.
  std::uint64_t precopy_iterations = 0;
  std::uint64_t precopy_bytes = 0;      // device data sent while the VM ran
  std::uint64_t stop_copy_bytes = 0;    // device data sent with the VM stopped
  std::uint64_t final_pending = 0;      // the pre-copy estimate when the VM was stopped
  std::chrono::nanoseconds downtime{};  // from stopping the VM to the end of the stream
  std::uint64_t dirty_pages = 0;        // pages DMA logging reported during the save
};

struct SessionOptions {
  MigrationOptions migration;  // on_block and approve_switchover are the session's own
  std::function<void(const Progress&)> on_progress;
  // Stream buffer size for the channel side.
  std::size_t stream_buffer_size = 1 << 20;
  // Pre-copy (migration.precopy): iterate until the devices' estimate fits in this much
  // downtime at the rate measured so far, or for at most `max_iterations` (one block per
  // pre-copy device each).
  std::chrono::milliseconds downtime_limit{300};
  std::uint64_t max_iterations = 10000;
  // Bytes per second to assume for the switchover instead of the measured rate (QEMU's
  // avail-switchover-bandwidth); 0: measure.
  std::uint64_t switchover_bandwidth = 0;
  // Switchover-ack, shared with the other side's Session; null: off. The source does not stop
  // the VM before the destination approved; the destination approves once every pre-copy
  // device's initial data is loaded.
  SwitchoverGate* switchover_gate = nullptr;
  // How long the source waits for the approval once it has nothing else to send (0: for ever,
  // as QEMU does). A stream cut on the way never brings one.
  std::chrono::milliseconds switchover_timeout{0};
  // DMA dirty-page tracking on the source's devices that support it, over these guest ranges.
  std::vector<uapi::DmaLoggingRange> dirty_ranges;
  std::uint64_t dirty_page_size = 4096;
  // A device found in a state other than RUNNING before a save or load is reset
  // (VFIO_DEVICE_RESET, its device state is lost) instead of refused (the CLI's --reset-first).
  bool reset_first = false;
  // One line for the user about something done on their behalf (a reset_first reset).
  std::function<void(const std::string&)> on_notice;
};

class Session {
 public:
  explicit Session(SessionOptions options = {});
  ~Session();

  // vfio_migration_realize: a device that cannot migrate adds a blocker instead of failing.
  void add_device(Device& dev, std::string id, bool enable_migration = true);
  // The same, with this device's way of taking a CONFIG section instead of the options' (the
  // opener knows whether it is a real device or the simulator).
  void add_device(Device& dev, std::string id, ConfigRestore config_restore);
  // Every reason migration is refused now; empty when it may proceed. Several devices may
  // migrate together only when every one supports P2P.
  std::vector<std::string> blockers() const;

  // Learns every device's real state before anything is sent (one GET each). RUNNING goes
  // ahead; any other state, left by an earlier process, is refused (EBUSY, the message names
  // the device, its state and --reset-first) or, with `reset_first`, reset and confirmed
  // RUNNING (docs/deviations.md). save() and load() call it first unless it was the last call
  // before them; migrate_locally calls it on both sessions, so that a refusal on either side
  // sends nothing on the other.
  Result<> learn_device_states();

  // Source: the whole migration into `out`: pre-copy iterations for devices that offer it, then
  // stop-and-copy. On success the devices stay stopped (the VM moved away); on failure they
  // are back in RUNNING, or the error says why not.
  Result<Report> save(Channel& out);
  // Destination: loads the stream into the devices and starts them.
  Result<Report> load(Channel& in);
  // The VM runs again (after a save that was a snapshot rather than a move).
  Result<> resume_vm();
  // Thread-safe: makes a running save or load stop with ECANCELED at the next block. Sticky:
  // a cancel that comes before save() or load() starts is not lost (they refuse to start).
  void cancel() { cancel_requested_ = true; }
  bool cancelled() const { return cancel_requested_; }

  std::size_t device_count() const { return devices_.size(); }
  Migration* migration(std::size_t index) { return devices_.at(index).migration.get(); }

 private:
  struct Entry {
    Device* dev;
    std::string id;
    std::unique_ptr<Migration> migration;  // null: blocked
    std::string blocker;
  };

  MigrationOptions migration_options();
  // learn_device_states(), unless it just ran.
  Result<> ensure_device_states();
  void add(Device& dev, std::string id, bool enable_migration, MigrationOptions options);
  bool on_block(std::uint64_t bytes);
  void progress(Phase phase);
  Result<> save_sections(StreamWriter& out, Report& report, bool& vm_stopped);
  // Pre-copy iterations until convergence (or the cap) and the switchover approval.
  Result<> run_precopy(StreamWriter& out, Report& report);
  Result<> wait_for_switchover(StreamWriter& out);
  Result<> load_sections(StreamReader& in);
  // Run-state changes of the whole VM: every P2P device is quiesced (RUNNING_P2P or
  // PRE_COPY_P2P) before any device is stopped or started.
  void stop_vm(StreamWriter& out);
  Result<> start_vm();
  Result<> start_dirty_tracking();
  Result<> report_dirty_pages(Report& report);
  void stop_dirty_tracking();
  Error fail_save(Error cause, bool vm_stopped);
  Error fail_load(Error cause);

  SessionOptions options_;
  std::vector<Entry> devices_;
  std::atomic<bool> cancel_requested_ = false;
  bool states_learnt_ = false;  // learn_device_states() ran, and no save or load since
  Phase phase_ = Phase::kSetup;
  std::uint64_t moved_ = 0;
  std::uint64_t estimate_ = 0;
  std::uint64_t iteration_ = 0;
  std::uint64_t pending_ = 0;
  std::vector<Device*> dirty_tracked_;  // devices with DMA logging started
  // A load's read buffer and stream header, kept for the next load: a destination that loads
  // again (the fuzz targets reuse one per input) allocates neither again.
  AlignedBuffer load_buffer_;
  container::Header header_;
};

}  // namespace vfio
