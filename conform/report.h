// What the contract checks found: one verdict per check, grouped, with the counts the CLI's
// summary line and JSON report show.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vfio::conform {

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
  // Wall time since the previous check was recorded (the first: since the checks began): the
  // setup a check shares with the ones after it counts to the first of them.
  std::chrono::microseconds elapsed{};
};

struct Counts {
  std::size_t checks = 0, passed = 0, failed = 0, deviations = 0, skipped = 0;
};

struct Report {
  std::string device;
  std::uint64_t mig_flags = 0;  // 0 when GET MIGRATION failed
  std::vector<Check> checks;
  // A device call never returned (watchdog/kernel-hang): the checks stopped there and a thread
  // is still inside the device, which must be neither used nor destroyed.
  bool device_abandoned = false;

  Counts counts() const;
  bool ok() const { return counts().failed == 0; }
  // The check with this id, or nullptr.
  const Check* find(std::string_view id) const;
};

}  // namespace vfio::conform
