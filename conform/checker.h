// The migration contract checker behind `vfio-mig conform`: drives any vfio::Device through the
// VFIO migration v2 uAPI (shared/docs/vfio-migration-uapi.md) and records, check by check,
// whether it behaves as the contract says. Device-agnostic: it only uses the Device interface,
// only drives the migration features, and never writes config space.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "conform/report.h"
#include "core/device.h"
#include "core/result.h"

namespace vfio::conform {

struct Options {
  std::size_t buffer_size = 1 << 20;            // bytes per read() and write()
  std::uint64_t stream_limit = 16ULL << 30;     // reading beyond this without EOF fails
  std::uint64_t max_saved_stream = 1ULL << 30;  // longer streams skip the resume checks
  double size_tolerance = 0.10;                 // MIG_DATA_SIZE vs the real stream length
  // A device known to validate every byte (the simulator) must reject a corrupted stream;
  // otherwise accepting one is only a deviation (mtty takes anything after a good header).
  bool strict_resume_validation = false;
  // SC->PC and SC->PCP are refused by the contract, but Linux's vfio core (6.12,
  // vfio_mig_get_next_state) spins forever on them for PRE_COPY devices: the ERROR entry of its
  // table matches every flag. Off by default so a real host is never hung (KernelDevice would
  // refuse them anyway); the in-process simulator and --unsafe-arcs send them.
  bool send_hanging_arcs = false;
  // Makes the device DMA-write the page holding `iova` while logging runs (the simulator's
  // SimDevice::mark_dirty), so the REPORT checks know which bits must come back. Unset for a real
  // device, which conform cannot make do DMA: those checks then judge an idle device's reports.
  std::function<void(std::uint64_t iova)> dma_write;
  // REPORT at page sizes of 2^61 and more divides by zero in Linux's iova_bitmap before
  // "iommufd: Don't overflow during division for dirty tracking" (October 2025). Off by default
  // so a real host is never crashed; simulated devices (any transport) and --unsafe-arcs get them.
  bool report_huge_pages = false;
  // Every device call runs under a watchdog: one that has not returned after this long is a
  // failed check (watchdog/kernel-hang, naming the call); the checks stop there, the thread
  // stuck in the call is abandoned and the device never touched again.
  std::chrono::milliseconds call_timeout{10'000};
  // A kernel log in /dev/kmsg's record format to watch (core/kernel_log.h): a trouble line
  // (WARN, BUG, Oops, lockdep, KASAN, soft lockup, ...) logged during a check fails that check,
  // unless `kernel_log_ignore` (an ECMAScript regex) matches it. Unset: not watched.
  std::optional<std::string> kernel_log;
  std::optional<std::string> kernel_log_ignore;
  // Closes the device under check and opens it again (devices::OpenedDevice::reopen), returning
  // the new open, which the checker uses from then on; the device given to check_device is gone
  // by then. Unset: the checks that need a reopen skip.
  std::function<Result<Device*>()> reopen;
};

// Runs every check from a fresh device (VFIO_DEVICE_RESET before each) and resets the device at
// the end (the last open, if Options::reopen was called). Contract violations are failing checks,
// not errors; an error means bad options (or a kernel log that cannot be opened). After a kernel
// hang (Report::device_abandoned) a thread is still inside a call on `dev`: the caller must neither
// use nor destroy it.
Result<Report> check_device(Device& dev, const Options& options = {});

}  // namespace vfio::conform
