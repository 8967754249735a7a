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

#include "core/channel.h"
#include "core/migration.h"

namespace vfio {

enum class Phase { kSetup, kStopVm, kStopCopy, kConfig, kCleanup, kLoad, kStartVm };
std::string_view phase_name(Phase phase);

struct Progress {
  Phase phase;
  std::uint64_t device_bytes;  // device data moved so far
  std::uint64_t estimate;      // expected total device data (0 when unknown)
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
};

struct SessionOptions {
  MigrationOptions migration;  // on_block is the session's own
  std::function<void(const Progress&)> on_progress;
  // Stream buffer size for the channel side.
  std::size_t stream_buffer_size = 1 << 20;
};

class Session {
 public:
  explicit Session(SessionOptions options = {});
  ~Session();

  // vfio_migration_realize: a device that cannot migrate adds a blocker instead of failing.
  void add_device(Device& dev, std::string id, bool enable_migration = true);
  // Every reason migration is refused now; empty when it may proceed.
  std::vector<std::string> blockers() const;

  // Source: the whole stop-and-copy migration into `out`. On success the devices stay
  // stopped (the VM moved away); on failure they are back in RUNNING, or the error says why not.
  Result<Report> save(Channel& out);
  // Destination: loads the stream into the devices and starts them.
  Result<Report> load(Channel& in);
  // The VM runs again (after a save that was a snapshot rather than a move).
  Result<> resume_vm();
  // Thread-safe: makes a running save or load stop with ECANCELED at the next block.
  void cancel() { cancel_requested_ = true; }

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
  bool on_block(std::uint64_t bytes);
  void progress(Phase phase);
  Result<> save_sections(StreamWriter& out, Report& report, bool& vm_stopped);
  Result<> load_sections(StreamReader& in);
  Error fail_save(Error cause, bool vm_stopped);
  Error fail_load(Error cause);

  SessionOptions options_;
  std::vector<Entry> devices_;
  std::atomic<bool> cancel_requested_ = false;
  Phase phase_ = Phase::kSetup;
  std::uint64_t moved_ = 0;
  std::uint64_t estimate_ = 0;
};

}  // namespace vfio
