#include "conform/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "conform/checker_context.h"
#include "core/state_machine.h"

namespace vfio::conform {
namespace detail {

Report Checker::run() {
  auto flags = query_migration_flags(dev_);
  if (!flags) {
    add("migration/flags", kMigration, Verdict::kFail,
        fmt::format("GET MIGRATION failed with {}: no migration support",
                    errno_name(flags.error().code)));
    return std::move(report_);
  }
  flags_ = report_.mig_flags = *flags;
  add("migration/flags", kMigration,
      flags_ & uapi::kMigrationStopCopy ? Verdict::kPass : Verdict::kFail,
      fmt::format("{:#x} ({}){}", flags_, flag_names(flags_),
                  flags_ & uapi::kMigrationStopCopy ? "" : ": STOP_COPY (mandatory) missing"));
  // The STOP_COPY stream first: the arcs out of RESUMING need one to load.
  check_stop_copy();
  for (State cur : reachable_states())
    for (std::uint32_t t = 0; t < uapi::kStateCount; ++t) check_arc(cur, static_cast<State>(t));
  check_precopy();
  check_data_size();
  check_resume();
  check_reset();
  check_header();
  check_dma();
  check_dma_report();
  (void)dev_.reset();  // leave the device running, with no session open
  // Report in the contract's order, whatever order the checks had to run in.
  std::stable_sort(report_.checks.begin(), report_.checks.end(),
                   [](const Check& a, const Check& b) { return rank(a.group) < rank(b.group); });
  return std::move(report_);
}

std::size_t Checker::rank(std::string_view group) {
  static constexpr std::array kOrder = {kMigration, kArcs,  kStream, kPrecopy, kDataSize,
                                        kResume,    kReset, kHeader, kDma,     kDmaReport};
  return std::find(kOrder.begin(), kOrder.end(), group) - kOrder.begin();
}

}  // namespace detail

Result<Report> check_device(Device& dev, const Options& options) {
  if (options.buffer_size == 0) return fail(EINVAL, "conformance: buffer size must not be 0");
  if (!(options.size_tolerance >= 0)) return fail(EINVAL, "conformance: negative size tolerance");
  return detail::Checker(dev, options).run();
}

}  // namespace vfio::conform
