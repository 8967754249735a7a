#include "cli/command_support.h"

#include <fmt/format.h>

#include "cli/commands.h"

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
  setup.progress =
      std::make_shared<ProgressLine>(!args.has("quiet") && ProgressLine::stderr_is_terminal());
  setup.session.on_progress = [p = setup.progress](const Progress& pr) { p->update(pr); };
  return setup;
}

OpenOutcome open_arg(std::string_view text, std::size_t index) {
  auto arg = parse_device_arg(text);
  if (!arg) return {std::unexpected(arg.error()), true};
  return {open_device(*arg, index), false};
}

int finish(const Summary& summary, const ParsedArgs& args) {
  print_summary(summary);
  if (auto path = args.value("json")) {
    if (auto w = write_json(summary, *path); !w) {
      fmt::print(stderr, "vfio-mig {}: {}\n", summary.command, w.error().describe());
      return kExitFailed;
    }
  }
  bool ok = !summary.error && summary.verified.value_or(true);
  return ok ? kExitOk : kExitFailed;
}

}  // namespace vfio::cli
