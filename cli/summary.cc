#include "cli/summary.h"

#include <cstdio>

#include <fmt/format.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/json_text.h"
#include "core/untrusted_text.h"

namespace vfio::cli {
namespace {

double seconds(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double>(ns).count();
}

std::string phase_line(const Report& r) {
  std::string out;
  for (const auto& p : r.phases) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {:.1f} ms", phase_name(p.phase), seconds(p.elapsed) * 1e3);
  }
  return out;
}

std::string json_report(const Report& r) {
  std::string phases;
  for (const auto& p : r.phases) {
    if (!phases.empty()) phases += ", ";
    phases += fmt::format("{}: {:.6f}", json_quote(phase_name(p.phase)), seconds(p.elapsed));
  }
  double total = seconds(r.total);
  return fmt::format(
      "{{\"device_bytes\": {}, \"stream_bytes\": {}, \"seconds\": {:.6f}, "
      "\"cpu_seconds\": {:.6f}, \"bytes_per_second\": {:.0f}, \"phases\": {{{}}}, "
      "\"precopy_iterations\": {}, "
      "\"precopy_bytes\": {}, \"stop_copy_bytes\": {}, \"final_pending\": {}, "
      "\"downtime_seconds\": {:.6f}, \"dirty_pages\": {}}}",
      r.device_bytes, r.stream_bytes, total, seconds(r.cpu),
      total > 0 ? static_cast<double>(r.device_bytes) / total : 0.0, phases, r.precopy_iterations,
      r.precopy_bytes, r.stop_copy_bytes, r.final_pending, seconds(r.downtime), r.dirty_pages);
}

}  // namespace

void print_summary(const Summary& s) {
  for (const auto& [key, value] : s.facts) fmt::print("  {:<22} {}\n", key, printable(value));
  const Report* main = s.source ? &*s.source : s.destination ? &*s.destination : nullptr;
  if (main && !s.error) {
    double total = seconds(main->total);
    fmt::print("{}: moved {} of device state ({} stream) in {:.2f} s, {}/s\n", s.command,
               format_size(main->device_bytes), format_size(main->stream_bytes), total,
               format_size(total > 0 ? static_cast<std::uint64_t>(
                                           static_cast<double>(main->device_bytes) / total)
                                     : 0));
  }
  if (s.source) fmt::print("  source phases:      {}\n", phase_line(*s.source));
  if (s.source && s.source->precopy_iterations)
    fmt::print(
        "  pre-copy:           {} iterations sent {} while the VM ran; estimate {} at the "
        "switchover\n",
        s.source->precopy_iterations, format_size(s.source->precopy_bytes),
        format_size(s.source->final_pending));
  if (s.source && !s.error)
    fmt::print("  downtime (source):  {:.1f} ms, {} in stop-copy\n",
               seconds(s.source->downtime) * 1e3, format_size(s.source->stop_copy_bytes));
  if (s.destination) fmt::print("  destination phases: {}\n", phase_line(*s.destination));
  if (s.verified) {
    fmt::print("{}\n", *s.verified ? fmt::format("verified: destination state equals the source "
                                                 "byte for byte ({} and config space)",
                                                 format_size(s.verified_bytes))
                                   : fmt::format("VERIFY FAILED: states differ at byte {}",
                                                 s.verified_bytes));
  }
  if (s.error) print_error(s.command, s.error->describe());
}

Result<> write_json(const Summary& s, const std::string& path) {
  std::string facts;
  for (const auto& [key, value] : s.facts) {
    if (!facts.empty()) facts += ", ";
    facts += fmt::format("{}: {}", json_quote(key), json_quote(value));
  }
  std::string out = fmt::format(
      "{{\"command\": {}, \"ok\": {}, \"error\": {}, \"errno\": {}, \"source\": {}, "
      "\"destination\": {}, \"verified\": {}, \"facts\": {{{}}}}}\n",
      json_quote(s.command), s.error ? "false" : "true",
      s.error ? json_quote(s.error->describe()) : "null", s.error ? s.error->code : 0,
      s.source ? json_report(*s.source) : "null",
      s.destination ? json_report(*s.destination) : "null",
      s.verified ? (*s.verified ? "true" : "false") : "null", facts);
  return write_file_atomically(path, out);
}

}  // namespace vfio::cli
