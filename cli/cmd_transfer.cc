// save, load and migrate.
#include <fmt/format.h>

#include <unistd.h>

#include <memory>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/mapped_file.h"
#include "cli/verify.h"
#include "core/atomic_file.h"
#include "core/local_migration.h"
#include "core/untrusted_text.h"
#include "qemu/qemu_import.h"
#include "qemu/qemu_stream.h"

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

// The VFIO device `section` (empty: the only one) of the QEMU stream in `path`, as a vfio-mig
// stream (qemu/qemu_import.h), or the exit code to leave with: 2 when the arguments must name
// another device, 1 when the file cannot serve. What was found goes into `summary`'s facts.
std::variant<qemu::Import, int> import_from_qemu(const std::string& path, std::string_view section,
                                                 bool with_config, Summary& summary) {
  auto file = MappedFile::open(path);
  if (!file) {
    print_error("load", file.error().describe());
    return kExitFailed;
  }
  const auto bytes = file->bytes();
  auto stream = qemu::read_stream(bytes);
  if (!stream) {
    print_error("load", fmt::format("{}: {}", path, stream.error().message));
    return kExitFailed;
  }
  const auto devices = qemu::vfio_devices(*stream);
  auto state = qemu::vfio_state(*stream, section);
  if (!state) {
    print_error("load", fmt::format("{}: {}", path, state.error().message));
    // No VFIO device at all: the file cannot serve; otherwise --section must name another.
    return devices.empty() ? kExitFailed : kExitUsage;
  }
  auto import = qemu::import_vfio_state(bytes, *state, with_config);
  if (!import) {
    print_error("load", fmt::format("{}: {}", path, import.error().message));
    return kExitFailed;
  }
  std::uint64_t precopy = 0;
  for (const auto& c : state->data) precopy += c.phase == qemu::Phase::kIterate ? c.bytes.size : 0;
  summary.facts.emplace_back("QEMU device", printable_prefix(state->idstr, kListedIdBytes));
  summary.facts.emplace_back(
      "QEMU data",
      fmt::format("{} chunks, {} B ({} B pre-copy, {} B stop-copy)", state->data.size(),
                  state->data_bytes(), precopy, state->data_bytes() - precopy));
  return std::move(*import);
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
  auto qemu_file = args.value("from-qemu");
  if (input.has_value() == qemu_file.has_value())
    return usage_error("load", Error{EINVAL, "load: give -i FILE or --from-qemu FILE"});
  if (args.has("section") && !qemu_file)
    return usage_error("load", Error{EINVAL, "load: --section goes with --from-qemu"});
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("load", setup.error());
  // A QEMU stream is read and translated whole before the device is opened: a bad one touches
  // nothing.
  Summary summary("load");
  std::unique_ptr<Channel> in;
  std::optional<qemu::Import> import;
  if (qemu_file) {
    auto imported = import_from_qemu(*qemu_file, args.value("section").value_or(""),
                                     setup->session.migration.config_state, summary);
    if (auto* code = std::get_if<int>(&imported)) return *code;
    import = std::move(std::get<qemu::Import>(imported));
    for (const auto& note : import->notes) fmt::print(stderr, "load: {}\n", note);
    setup->session.migration.config_state = import->config;
    in = std::make_unique<MemoryChannel>(std::exchange(import->stream, {}));
  }
  auto dev = open_or_exit("load", args.positionals[0], 0);
  if (auto* code = std::get_if<int>(&dev)) return *code;
  auto& opened = std::get<OpenedDevice>(dev);

  if (!in) {
    auto file = FdChannel::open_for_read(*input);
    if (!file) {
      summary.error = file.error();
      return finish(summary, args);
    }
    file->set_cancel_fd(interrupt::cancel_fd());
    in = std::make_unique<FdChannel>(std::move(*file));
  }
  Session session(setup->session);
  session.add_device(*opened.device, opened.device->name(), opened.config_restore);
  interrupt::OnInterrupt cancel([&session] { session.cancel(); });
  auto report = session.load(*in);
  setup->progress->finish();
  if (!report) {
    summary.error = report.error();
    if (import) summary.error->message += "; " + qemu::translation_offsets(*import);
  } else {
    summary.destination = *report;
  }
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
