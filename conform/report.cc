#include "conform/report.h"

#include <algorithm>

namespace vfio::conform {

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kDeviation:
      return "deviation";
    case Verdict::kSkip:
      return "skip";
  }
  return "unknown";
}

Counts Report::counts() const {
  Counts c;
  c.checks = checks.size();
  for (const auto& check : checks) {
    switch (check.verdict) {
      case Verdict::kPass:
        ++c.passed;
        break;
      case Verdict::kFail:
        ++c.failed;
        break;
      case Verdict::kDeviation:
        ++c.deviations;
        break;
      case Verdict::kSkip:
        ++c.skipped;
        break;
    }
  }
  return c;
}

const Check* Report::find(std::string_view id) const {
  auto it = std::find_if(checks.begin(), checks.end(), [&](const Check& c) { return c.id == id; });
  return it == checks.end() ? nullptr : &*it;
}

}  // namespace vfio::conform
