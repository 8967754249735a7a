#include "conform/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "conform/checker_context.h"
#include "core/kernel_log.h"
#include "core/watched_device.h"

namespace vfio::conform {
namespace detail {
namespace {

// Report in the contract's order, whatever order the checks had to run in.
Report sorted(Report r) {
  std::stable_sort(r.checks.begin(), r.checks.end(), [](const Check& a, const Check& b) {
    return Checker::rank(a.group) < Checker::rank(b.group);
  });
  return r;
}

// At most this many trouble lines are quoted in one check's detail.
constexpr std::size_t kQuotedTroubles = 3;

}  // namespace

Checker::Checker(Device& dev, const Options& options, std::unique_ptr<KernelLog> log,
                 CurrentDevice* current)
    : dev_(dev), current_(current), opt_(options), buf_(options.buffer_size), log_(std::move(log)) {
  report_.device = dev.name();
}

Checker::~Checker() = default;

std::string Checker::kernel_log_news() {
  if (!log_) return "";
  std::lock_guard lock(log_mu_);
  auto troubles = log_->since_mark();
  if (!troubles) return "; kernel log unreadable: " + troubles.error().describe();
  if (troubles->empty()) return "";
  std::string news =
      fmt::format("; kernel log: {} trouble line(s) during this check", troubles->size());
  for (std::size_t i = 0; i < std::min(troubles->size(), kQuotedTroubles); ++i)
    news += fmt::format("; [{}] {}", (*troubles)[i].kind, (*troubles)[i].message);
  return news;
}

void Checker::add(std::string id, std::string_view group, Verdict v, std::string detail) {
  if (auto news = kernel_log_news(); !news.empty()) {
    v = Verdict::kFail;
    detail += news;
  }
  std::lock_guard lock(report_mu_);
  const auto now = std::chrono::steady_clock::now();
  report_.checks.push_back(
      {std::move(id), std::string(group), v, std::move(detail),
       std::chrono::duration_cast<std::chrono::microseconds>(now - last_added_)});
  last_added_ = now;
}

std::chrono::microseconds Checker::since_last_check() const {
  std::lock_guard lock(report_mu_);
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               last_added_);
}

Report Checker::snapshot() const {
  std::lock_guard lock(report_mu_);
  return report_;
}

Report Checker::run() {
  auto flags = query_migration_flags(dev_);
  if (!flags) {
    add("migration/flags", kMigration, Verdict::kFail,
        fmt::format("GET MIGRATION failed with {}: no migration support",
                    errno_name(flags.error().code)));
    return sorted(snapshot());
  }
  flags_ = *flags;
  {
    std::lock_guard lock(report_mu_);
    report_.mig_flags = flags_;
  }
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
  check_chunked();
  check_overflow();
  check_positional();
  check_concurrency();
  check_accounting();
  check_stale_fds();
  check_fd_direction();
  check_size_estimate();
  check_set_invalid();
  check_precopy_info();
  check_reopen();      // last: it replaces the device
  (void)dev_.reset();  // leave the device running, with no session open
  return sorted(snapshot());
}

std::size_t Checker::rank(std::string_view group) {
  static constexpr std::array kOrder = {
      kMigration,    kArcs,        kStream,      kPrecopy,   kDataSize, kResume,
      kReset,        kHeader,      kDma,         kDmaReport, kChunked,  kOverflow,
      kPositional,   kConcurrency, kAccounting,  kReopen,    kStaleFd,  kFdDirection,
      kSizeEstimate, kSetInvalid,  kPrecopyInfo, kWatchdog};
  return std::find(kOrder.begin(), kOrder.end(), group) - kOrder.begin();
}

namespace {

// One run of the checks, watched from the caller's thread. Shared with the checks' thread, which
// may outlive check_device (a hang).
struct Run {
  Run(Device& dev, const Options& options, std::unique_ptr<KernelLog> log)
      : current(dev), watched(current), checker(watched, options, std::move(log), &current) {}
  CurrentDevice current;  // under the watchdog, so that a reopened device is watched too
  WatchedDevice watched;
  Checker checker;
  std::optional<Report> report;
};

std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1000);
}

}  // namespace

Report run_watched(Device& dev, const Options& options, std::unique_ptr<KernelLog> log) {
  auto run = std::make_shared<Run>(dev, options, std::move(log));
  const auto limit = options.call_timeout;
  const auto hung = run_watching(run->watched, limit, [run] { run->report = run->checker.run(); });
  if (!hung) return std::move(*run->report);
  Report partial = run->checker.snapshot();
  const std::string after = partial.checks.empty() ? "" : ", after " + partial.checks.back().id;
  partial.checks.push_back(
      {"watchdog/kernel-hang", std::string(kWatchdog), Verdict::kFail,
       fmt::format("kernel-hang: {} did not return within {}{}; its thread is abandoned and the "
                   "device not touched again, so no later check ran{}",
                   hung->what, seconds_text(limit), after, run->checker.kernel_log_news()),
       run->checker.since_last_check()});
  partial.device_abandoned = true;
  return sorted(std::move(partial));
}

}  // namespace detail

Result<Report> check_device(Device& dev, const Options& options) {
  if (options.buffer_size == 0) return fail(EINVAL, "conformance: buffer size must not be 0");
  if (!(options.size_tolerance >= 0)) return fail(EINVAL, "conformance: negative size tolerance");
  if (options.call_timeout <= std::chrono::milliseconds::zero())
    return fail(EINVAL, "conformance: the call timeout must be positive");
  std::unique_ptr<KernelLog> log;
  if (options.kernel_log) {
    auto opened = KernelLog::open(*options.kernel_log, options.kernel_log_ignore);
    if (!opened) return std::unexpected(opened.error());
    log = std::make_unique<KernelLog>(std::move(*opened));
  }
  return detail::run_watched(dev, options, std::move(log));
}

}  // namespace vfio::conform
