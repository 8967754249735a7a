// One fault case, start to end: fresh simulated devices behind FaultDevice decorators, a
// save, load or local migration with a FaultChannel on the stream, then the observations the
// oracles judge. The matrix runs thousands of these; `vfio-mig faults --plan` runs one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/session.h"
#include "devices/device_spec.h"
#include "faults/injector.h"
#include "faults/oracles.h"

namespace vfio::faults {

struct CaseConfig {
  std::string profile = "mlx5";
  std::optional<std::uint64_t> state_size;  // unset: 1 MiB (mtty: its own tiny default)
  std::size_t buffer_size = 64 * 1024;      // engine data buffer: many reads per case
  std::size_t stream_buffer_size = 64 * 1024;
  devices::Transport transport = devices::Transport::kDirect;
  bool record = false;  // keep the operation trace
  // Devices named on the command line, a source and a destination per device of the VM
  // (SRC DST [SRC DST ...]): every case opens these instead of fresh simulated devices, brought
  // to RUNNING first, and is judged by what the uAPI shows (faults/device_checks.h), never by a
  // model, whether they are kernel devices or sim: specs.
  std::vector<std::string> devices;
  struct Facts {
    std::uint64_t mig_flags = 0;  // common to every device
    bool dma_logging = false;     // every source logs DMA
    bool digest_stable = false;   // the source's saved state reads back the same twice
  } facts;                        // of `devices`: learn_device_facts
  std::string check;              // --check: runs after each case, exit 0 = state intact
  // The kernel-health oracle (run by the matrix): a case fails when the kernel log (in
  // /dev/kmsg's format) gained trouble lines while it ran, less those `kernel_log_ignore`
  // matches. With several jobs a line is charged to the case that ended after it on the same
  // worker.
  std::optional<std::string> kernel_log;
  std::optional<std::string> kernel_log_ignore;
  // Tests only: replaces named device `index` (0: the first source) once opened, to make it
  // misbehave as a driver might.
  std::function<void(std::size_t index, devices::OpenedDevice&)> adapt_named;
};

// With devices: opens each once, brings it to RUNNING, and learns what the cases need to know.
// `said` gets a line per device that had to be resumed or reset.
Result<> learn_device_facts(CaseConfig& cfg, std::vector<std::string>& said);

// The state size a case uses for a profile.
std::uint64_t case_state_size(const CaseConfig& cfg);

// Whether the scenario can run on the profile: precopy needs PRE_COPY, p2p-multi needs P2P
// (several devices without it are blocked, as the reference blocks them).
bool scenario_applies(Scenario scenario, const CaseConfig& cfg);
// The migration flags a case's devices have (the profile's, or the named devices').
std::uint64_t case_mig_flags(const CaseConfig& cfg);
// Devices per side in the scenario's VM (pairs of named devices it needs).
std::size_t scenario_devices(Scenario scenario);

struct CaseSpec {
  std::string id;
  Scenario scenario = Scenario::kMigrate;
  std::string plan;  // rules, in the plan format
  // cancel: cancel this side's session from its Nth progress callback (0: never).
  Side cancel_side = Side::kAny;
  std::uint64_t cancel_at_progress = 0;
  // For grouping in reports.
  std::string operation = "-";
  std::string fault = "none";
};

// The handle a watchdog uses to stop a running case.
class CaseControl {
 public:
  explicit CaseControl(Plan plan) : injector(std::move(plan)) {}
  Injector injector;
  void attach(Side side, Session* s);
  void cancel();  // every hang and delay ends, both sessions are cancelled
  void cancel_session(Side side);

 private:
  std::mutex mu_;
  Session* src_ = nullptr;
  Session* dst_ = nullptr;
};

struct CaseRun {
  Observation observation;
  std::vector<Fired> fired;
  std::vector<TraceEntry> trace;                     // when recording
  bool trace_overflowed = false;                     // more than Injector::kMaxTrace operations
  std::uint64_t progress_src = 0, progress_dst = 0;  // progress callbacks seen
  std::string setup_error;  // the case could not be set up (not an oracle failure)
};

// Runs the case to its end. `control` must outlive the call.
CaseRun run_case(const CaseSpec& spec, const CaseConfig& cfg, CaseControl& control);

}  // namespace vfio::faults

namespace vfio::faults {

struct FaultyMigration {
  Result<Report> saved = fail(ECANCELED, "source did not run");
  Result<Report> loaded = fail(ECANCELED, "destination did not run");
  Result<> outcome;                   // as migrate_locally reports it
  std::optional<StreamCheck> stream;  // of what reached the pipe from the source, when checked
};

// core/migrate_locally with the plan's send and recv faults on the pipe: the same two
// threads, the same order of closing, the same restart of the source when the destination
// failed; only the channels are decorated.
// With switchover-ack, `gate` is the two sessions' gate: the destination's whole reads then also
// end where the source stopped sending to wait for the approval.
FaultyMigration migrate_with_faults(Session& source, Session& destination, Injector& injector,
                                    bool check_wire, const SwitchoverGate* gate = nullptr);

}  // namespace vfio::faults
