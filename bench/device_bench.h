// The buffer-size sweep on devices named on the command line (vfio_mig_bench --device=SPEC):
// each device's save and load through the engine, as the simulated grid measures them, and with
// two devices the end-to-end migrate from the first into the second. A device
// is opened once, refused unless RUNNING, and every call into it goes through a WatchedDevice,
// so that a call stuck in the kernel is named and ends the run instead of hanging it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/watched_device.h"
#include "devices/device_spec.h"

namespace vfio::bench {

struct NamedDevice {
  devices::DeviceArg arg;
  devices::OpenedDevice opened;
  std::unique_ptr<WatchedDevice> watched;  // over opened.device: what every benchmark uses
  std::string driver;
  std::uint64_t state_bytes = 0;  // what one save moves; set by measure_state
  bool failed = false;            // a benchmark on it failed (an engine error, not RUNNING after)
};

// Parses and opens `spec` (nothing is sent to the device).
Result<NamedDevice> open_named_device(std::string_view spec, std::size_t index);

// One save through the engine (the device resumed after): the size of the state the sweep moves.
Result<> measure_state(NamedDevice& dev);

// The sweep's buffer sizes for a state of `state_bytes`: powers of two up to the first that holds
// the whole state (at most 64 MiB), from 4 KiB, or lower for a small state so that the sweep has
// five points where 16 bytes allows (a 96-byte state: 16 to 128).
std::vector<std::uint64_t> device_buffers(std::uint64_t state_bytes);

// One GET: an error naming the device and its state unless it is RUNNING. Before the benchmark
// (`when` starts with "before") the error says that the device was not measured.
Result<> expect_running(Device& dev, std::string_view when);

// Registers save/devN/state:S/buffer:B and load/devN/... for each device (N from 1), with two
// devices migrate/dev1/state:S/buffer:B (the first into the second, bench/migrate_bench.h), and
// puts each device's spec, driver and state size and the kernel release into the JSON's context.
void register_device_benchmarks(std::vector<NamedDevice>& devices);

// Runs `body` (core's run_watching) and returns its exit code, unless one of the devices' calls
// is in flight longer than `limit`: that is taken for a kernel hang; the devices are abandoned,
// the call is named on stderr, and the process exits 1 (a thread stuck in the kernel cannot be
// recovered from user space).
int run_watching_devices(std::span<WatchedDevice* const> devices, std::chrono::milliseconds limit,
                         const std::function<int()>& body);

}  // namespace vfio::bench
