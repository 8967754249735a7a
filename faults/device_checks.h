// What the matrix can learn from a device it does not model (a real /dev/vfio device, or a
// simulated one reached only through its spec): its state read back through the uAPI, the
// process's open files, and a user's own check command. The oracles on devices named on the
// command line are built from these alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"

namespace vfio::faults {

// A device's saved state as a CRC-32C and a length: what RUNNING -> STOP -> STOP_COPY reads to
// its end, the device then back through STOP to RUNNING. Equal digests before and after a case
// mean the state is intact on a device whose saved state is deterministic (mtty: its registers
// and FIFOs), and a destination with its source's digest holds the source's state.
struct StateDigest {
  std::uint32_t crc = 0;
  std::uint64_t length = 0;
  bool operator==(const StateDigest&) const = default;
  std::string describe() const;
};

// The device must be RUNNING; it is RUNNING again afterwards unless an arc failed.
Result<StateDigest> read_state_digest(Device& device);

// Brings a device to RUNNING before a case: a device in STOP is resumed (what a successful
// migration leaves on its source); any other state is reset (VFIO_DEVICE_RESET), then a GET must
// say RUNNING. Returns what was done, empty when the device was already RUNNING.
Result<std::string> bring_to_running(Device& device);

// Why a session could not log the device's DMA in `range` at `page_size` (empty: the device does
// not offer DMA logging), or nothing when it can. Advertising DMA_LOGGING_START is not enough:
// the START, REPORT and STOP a session makes are each tried (Debian's 6.12 advertises it on mtty
// and fails every REPORT with EOPNOTSUPP: docs/fidelity.md). Logging is stopped again.
std::optional<std::string> dma_logging_unusable(Device& device, const uapi::DmaLoggingRange& range,
                                                std::uint64_t page_size);

// This process's open file descriptors and what they point at (/proc/self/fd).
std::map<int, std::string> open_fds();
// Those in `after` that were not open, or pointed elsewhere, in `before`: "fd 7 -> anon_inode:..."
std::vector<std::string> new_fds(const std::map<int, std::string>& before,
                                 const std::map<int, std::string>& after);

// Runs `command` with /bin/sh -c and `env` added to the environment, at most `limit` long (then
// killed). Ok when it exits 0; otherwise why, with the first lines of its output.
Result<> run_check_command(const std::string& command,
                           const std::vector<std::pair<std::string, std::string>>& env,
                           std::chrono::milliseconds limit);

}  // namespace vfio::faults
