#include <fmt/format.h>

#include <cstdio>

#include "cli/commands.h"

namespace vfio::cli {
namespace {

const OptionSpec kJson{"json", "FILE", "also write the result as JSON to FILE"};
const OptionSpec kQuiet{"quiet", "", "no progress line", 'q'};
const OptionSpec kBuffer{"buffer-size", "SIZE",
                         "data buffer per read (default: min(1 MiB, stop-copy size))"};
const OptionSpec kNoConfig{"no-config", "", "do not carry the device's config space"};

const Command kCommands[] = {
    {{"demo",
      "",
      0,
      0,
      "Migrates a simulated device to a second one in this process and verifies the\n"
      "destination byte for byte. The main job; needs no hardware.",
      {{"profile", "NAME", "simulated device profile (default mlx5)"},
       {"size", "SIZE", "device state size (default 256M)"},
       kBuffer,
       kJson,
       kQuiet}},
     run_demo},
    {{"probe", "DEV", 1, 1, "Shows what a device offers for migration.", {kJson}}, run_probe},
    {{"save",
      "DEV",
      1,
      1,
      "Saves a device's state to a file (a stop-and-copy save; the device runs again after).",
      {{"output", "FILE", "where to write the stream (required)", 'o'},
       {"stay-stopped", "", "leave the device stopped after the save"},
       kBuffer,
       kNoConfig,
       kJson,
       kQuiet}},
     run_save},
    {{"load",
      "DEV",
      1,
      1,
      "Loads a saved stream into a device and starts it.",
      {{"input", "FILE", "the stream to load (required)", 'i'}, kNoConfig, kJson, kQuiet}},
     run_load},
    {{"migrate",
      "SRC DST",
      2,
      2,
      "Migrates SRC to DST through an in-process pipe (source and destination on two threads).",
      {kBuffer,
       kNoConfig,
       {"verify", "", "compare the two devices' states byte for byte afterwards"},
       kJson,
       kQuiet}},
     run_migrate},
};

constexpr std::string_view kDeviceHelp =
    "devices:\n"
    "  sim:PROFILE[,size=SIZE][,seed=N]   a simulated device (profiles: mtty, mlx5, stopcopy,\n"
    "                                     p2p, plain)\n"
    "  /dev/vfio/devices/vfioN            a VFIO device through its iommufd cdev\n"
    "  0000:00:03.0 | MDEV-UUID           a PCI device or mdev through its IOMMU group\n"
    "  group:N:NAME                       device NAME in IOMMU group N\n";

void print_overview() {
  fmt::print(
      "usage: vfio-mig COMMAND [options] [args]\n\n"
      "Test, fault-injection and benchmark harness for VFIO device live migration.\n\n"
      "commands:\n");
  for (const auto& c : kCommands) {
    auto first_line = c.spec.summary.substr(0, c.spec.summary.find('\n'));
    fmt::print("  {:<9} {}\n", c.spec.name, first_line);
  }
  fmt::print("\n{}\nRun 'vfio-mig COMMAND --help' for a command's options.\n", kDeviceHelp);
}

}  // namespace

std::span<const Command> all_commands() {
  return kCommands;
}

int usage_error(std::string_view command, const Error& e) {
  fmt::print(stderr, "vfio-mig {}: {}\n", command, e.message);
  return kExitUsage;
}

int run_program(std::span<const std::string> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_overview();
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (args[0] == "--version") {
    fmt::print("vfio-mig {}\n", VFIO_MIG_VERSION);
    return kExitOk;
  }
  for (const auto& c : kCommands) {
    if (c.spec.name != args[0]) continue;
    auto parsed = parse_args(c.spec, args.subspan(1));
    if (!parsed) return usage_error(c.spec.name, parsed.error());
    if (parsed->has("help")) {
      fmt::print("{}\n{}", command_help("vfio-mig", c.spec), kDeviceHelp);
      return kExitOk;
    }
    return c.run(*parsed);
  }
  fmt::print(stderr, "vfio-mig: unknown command '{}' (see 'vfio-mig --help')\n", args[0]);
  return kExitUsage;
}

}  // namespace vfio::cli
