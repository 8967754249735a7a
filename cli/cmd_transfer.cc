// save, load and migrate.
#include <fmt/format.h>

#include <unistd.h>

#include <variant>
#include <vector>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/verify.h"
#include "core/atomic_file.h"
#include "core/local_migration.h"

namespace vfio::cli {
namespace {

// Opens the device or returns the exit code to leave with.
std::variant<OpenedDevice, int> open_or_exit(std::string_view command, std::string_view text,
                                             std::size_t index) {
  auto opened = open_arg(text, index);
  if (opened.device) return std::move(*opened.device);
  if (opened.usage) return usage_error(command, opened.device.error());
  print_error(command, opened.device.error().describe());
  return kExitFailed;
}

}  // namespace

int run_save(const ParsedArgs& args) {
  auto output = args.value("output");
  if (!output) return usage_error("save", Error{EINVAL, "save: -o FILE is required"});
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("save", setup.error());
  // A save is a snapshot of one side: stop-and-copy unless asked (QEMU pre-copies).
  if (auto p = precopy_setup(args, *setup, "off"); !p) return usage_error("save", p.error());
  auto dev = open_or_exit("save", args.positionals[0], 0);
  if (auto* code = std::get_if<int>(&dev)) return *code;
  auto& opened = std::get<OpenedDevice>(dev);

  Summary summary("save");
  auto file = AtomicFile::create(*output, interrupt::cancel_fd());
  if (!file) {
    summary.error = file.error();
    return finish(summary, args);
  }
  // "-": the stream owns stdout; what the user is told goes to stderr.
  if (*output == "-") ::dup2(STDERR_FILENO, STDOUT_FILENO);
  FdChannel out(file->fd(), file->path(), /*owns_fd=*/false);
  out.set_cancel_fd(interrupt::cancel_fd());
  Session session(setup->session);
  session.add_device(*opened.device, opened.device->name());
  interrupt::OnInterrupt cancel([&session] { session.cancel(); });
  auto report = session.save(out);
  setup->progress->finish();
  // The output replaces the old file only when the whole save succeeded and was not interrupted.
  Result<> kept = !report                 ? Result<>{}
                  : interrupt::received() ? fail(ECANCELED, "save interrupted")
                                          : file->commit();
  if (!report) {
    summary.error = report.error();  // the failed save restarted the device
  } else if (!kept) {
    summary.error = kept.error();
    if (auto r = session.resume_vm(); !r) summary.error->message += "; " + r.error().describe();
  } else {
    summary.source = *report;
    if (!args.has("stay-stopped")) {
      if (auto r = session.resume_vm(); !r) summary.error = r.error();
    }
  }
  return finish(summary, args);
}

int run_load(const ParsedArgs& args) {
  auto input = args.value("input");
  if (!input) return usage_error("load", Error{EINVAL, "load: -i FILE is required"});
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("load", setup.error());
  auto dev = open_or_exit("load", args.positionals[0], 0);
  if (auto* code = std::get_if<int>(&dev)) return *code;
  auto& opened = std::get<OpenedDevice>(dev);

  Summary summary("load");
  auto file = FdChannel::open_for_read(*input);
  if (!file) {
    summary.error = file.error();
    return finish(summary, args);
  }
  file->set_cancel_fd(interrupt::cancel_fd());
  Session session(setup->session);
  session.add_device(*opened.device, opened.device->name(), opened.config_restore);
  interrupt::OnInterrupt cancel([&session] { session.cancel(); });
  auto report = session.load(*file);
  setup->progress->finish();
  if (!report)
    summary.error = report.error();
  else
    summary.destination = *report;
  return finish(summary, args);
}

Summary migrate_and_verify(std::span<const DevicePair> pairs, TransferSetup& setup, bool verify,
                           std::string command) {
  Summary summary(std::move(command));
  SwitchoverGate gate;  // one per migration: it remembers the approvals
  SessionOptions source_options = setup.session;
  if (setup.switchover_ack) source_options.switchover_gate = &gate;
  SessionOptions quiet = source_options;
  quiet.on_progress = nullptr;  // one progress line: the source's
  Session source(source_options);
  Session destination(quiet);
  for (const auto& [src, dst, dst_restore] : pairs) {
    source.add_device(*src, src->name());
    destination.add_device(*dst, dst->name(), dst_restore);
  }
  // The source is cancelled; the destination then sees the stream end early and is reset.
  interrupt::OnInterrupt cancel([&source] { source.cancel(); });
  auto result = migrate_locally(source, destination);
  setup.progress->finish();
  if (!result) {
    summary.error = result.error();
    return summary;
  }
  summary.source = result->source;
  summary.destination = result->destination;
  if (!verify || interrupt::received()) return summary;
  summary.verified = true;
  for (const auto& [src, dst, dst_restore] : pairs) {
    auto cmp = compare_device_states(*src, *dst, setup.session.migration.config_size, dst_restore);
    if (!cmp) {
      summary.error = cmp.error();
      summary.verified.reset();
      return summary;
    }
    const bool same = cmp->equal && (cmp->config_equal || !setup.session.migration.config_state);
    if (!same) {
      summary.verified = false;
      summary.verified_bytes += cmp->first_difference;
      return summary;
    }
    summary.verified_bytes += cmp->bytes_compared;
  }
  return summary;
}

int run_migrate(const ParsedArgs& args) {
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("migrate", setup.error());
  if (auto p = precopy_setup(args, *setup); !p) return usage_error("migrate", p.error());
  if (args.positionals.size() % 2 != 0)
    return usage_error("migrate",
                       Error{EINVAL, "migrate: devices come in pairs: SRC DST [SRC DST...]"});
  // Opened in argument order, so that simulated devices get seeds 1, 2, 3... as given.
  std::vector<OpenedDevice> opened;
  for (std::size_t i = 0; i < args.positionals.size(); ++i) {
    auto dev = open_or_exit("migrate", args.positionals[i], i);
    if (auto* code = std::get_if<int>(&dev)) return *code;
    opened.push_back(std::move(std::get<OpenedDevice>(dev)));
  }
  std::vector<DevicePair> pairs;
  for (std::size_t i = 0; i < opened.size(); i += 2)
    pairs.push_back(
        {opened[i].device.get(), opened[i + 1].device.get(), opened[i + 1].config_restore});
  auto summary = migrate_and_verify(pairs, *setup, args.has("verify"), "migrate");
  return finish(summary, args);
}

}  // namespace vfio::cli
