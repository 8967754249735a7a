// The one place that turns a device specification into an open Device, for the CLI, the fault
// matrix, the benchmarks and the tests:
//   sim:PROFILE[,size=SIZE][,seed=N][,dirty=SIZE[/read]][,transport=fuse|fuse-flaky|direct]
//              [,keep-state=0|1][,hang-sc-pc=0|1]
//                                                          a simulated device; served over
//                                                          FUSE by default (direct if FUSE is
//                                                          unusable, with a notice on stderr)
//   /dev/vfio/devices/vfioN                                an iommufd cdev
//   0000:00:03.0 | <mdev uuid> | group:N:NAME | /path     the legacy group path, or any file
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/config_restore.h"
#include "core/device.h"
#include "simdev/sim_device.h"
#include "simdev/sim_mount.h"

namespace vfio::devices {

enum class Transport {
  kAuto,    // FUSE when usable, else direct (with a one-line notice on stderr)
  kFuse,    // FUSE or an error: the engine makes the real syscalls (KernelDevice)
  kDirect,  // in-process calls into the model (DirectDevice)
  // FUSE, and the server answers some requests EINTR, EAGAIN or short (faults below the device
  // seam, sim::flaky_server), which a correct engine absorbs.
  kFuseFlaky,
};
std::string_view transport_name(Transport t);
// Whether the transport can be used here (FUSE needs /dev/fuse and mount permission).
Result<> transport_available(Transport t);

struct SimSpec {
  std::string profile;
  std::optional<std::uint64_t> state_size;  // unset: the profile's default
  std::uint64_t dirty_rate = 0;             // dirty=SIZE: guest writes per second while running
  std::uint64_t dirty_per_read = 0;  // dirty=SIZE/read: guest writes before each pre-copy read
  std::uint64_t seed = 0;            // 0: chosen per device (1 for the first, 2 for the second...)
  Transport transport = Transport::kAuto;
  std::optional<bool> keep_state;  // keep-state=0|1; unset: the profile's (SimOptions)
  bool hang_sc_pc = false;         // hang-sc-pc=1: SC->PC/PCP blocks as on Linux 6.12
  // Not in the grammar: over FUSE, serve the device from a mount of its own whose threads run
  // on this CPU (sim::SimMountOptions::cpu); -1: the process's shared mount.
  int server_cpu = -1;
};

struct DeviceArg {
  std::string text;            // as given
  std::optional<SimSpec> sim;  // set for sim: specs; otherwise a kernel device
};

Result<DeviceArg> parse_device_arg(std::string_view text);

// A simulated device's state size (sim:...,size=SIZE, demo --size, faults --size): at most
// sim::kMaxDeclaredSize (64 GiB), the largest state a simulated destination accepts. Errors start
// with `what`.
Result<std::uint64_t> parse_state_size(std::string_view text, std::string_view what);

struct OpenedDevice {
  // FUSE-served devices: the mount serving them, shared by every device of the process (unless
  // placed on a server CPU) and unmounted with the last one. Declared first so that it outlives
  // the device.
  std::shared_ptr<sim::SimMount> mount;
  std::unique_ptr<Device> device;
  std::shared_ptr<sim::SimDevice> model;  // simulated devices only
  // Real devices take only the config registers a VMM restores; the simulator (also when served
  // over FUSE, a KernelDevice too) every byte, which the fault oracles check.
  ConfigRestore config_restore = ConfigRestore::kExact;
  // Opens the same device once more: the kernel device by its spec again; a simulated one on the
  // same model (a new DirectDevice, or the same file on the mount), since a second open of a
  // sim: spec would make a new model.
  std::function<Result<std::unique_ptr<Device>>()> open_again;

  // Closes `device` and opens it again (open_again), as a VMM restarting would; `device` is then
  // the new open. On failure `device` stays closed (null).
  Result<Device*> reopen();
};

// The driver behind a spec, for reports and charts: a kernel device's bound driver from sysfs
// ("mtty", "mlx5_vfio_pci"; "unknown" when sysfs does not say), or the simulator and its profile.
std::string driver_name(const DeviceArg& spec);

// `index` picks distinct default seeds for simulated devices opened by one command.
Result<OpenedDevice> open_device(const DeviceArg& spec, std::size_t index);

// A simulated device named `name` on the transport (kAuto: FUSE, else direct); over FUSE on a
// mount of its own served on `server_cpu` when that is not -1.
Result<OpenedDevice> open_sim(Transport t, const sim::Profile& profile,
                              const sim::SimOptions& options, const std::string& name,
                              int server_cpu = -1);

// Keeps this process's FUSE mount up while held, so that devices opened and closed in turn (the
// fault matrix's cases) share one mount instead of mounting each time. A forked child makes its
// own mount: the parent's has no thread serving it there.
Result<std::shared_ptr<sim::SimMount>> hold_mount();

}  // namespace vfio::devices
