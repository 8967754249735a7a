// probe: what a device offers for migration, read through the same calls the engine makes.
#include <fmt/format.h>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "core/feature.h"
#include "core/state_machine.h"

namespace vfio::cli {
namespace {

std::string flag_names(std::uint64_t flags) {
  std::string out;
  auto add = [&](std::uint64_t bit, std::string_view name) {
    if (!(flags & bit)) return;
    if (!out.empty()) out += "|";
    out += name;
  };
  add(uapi::kMigrationStopCopy, "STOP_COPY");
  add(uapi::kMigrationP2p, "P2P");
  add(uapi::kMigrationPreCopy, "PRE_COPY");
  return fmt::format("{:#x} ({})", flags, out.empty() ? "none" : out);
}

std::string supported_states(std::uint64_t flags) {
  std::string out;
  for (std::uint32_t s = 0; s < uapi::kStateCount; ++s) {
    if (!state_supported(static_cast<uapi::State>(s), flags)) continue;
    if (!out.empty()) out += " ";
    out += uapi::state_name(static_cast<uapi::State>(s));
  }
  return out;
}

}  // namespace

int run_probe(const ParsedArgs& args) {
  auto opened = open_arg(args.positionals[0], 0);
  if (!opened.device) {
    if (opened.usage) return usage_error("probe", opened.device.error());
    Summary failed("probe");
    failed.error = opened.device.error();
    return finish(failed, args);
  }
  Device& dev = *opened.device->device;
  Summary summary("probe");
  summary.facts.emplace_back("device", dev.name());
  auto flags = query_migration_flags(dev);
  if (!flags) {
    summary.error = flags.error();
    summary.error->message = dev.name() + ": no VFIO migration support (GET MIGRATION)";
    return finish(summary, args);
  }
  summary.facts.emplace_back("migration flags", flag_names(*flags));
  summary.facts.emplace_back("states", supported_states(*flags));
  if (auto state = query_device_state(dev)) {
    std::string text(uapi::state_name(*state));
    if (*state != uapi::State::kRunning)
      text += " (not RUNNING: save, load and migrate refuse it without --reset-first)";
    summary.facts.emplace_back("device state", text);
  } else {
    summary.facts.emplace_back("device state", "GET failed: " + state.error().describe());
  }
  if (auto size = query_stop_copy_size(dev)) {
    summary.facts.emplace_back("stop-copy size", fmt::format("{} ({})", *size, format_size(*size)));
  } else {
    summary.facts.emplace_back("stop-copy size", "unavailable: " + size.error().describe());
  }
  bool dma = probe_feature(dev, uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet);
  summary.facts.emplace_back("DMA dirty logging", dma ? "supported" : "not supported");
  bool migratable = *flags & uapi::kMigrationStopCopy;
  summary.facts.emplace_back("migratable", migratable ? "yes" : "no (STOP_COPY missing)");
  return finish(summary, args);
}

}  // namespace vfio::cli
