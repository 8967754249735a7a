// fuzz-resume: damaged copies of a device's own saved state written into RESUMING, each outcome
// classified, the device and the kernel watched (faults/fuzz_resume.h, docs/fuzz-resume.md).
// Exit 0 when nothing was found (accepted corrupted inputs are reported, not failures), 1 on a
// finding or when the run could not start, 2 on bad usage.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "core/atomic_file.h"
#include "core/json_text.h"
#include "core/kernel_log.h"
#include "core/untrusted_text.h"
#include "faults/fuzz_resume.h"
#include "faults/plan.h"

namespace vfio::cli {
namespace {

constexpr std::string_view kCommand = "fuzz-resume";
constexpr const char* kKmsg = "/dev/kmsg";
constexpr std::uint64_t kDefaultSeconds = 60;
// A corpus file larger than this is not a saved state we fuzz by copying.
constexpr std::uintmax_t kMaxCorpusFile = 1ULL << 30;

using faults::FuzzFinding;
using faults::FuzzResumeReport;
using faults::ResumeOutcome;

std::uint64_t count(const FuzzResumeReport& r, ResumeOutcome o) {
  return r.outcomes.contains(o) ? r.outcomes.at(o) : 0;
}

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

// "EINVAL 12, ENOMEM 3"
std::string errno_list(const std::map<std::string, std::uint64_t>& m) {
  std::string out;
  for (const auto& [name, n] : m) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", name, n);
  return out;
}

std::string summary_line(const FuzzResumeReport& r) {
  const double s = seconds(r.elapsed);
  auto with = [](std::uint64_t n, std::string_view what,
                 const std::map<std::string, std::uint64_t>& errnos) {
    return errnos.empty() ? fmt::format("{} {}", n, what)
                          : fmt::format("{} {} ({})", n, what, errno_list(errnos));
  };
  return fmt::format(
      "fuzz-resume: {} inputs in {:.1f} s ({:.0f}/s), seed {}: {} accepted (corrupted), {}, {}, "
      "{} hangs; {} findings; {} health round trips, {} resets",
      r.inputs, s, s > 0 ? static_cast<double>(r.inputs) / s : 0.0, r.seed,
      count(r, ResumeOutcome::kAccepted),
      with(count(r, ResumeOutcome::kRefused), "refused", r.refused_errnos),
      with(count(r, ResumeOutcome::kWriteRefused), "write refused", r.write_errnos),
      count(r, ResumeOutcome::kHang), r.findings.size(), r.health_checks, r.resets);
}

void print_finding(std::FILE* out, const FuzzFinding& f, const std::string& device_arg) {
  fmt::print(out, "  {}{}: {}\n", f.kind, f.input ? fmt::format(" (input {})", *f.input) : "",
             printable(f.detail));
  if (!f.mutation.empty()) fmt::print(out, "    made by: {}\n", printable(f.mutation));
  if (!f.reproducer.empty())
    fmt::print(out, "    replay:  vfio-mig load {} -i {}\n", printable(device_arg),
               printable(f.reproducer));
}

std::string json_findings(const std::vector<FuzzFinding>& findings) {
  std::string out;
  for (const auto& f : findings) {
    out += fmt::format(
        "{}\n    {{\"kind\": {}, \"input\": {}, \"mutation\": {}, \"detail\": {}, "
        "\"reproducer\": {}}}",
        out.empty() ? "" : ",", json_quote(f.kind), f.input ? fmt::format("{}", *f.input) : "null",
        json_quote(f.mutation), json_quote(f.detail),
        f.reproducer.empty() ? "null" : json_quote(f.reproducer));
  }
  return out.empty() ? "[]" : "[" + out + "\n  ]";
}

std::string json_counts(const std::map<std::string, std::uint64_t>& m) {
  std::string out;
  for (const auto& [name, n] : m)
    out += fmt::format("{}{}: {}", out.empty() ? "" : ", ", json_quote(name), n);
  return "{" + out + "}";
}

// Timing comes last, on a line of its own: the rest is the same for the same seed.
Result<> write_report_json(const FuzzResumeReport& r, const std::string& path) {
  const double s = seconds(r.elapsed);
  const std::string out = fmt::format(
      "{{\n  \"command\": \"fuzz-resume\",\n  \"device\": {},\n  \"layout\": {},\n"
      "  \"seed\": {},\n  \"seeds\": {},\n  \"ok\": {},\n  \"inputs\": {},\n"
      "  \"outcomes\": {{\"accepted\": {}, \"refused\": {}, \"write-refused\": {}, \"hang\": "
      "{}}},\n"
      "  \"refused_errnos\": {},\n  \"write_errnos\": {},\n  \"accepted_corrupt\": {},\n"
      "  \"health_checks\": {},\n  \"resets\": {},\n  \"device_abandoned\": {},\n"
      "  \"cancelled\": {},\n  \"findings\": {},\n  \"accepted\": {},\n"
      "  \"timing\": {{\"elapsed_s\": {:.3f}, \"inputs_per_s\": {:.1f}}}\n}}\n",
      json_quote(r.device), json_quote(r.layout), r.seed, r.seeds,
      r.findings.empty() ? "true" : "false", r.inputs, count(r, ResumeOutcome::kAccepted),
      count(r, ResumeOutcome::kRefused), count(r, ResumeOutcome::kWriteRefused),
      count(r, ResumeOutcome::kHang), json_counts(r.refused_errnos), json_counts(r.write_errnos),
      r.accepted_corrupt, r.health_checks, r.resets, r.device_abandoned, r.cancelled,
      json_findings(r.findings), json_findings(r.accepted), s,
      s > 0 ? static_cast<double>(r.inputs) / s : 0.0);
  return write_file_atomically(path, out);
}

// Every regular file of `dir`, by name, as a one-device stream.
Result<std::vector<faults::SavedPayload>> read_corpus(const std::string& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  if (ec) return fail(ec.value(), fmt::format("--corpus {}: {}", dir, ec.message()));
  if (files.empty()) return fail(EINVAL, fmt::format("--corpus {}: no files in it", dir));
  std::sort(files.begin(), files.end());
  std::vector<faults::SavedPayload> out;
  for (const auto& path : files) {
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || size > kMaxCorpusFile)
      return fail(EINVAL, fmt::format("--corpus file {}: {}", path.string(),
                                      ec ? ec.message() : "over 1 GiB"));
    std::vector<std::byte> bytes(size);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
    if (!in) return fail(EIO, fmt::format("--corpus file {}: could not be read", path.string()));
    auto p = faults::read_payload_stream(bytes);
    if (!p)
      return fail(EINVAL, fmt::format("--corpus file {} is not a one-device vfio-mig stream: {}",
                                      path.string(), p.error().message));
    out.push_back(std::move(*p));
  }
  return out;
}

// The reproducer directory: made now (one level), so that a bad path fails before the device is
// touched.
Result<> make_out_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    return fail(errno, fmt::format("--out {}: cannot create it", dir));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(ENOTDIR, fmt::format("--out {}: not a directory", dir));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return fail(EACCES, fmt::format("--out {}: not writable", dir));
  return {};
}

Result<std::uint64_t> positive(const ParsedArgs& args, std::string_view option) {
  auto text = args.value(option);
  auto n = parse_uint(*text);
  if (!n || *n == 0)
    return fail(EINVAL, fmt::format("--{} must be a positive number, not '{}'", option, *text));
  return *n;
}

}  // namespace

int run_fuzz_resume(const ParsedArgs& args) {
  faults::FuzzResumeOptions options;
  auto usage = [](const Error& e) { return usage_error(kCommand, e); };
  if (args.has("runs")) {
    auto n = positive(args, "runs");
    if (!n) return usage(n.error());
    options.max_inputs = *n;
  }
  if (args.has("seconds") || !args.has("runs")) {
    std::uint64_t s = kDefaultSeconds;
    if (args.has("seconds")) {
      auto n = positive(args, "seconds");
      if (!n || *n > 366ULL * 86400) return usage(Error{EINVAL, "--seconds must be 1 to 31622400"});
      s = *n;
    }
    options.duration = std::chrono::seconds(s);
  }
  if (auto s = args.value("seed")) {
    auto n = parse_uint(*s);
    if (!n) return usage(Error{EINVAL, fmt::format("--seed must be a number, not '{}'", *s)});
    options.seed = *n;
  } else {
    options.seed = std::random_device{}();
  }
  if (args.has("health-every")) {
    auto n = positive(args, "health-every");
    if (!n) return usage(n.error());
    options.health_every = *n;
  }
  if (auto t = args.value("call-timeout")) {
    auto d = faults::parse_duration(*t);
    if (!d || std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() == 0)
      return usage(Error{EINVAL, fmt::format("bad --call-timeout '{}' (e.g. 500ms, 10s)", *t)});
    options.call_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  if (auto ignore = args.value("kernel-log-ignore")) {
    if (auto rx = parse_kernel_log_ignore(*ignore); !rx) return usage(rx.error());
    options.kernel_log_ignore = *ignore;
  }
  auto setup = transfer_setup(args);
  if (!setup) return usage(setup.error());
  options.session = setup->session;
  options.session.on_progress = nullptr;  // the progress line is fuzz-resume's
  if (auto b = setup->session.migration.data_buffer_size) options.buffer_size = b;
  if (auto dir = args.value("corpus")) {
    auto corpus = read_corpus(*dir);
    if (!corpus) return usage(corpus.error());
    options.corpus = std::move(*corpus);
  }
  options.out_dir = args.value("out").value_or("fuzz-resume-out");
  if (auto made = make_out_dir(options.out_dir); !made) return usage(made.error());

  auto opened = open_arg(args.positionals[0], 0);
  if (!opened.device) {
    if (opened.usage) return usage(opened.device.error());
    print_error(kCommand, opened.device.error().describe());
    return kExitFailed;
  }
  options.config_restore = opened.device->config_restore;
  // Kernel trouble is a finding: watched on real devices unless told otherwise.
  const std::string log = args.value("kernel-log").value_or(opened.device->model ? "none" : kKmsg);
  if (log != "none") options.kernel_log = log;

  auto cancel = std::make_shared<std::atomic<bool>>(false);
  options.cancel = cancel;
  interrupt::OnInterrupt on_signal([cancel] { *cancel = true; });
  auto progress = setup->progress;
  options.on_progress = [progress](const faults::FuzzProgress& p) {
    progress->show(fmt::format(
        "fuzz-resume {:.0f} s: {} inputs, {} accepted, {} refused, {} "
        "write refused, {} findings",
        seconds(p.elapsed), p.inputs, p.accepted, p.refused, p.write_refused, p.findings));
  };

  auto report = faults::fuzz_resume(*opened.device->device, std::move(options));
  progress->finish();
  if (!report) {
    print_error(kCommand, report.error().describe());
    return kExitFailed;
  }
  if (report->device_abandoned) keep_for_process(std::move(*opened.device));
  // With --json -, stdout carries the JSON alone.
  const auto json = args.value("json");
  std::FILE* text = json == "-" ? stderr : stdout;
  fmt::print(text, "{} ({} seed(s), layout {})\n", printable(report->device), report->seeds,
             report->layout);
  if (!report->findings.empty()) fmt::print(text, "findings:\n");
  for (const auto& f : report->findings) print_finding(text, f, args.positionals[0]);
  if (report->accepted_corrupt)
    fmt::print(text, "accepted corrupted inputs: {} ({} with a reproducer{})\n",
               report->accepted_corrupt, report->accepted.size(),
               report->accepted.empty()
                   ? ""
                   : fmt::format(", the first: {}", report->accepted.front().reproducer));
  fmt::print(text, "{}\n", summary_line(*report));
  if (json) {
    if (auto w = write_report_json(*report, *json); !w) {
      print_error(kCommand, w.error().describe());
      return kExitFailed;
    }
  }
  if (interrupt::received())
    return interrupt::report(kCommand,
                             report->device_abandoned
                                 ? "a device call had not returned; the device was abandoned"
                                 : "stopped after the current input; the device runs");
  return report->findings.empty() ? kExitOk : kExitFailed;
}

}  // namespace vfio::cli
