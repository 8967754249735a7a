// fuzz-resume: hammers a device's resume path (the driver code that parses what userspace writes
// into RESUMING) with damaged copies of its own saved payload, and watches the device and the
// kernel while it does. Each input: RUNNING -> RESUMING, write the input, RESUMING -> STOP, and
// the outcome (accepted, refused with an errno, write refused, hang); then back to RUNNING
// (STOP -> RUNNING, or a reset). Every `health_every` inputs, and at the end, a save and load of
// the device's own state proves it healthy. Every device call is watched (core/watched_device):
// one that does not return within `call_timeout` is a hang, and the device is abandoned.
// docs/fuzz-resume.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config_restore.h"
#include "core/device.h"
#include "core/session.h"
#include "faults/payload_stream.h"

namespace vfio::faults {

enum class ResumeOutcome { kAccepted, kRefused, kWriteRefused, kHang };
std::string_view outcome_name(ResumeOutcome o);  // "accepted", "refused", "write-refused", "hang"

struct FuzzFinding {
  // "hang", "kernel-log", "unrecovered" (the device did not come back to RUNNING, or failed a
  // health round trip), "accepted-corrupt" (a damaged input the device took as its state).
  std::string kind;
  std::optional<std::uint64_t> input;  // the input's number, from 0; unset: none was in flight
  std::string mutation;                // how the input was made from its seed
  std::string detail;                  // what happened
  std::string reproducer;              // the stream that replays the input ("": none written)
};

struct FuzzProgress {
  std::uint64_t inputs = 0, accepted = 0, refused = 0, write_refused = 0, findings = 0;
  std::chrono::nanoseconds elapsed{};
};

struct FuzzResumeOptions {
  std::uint64_t seed = 1;
  std::uint64_t max_inputs = 0;           // 0: no limit
  std::chrono::milliseconds duration{0};  // 0: no limit (one of the two must be set)
  std::uint64_t health_every = 100;       // a save/load round trip after every N inputs
  std::chrono::milliseconds call_timeout{10'000};
  std::size_t buffer_size = 1 << 20;      // bytes per write into the data fd
  std::vector<SavedPayload> corpus;       // the seeds; empty: a fresh save of the device
  std::string out_dir;                    // where reproducers go; empty: none are written
  std::size_t accepted_reproducers = 20;  // the first N accepted-corrupt inputs get one
  std::optional<std::string> kernel_log;  // /dev/kmsg-format log to watch (core/kernel_log.h)
  std::optional<std::string> kernel_log_ignore;
  SessionOptions session;  // the saves and loads (reset_first, config...)
  ConfigRestore config_restore = ConfigRestore::kExact;  // the device's, for loads
  std::function<void(const FuzzProgress&)> on_progress;  // after each input, fuzzing thread
  // Set: stop after the current input. Shared: a hung run's thread may outlive the caller.
  std::shared_ptr<const std::atomic<bool>> cancel;
};

struct FuzzResumeReport {
  std::string device;
  std::string layout;  // of the first seed: "mtty", "sim:plain", ... "bytes" (byte-level only)
  std::uint64_t seed = 0;
  std::uint64_t seeds = 0;
  std::uint64_t inputs = 0;
  std::map<ResumeOutcome, std::uint64_t> outcomes;
  std::map<std::string, std::uint64_t> refused_errnos;  // "EINVAL" -> inputs
  std::map<std::string, std::uint64_t> write_errnos;
  std::uint64_t accepted_corrupt = 0;  // every accepted input is damaged: no mutant equals its seed
  std::uint64_t resets = 0;
  std::uint64_t health_checks = 0;
  std::vector<FuzzFinding> findings;  // hang, kernel-log, unrecovered
  std::vector<FuzzFinding> accepted;  // accepted-corrupt, the first accepted_reproducers
  bool device_abandoned = false;      // a hang: a thread is still inside a call on the device
  bool cancelled = false;
  std::chrono::nanoseconds elapsed{};
};

// Fuzzes `dev`, which must be RUNNING (or session.reset_first). An error when the run could not
// start (the device's state, the first save, the kernel log, the output
// directory); findings are not errors. After a hang (`device_abandoned`) a thread is
// still inside a call on `dev`: the caller must neither use nor destroy it.
Result<FuzzResumeReport> fuzz_resume(Device& dev, FuzzResumeOptions options);

}  // namespace vfio::faults
