// save, load and migrate.
#include <fmt/format.h>

#include <variant>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/verify.h"
#include "core/local_migration.h"

namespace vfio::cli {
namespace {

// Opens the device or returns the exit code to leave with.
std::variant<OpenedDevice, int> open_or_exit(std::string_view command, std::string_view text,
                                             std::size_t index) {
  auto opened = open_arg(text, index);
  if (opened.device) return std::move(*opened.device);
  if (opened.usage) return usage_error(command, opened.device.error());
  fmt::print(stderr, "vfio-mig {}: {}\n", command, opened.device.error().describe());
  return kExitFailed;
}

}  // namespace

int run_save(const ParsedArgs& args) {
  auto output = args.value("output");
  if (!output) return usage_error("save", Error{EINVAL, "save: -o FILE is required"});
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("save", setup.error());
  auto dev = open_or_exit("save", args.positionals[0], 0);
  if (auto* code = std::get_if<int>(&dev)) return *code;
  auto& opened = std::get<OpenedDevice>(dev);

  Summary summary("save");
  auto file = FdChannel::open_for_write(*output);
  if (!file) {
    summary.error = file.error();
    return finish(summary, args);
  }
  Session session(setup->session);
  session.add_device(*opened.device, opened.device->name());
  auto report = session.save(*file);
  setup->progress->finish();
  if (!report) {
    summary.error = report.error();
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
  Session session(setup->session);
  session.add_device(*opened.device, opened.device->name());
  auto report = session.load(*file);
  setup->progress->finish();
  if (!report)
    summary.error = report.error();
  else
    summary.destination = *report;
  return finish(summary, args);
}

Summary migrate_and_verify(Device& src, Device& dst, TransferSetup& setup, bool verify,
                           std::string command) {
  Summary summary(std::move(command));
  Session source(setup.session);
  source.add_device(src, src.name());
  SessionOptions quiet = setup.session;
  quiet.on_progress = nullptr;  // one progress line: the source's
  Session destination(quiet);
  destination.add_device(dst, dst.name());
  auto result = migrate_locally(source, destination);
  setup.progress->finish();
  if (!result) {
    summary.error = result.error();
    return summary;
  }
  summary.source = result->source;
  summary.destination = result->destination;
  if (verify) {
    auto cmp = compare_device_states(src, dst, setup.session.migration.config_size);
    if (!cmp) {
      summary.error = cmp.error();
    } else {
      summary.verified = cmp->equal && (cmp->config_equal || !setup.session.migration.config_state);
      summary.verified_bytes = cmp->equal ? cmp->bytes_compared : cmp->first_difference;
    }
  }
  return summary;
}

int run_migrate(const ParsedArgs& args) {
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("migrate", setup.error());
  auto src = open_or_exit("migrate", args.positionals[0], 0);
  if (auto* code = std::get_if<int>(&src)) return *code;
  auto dst = open_or_exit("migrate", args.positionals[1], 1);
  if (auto* code = std::get_if<int>(&dst)) return *code;
  auto summary =
      migrate_and_verify(*std::get<OpenedDevice>(src).device, *std::get<OpenedDevice>(dst).device,
                         *setup, args.has("verify"), "migrate");
  return finish(summary, args);
}

}  // namespace vfio::cli
