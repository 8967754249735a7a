// The oracles: what one fault case observed, and the verdict on it. A case passes when the
// engine behaved as the contract says whatever the fault did; `state-lost` is a pass with a
// reported reset of the source (its state would be gone on real hardware).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/uapi.h"
#include "faults/device_checks.h"
#include "faults/stream_check.h"
#include "simdev/image.h"

namespace vfio::faults {

enum class Scenario { kSave, kLoad, kMigrate, kCancel, kPrecopy, kP2pMulti };
// Every scenario, in `--matrix all` order.
std::span<const Scenario> all_scenarios();
std::string_view scenario_name(Scenario s);
std::optional<Scenario> parse_scenario(std::string_view name);

// One device after the case, read from the model and with GETs that bypass the faults.
struct DeviceEnd {
  bool present = false;  // the scenario has this side
  uapi::State state = uapi::State::kError;
  std::optional<uapi::State> cached;  // Migration::device_state(), when the engine took it
  bool broken = false;                // Migration::broken(): a reset failed
  std::size_t open_sessions = 0;      // data fds still open (after a grace for FUSE)
  bool dma_logging = false;           // DMA logging still runs
  bool dma_stop_faulted = false;      // a fault fired on its side's DMA logging stop
  sim::Image image;
  std::vector<std::byte> config;
  // async-reset, or land= on anything but a SET, fired here: the device moved on its own.
  bool model_fault = false;
  bool reset = false;  // a reset reached it (engine or fault): its state is gone
  bool reset_failed_injected = false;
  // Named devices: the state read back after the case (when the source's reads back the same
  // twice), or why that failed.
  std::optional<StateDigest> digest;
  std::string digest_error;
};

struct Observation {
  Scenario scenario = Scenario::kMigrate;
  bool success = false;
  std::string error;                // the error the caller got, when !success
  bool destination_loaded = false;  // migrate: the destination side reported success
  bool timed_out = false;           // the watchdog had to cancel the case
  bool hung = false;                // and it still did not finish
  bool hang_injected = false;       // a hang fault fired (cancelling it is expected)
  sim::Image source_image;          // before the case
  std::vector<std::byte> source_config;
  DeviceEnd src, dst;
  // p2p-multi: the other devices of the VM, pairwise, with their sources' images and configs
  // before the case.
  struct Pair {
    sim::Image source_image;
    std::vector<std::byte> source_config;
    DeviceEnd src, dst;
  };
  std::vector<Pair> more;
  // The stream as it went over the wire (source side), and whether a fault altered it there.
  std::optional<StreamCheck> stream;
  bool stream_mangled = false;
  // Faults fired, and every one is tolerable (faults/plan.h): the migration must succeed.
  bool tolerable_faults_only = false;
  // Broken invariants seen between the engine's steps (at most a few).
  std::vector<std::string> invariant_violations;
  // A fault changed the source's data itself (device read or wire): a load may then fail.
  bool data_altered = false;
  // After a failure, or with DMA logging left running: a clean save of the (first) source
  // afterwards, on the device without faults and with DMA logging on where it can, as the next
  // migration attempt would be.
  std::optional<bool> next_save_ok;
  std::string next_save_error;
  std::string next_attempt = "save";  // or "migration" (named devices: source to destination)
  // Named devices (faults/device_checks.h): the source's state read back before the case, what
  // it took to bring them to RUNNING before it, and files the case left open.
  std::optional<StateDigest> source_digest;
  std::vector<std::string> prepared;
  std::vector<std::string> leaked_fds;
  // save: loading the saved stream into a clean device afterwards.
  std::optional<bool> verify_loaded;
  std::string verify_error;
};

// kCrashed, kTimeout and kKernelHang come from the process a case ran in (faults/isolation.h):
// it died of a signal, it had to be killed, or it could not be killed (stuck in the kernel).
enum class Verdict { kPass, kFail, kStateLost, kCrashed, kTimeout, kKernelHang };
std::string_view verdict_name(Verdict v);
// Every verdict but pass and state-lost fails the run.
bool is_failure(Verdict v);

struct Judgement {
  Verdict verdict = Verdict::kPass;
  std::vector<std::string> problems;  // why it failed
  std::vector<std::string> notes;     // why state-lost, and other facts worth reporting
};

Judgement judge(const Observation& o);

}  // namespace vfio::faults
