// conform: runs the migration contract checks against a device and reports them as a table (and
// JSON); the exit code is 0 only when no check failed.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/supervisor.h"
#include "conform/checker.h"
#include "core/atomic_file.h"
#include "core/json_text.h"
#include "core/kernel_device.h"
#include "core/kernel_log.h"
#include "core/untrusted_text.h"
#include "faults/plan.h"

namespace vfio::cli {
namespace {

constexpr const char* kKmsg = "/dev/kmsg";

using conform::Verdict;

// Table cells: failures stand out, the rest stays quiet.
std::string_view verdict_cell(Verdict v) {
  return v == Verdict::kFail ? "FAIL" : conform::verdict_name(v);
}

std::string summary_line(const conform::Counts& c) {
  return fmt::format("conform: {} checks, {} passed, {} failed, {} deviations, {} skipped",
                     c.checks, c.passed, c.failed, c.deviations, c.skipped);
}

// Groups in the order their first check ran; with `failures_only`, only failed checks.
void print_table(const conform::Report& r, bool failures_only) {
  std::vector<std::string> groups;
  for (const auto& c : r.checks)
    if (std::find(groups.begin(), groups.end(), c.group) == groups.end()) groups.push_back(c.group);
  if (!failures_only) fmt::print("{} (migration flags {:#x})\n", r.device, r.mig_flags);
  for (const auto& g : groups) {
    bool header = false;
    for (const auto& c : r.checks) {
      if (c.group != g || (failures_only && c.verdict != Verdict::kFail)) continue;
      if (!header) fmt::print("\n{}\n", g);
      header = true;
      fmt::print("  {:<38} {:<9} {}\n", c.id, verdict_cell(c.verdict), printable(c.detail));
    }
  }
  if (!failures_only || r.counts().failed) fmt::print("\n");
}

Result<> write_report_json(const conform::Report& r, const std::string& path) {
  std::string checks;
  for (const auto& c : r.checks) {
    if (!checks.empty()) checks += ",\n";
    checks += fmt::format(
        "    {{\"id\": {}, \"group\": {}, \"verdict\": {}, \"detail\": {}, \"seconds\": {:.6f}}}",
        json_quote(c.id), json_quote(c.group), json_quote(conform::verdict_name(c.verdict)),
        json_quote(c.detail), std::chrono::duration<double>(c.elapsed).count());
  }
  const auto n = r.counts();
  const std::string out = fmt::format(
      "{{\n  \"command\": \"conform\",\n  \"device\": {},\n  \"migration_flags\": {},\n"
      "  \"ok\": {},\n  \"summary\": {{\"checks\": {}, \"passed\": {}, \"failed\": {}, "
      "\"deviations\": {}, \"skipped\": {}}},\n  \"checks\": [\n{}\n  ]\n}}\n",
      json_quote(r.device), r.mig_flags, n.failed ? "false" : "true", n.checks, n.passed, n.failed,
      n.deviations, n.skipped, checks);
  return write_file_atomically(path, out);
}

// The device work: open, check, report. Run in a child process (cli/supervisor.h): a call stuck
// in the kernel for good must not keep the verdict from the caller.
int check_and_report(const ParsedArgs& args, conform::Options options) {
  auto opened = open_arg(args.positionals[0], 0);
  if (!opened.device) {
    if (opened.usage) return usage_error("conform", opened.device.error());
    print_error("conform", opened.device.error().describe());
    return kExitFailed;
  }
  // The simulator checks every byte it is given, so accepting a corrupted stream is a bug there;
  // real devices (mtty) may only check the header.
  options.strict_resume_validation = opened.device->model != nullptr;
  // SC->PC and SC->PCP hang Linux 6.12's vfio core, so a KernelDevice (a real device, or the
  // simulator over FUSE) refuses them unsent; --unsafe-arcs alone lifts that. The simulator
  // called in process has no kernel to hang: it always gets them.
  const bool unsafe = args.has("unsafe-arcs");
  auto* kernel = dynamic_cast<KernelDevice*>(opened.device->device.get());
  if (kernel) kernel->allow_hanging_arcs(unsafe);
  options.send_hanging_arcs = unsafe || !kernel;
  // A simulated device has no iova_bitmap on its path (FUSE hands the ioctl to the server).
  options.report_huge_pages = unsafe || opened.device->model != nullptr;
  if (auto model = opened.device->model)
    options.dma_write = [model](std::uint64_t iova) { model->mark_dirty(iova); };
  // Kernel trouble during a check fails it: watched on real devices unless told otherwise.
  const std::string log = args.value("kernel-log").value_or(opened.device->model ? "none" : kKmsg);
  if (log != "none") options.kernel_log = log;
  options.reopen = [&dev = *opened.device, unsafe]() -> Result<Device*> {
    auto again = dev.reopen();
    if (auto* k = again ? dynamic_cast<KernelDevice*>(*again) : nullptr)
      k->allow_hanging_arcs(unsafe);
    return again;
  };

  auto report = conform::check_device(*opened.device->device, options);
  if (!report) {
    print_error("conform", report.error().describe() +
                               (options.kernel_log ? " (--kernel-log none: do not watch it)" : ""));
    return kExitFailed;
  }
  if (report->device_abandoned) {
    keep_for_process(std::move(*opened.device));
    print_error("conform", "a device call did not return (kernel-hang); the device was abandoned");
  }
  print_table(*report, args.has("quiet"));
  fmt::print("{}\n", summary_line(report->counts()));
  if (auto path = args.value("json")) {
    if (auto w = write_report_json(*report, *path); !w) {
      print_error("conform", w.error().describe());
      return kExitFailed;
    }
  }
  return report->ok() ? kExitOk : kExitFailed;
}

}  // namespace

int run_conform(const ParsedArgs& args) {
  conform::Options options;
  if (auto b = args.value("buffer-size")) {
    auto size = parse_size(*b);
    if (!size || *size == 0 || *size > (1ULL << 30))
      return usage_error("conform", Error{EINVAL, fmt::format("--buffer-size must be between 1 "
                                                              "byte and 1 GiB, not {}",
                                                              *b)});
    options.buffer_size = static_cast<std::size_t>(*size);
  }
  if (auto t = args.value("call-timeout")) {
    auto d = faults::parse_duration(*t);
    if (!d || std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() == 0)
      return usage_error("conform", Error{EINVAL, fmt::format("bad --call-timeout '{}' (e.g. "
                                                              "500ms, 10s)",
                                                              *t)});
    options.call_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  if (auto ignore = args.value("kernel-log-ignore")) {
    if (auto rx = parse_kernel_log_ignore(*ignore); !rx) return usage_error("conform", rx.error());
    options.kernel_log_ignore = *ignore;
  }
  return run_supervised("conform", [&] { return check_and_report(args, options); });
}

}  // namespace vfio::cli
