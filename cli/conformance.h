// The migration contract checker behind `vfio-mig conform`: drives any vfio::Device through the
// VFIO migration v2 uAPI (shared/docs/vfio-migration-uapi.md) and records, check by check,
// whether it behaves as the contract says. Device-agnostic: it only uses the Device interface,
// only drives the migration features, and never writes config space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/result.h"

namespace vfio::cli {

enum class Verdict {
  kPass,
  kFail,       // the device breaks the contract
  kDeviation,  // allowed, but differs from the contract's wording (as real drivers do)
  kSkip,       // not applicable to this device, or a setup step failed
};

// "pass", "fail", "deviation", "skip".
std::string_view verdict_name(Verdict v);

struct Check {
  std::string id;  // "arc/R->SC", "stream/stop-copy-eof-sticky", ...
  std::string group;
  Verdict verdict = Verdict::kSkip;
  std::string detail;  // expected vs got, errno names
};

struct ConformanceOptions {
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
};

struct ConformanceCounts {
  std::size_t checks = 0, passed = 0, failed = 0, deviations = 0, skipped = 0;
};

struct ConformanceReport {
  std::string device;
  std::uint64_t mig_flags = 0;  // 0 when GET MIGRATION failed
  std::vector<Check> checks;

  ConformanceCounts counts() const;
  bool ok() const { return counts().failed == 0; }
  // The check with this id, or nullptr.
  const Check* find(std::string_view id) const;
};

// Runs every check from a fresh device (VFIO_DEVICE_RESET before each) and resets the device at
// the end. Contract violations are failing checks, not errors; an error means bad options.
Result<ConformanceReport> check_conformance(Device& dev, const ConformanceOptions& options = {});

}  // namespace vfio::cli
