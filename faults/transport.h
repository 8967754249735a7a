// Simulated devices for fault cases, on either transport: in-process (DirectDevice, fast) or
// served over FUSE and reached with real syscalls (KernelDevice), one shared mount per process.
#pragma once

#include <memory>
#include <string>

#include "core/device.h"
#include "simdev/sim_device.h"

namespace vfio::faults {

// kFuseFlaky: FUSE, and the server answers some requests EINTR, EAGAIN or short (faults below
// the device seam, sim::flaky_server), which a correct engine absorbs.
enum class Transport { kDirect, kFuse, kFuseFlaky };
std::string_view transport_name(Transport t);

struct SimHandle {
  std::shared_ptr<sim::SimDevice> model;
  std::unique_ptr<Device> device;
};

// Whether the transport can be used here (FUSE needs /dev/fuse and mount permission).
Result<> transport_available(Transport t);

// Unmounts this process's FUSE mount, if it made one (a child of the matrix before it exits).
void close_transport();

// A new simulated device named `name` (unique per process for FUSE).
Result<SimHandle> open_sim(Transport t, const sim::Profile& profile, const sim::SimOptions& options,
                           const std::string& name);

}  // namespace vfio::faults
