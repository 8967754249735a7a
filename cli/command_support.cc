#include "cli/command_support.h"

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/interrupt.h"

namespace vfio::cli {

Result<TransferSetup> transfer_setup(const ParsedArgs& args) {
  TransferSetup setup;
  if (auto b = args.value("buffer-size")) {
    auto size = parse_size(*b);
    if (!size) return std::unexpected(size.error());
    if (*size == 0 || *size > (1ULL << 30)) {
      return fail(EINVAL,
                  fmt::format("--buffer-size must be between 1 byte and 1 GiB, not {}", *b));
    }
    setup.session.migration.data_buffer_size = static_cast<std::size_t>(*size);
  }
  setup.session.migration.config_state = !args.has("no-config");
  setup.session.reset_first = args.has("reset-first");
  setup.session.on_notice = [](const std::string& line) { fmt::print(stderr, "{}\n", line); };
  setup.progress =
      std::make_shared<ProgressLine>(!args.has("quiet") && ProgressLine::stderr_is_terminal());
  setup.session.on_progress = [p = setup.progress](const Progress& pr) { p->update(pr); };
  return setup;
}

Result<> precopy_setup(const ParsedArgs& args, TransferSetup& setup,
                       std::string_view default_mode) {
  const std::string mode = args.value("precopy").value_or(std::string(default_mode));
  if (mode != "auto" && mode != "off")
    return fail(EINVAL, fmt::format("--precopy must be auto or off, not '{}'", mode));
  setup.session.migration.precopy = mode == "auto";
  if (auto d = args.value("downtime-ms")) {
    auto ms = parse_uint(*d);
    if (!ms || *ms > 3'600'000)
      return fail(EINVAL, fmt::format("--downtime-ms must be 0 to 3600000, not '{}'", *d));
    setup.session.downtime_limit = std::chrono::milliseconds(*ms);
  }
  if (auto n = args.value("max-iterations")) {
    auto it = parse_uint(*n);
    if (!it) return fail(EINVAL, fmt::format("--max-iterations must be a number, not '{}'", *n));
    setup.session.max_iterations = *it;
  }
  setup.switchover_ack = args.has("switchover-ack");
  return {};
}

OpenOutcome open_arg(std::string_view text, std::size_t index) {
  auto arg = parse_device_arg(text);
  if (!arg) return {std::unexpected(arg.error()), true};
  return {open_device(*arg, index), false};
}

void keep_for_process(OpenedDevice device) {
  static auto* kept = new std::vector<OpenedDevice>;
  kept->push_back(std::move(device));
}

namespace {

// What an interrupted command leaves behind, in one line.
std::string interrupted_outcome(const Summary& s) {
  if (!s.error) return "it had completed before the signal took effect";
  if (s.error->code != ECANCELED) return s.error->describe();
  if (s.command == "save") return "the device is back in RUNNING; no output written";
  if (s.command == "load") return "the device was reset and runs; nothing was loaded";
  return "the source is back in RUNNING; the destination was reset";
}

}  // namespace

int finish(const Summary& summary, const ParsedArgs& args) {
  if (interrupt::received()) {
    Summary quiet = summary;
    quiet.error.reset();  // said once, below
    print_summary(quiet);
    if (auto path = args.value("json")) (void)write_json(summary, *path);
    return interrupt::report(summary.command, interrupted_outcome(summary));
  }
  print_summary(summary);
  if (auto path = args.value("json")) {
    if (auto w = write_json(summary, *path); !w) {
      print_error(summary.command, w.error().describe());
      return kExitFailed;
    }
  }
  bool ok = !summary.error && summary.verified.value_or(true);
  return ok ? kExitOk : kExitFailed;
}

}  // namespace vfio::cli
