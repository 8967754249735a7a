// Pieces every transfer command shares: options into SessionOptions, opening device
// arguments, and finishing with a summary (and JSON) plus the exit code.
#pragma once

#include <memory>

#include "cli/args.h"
#include "cli/progress.h"
#include "cli/summary.h"
#include "core/session.h"
#include "devices/device_spec.h"

namespace vfio::cli {

using devices::open_device;
using devices::OpenedDevice;
using devices::parse_device_arg;
using devices::parse_state_size;

struct TransferSetup {
  SessionOptions session;
  std::shared_ptr<ProgressLine> progress;
  bool switchover_ack = false;  // a SwitchoverGate joins the two sides of each migration
};

// --buffer-size, --no-config, --reset-first, --quiet.
Result<TransferSetup> transfer_setup(const ParsedArgs& args);
// --precopy auto|off (absent: `default_mode`), --downtime-ms MS, --max-iterations N,
// --switchover-ack (migrate, demo, save).
Result<> precopy_setup(const ParsedArgs& args, TransferSetup& setup,
                       std::string_view default_mode = "auto");

// Parses then opens; parse errors are usage errors (code EINVAL, `usage` set).
struct OpenOutcome {
  Result<OpenedDevice> device;
  bool usage = false;
};
OpenOutcome open_arg(std::string_view text, std::size_t index);

struct DevicePair {
  Device* src;
  Device* dst;
  ConfigRestore dst_restore = ConfigRestore::kExact;  // OpenedDevice::config_restore of dst
};
// Migrates the sources to the destinations in this process, one VM with every device; with
// `verify`, compares each pair's states afterwards.
Summary migrate_and_verify(std::span<const DevicePair> pairs, TransferSetup& setup, bool verify,
                           std::string command);

// Keeps a device for the life of the process: a thread is still inside a call on it (a kernel
// hang), so it must never be closed or destroyed (the atexit handlers abort a FUSE mount's
// connection).
void keep_for_process(OpenedDevice device);

// Prints the summary, writes --json when asked, and returns the exit code.
int finish(const Summary& summary, const ParsedArgs& args);

}  // namespace vfio::cli
