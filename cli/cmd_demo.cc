// demo: the main job. Two simulated devices, a full migration, byte-exact verification.
#include <fmt/format.h>

#include "cli/command_support.h"
#include "cli/commands.h"

namespace vfio::cli {

int run_demo(const ParsedArgs& args) {
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("demo", setup.error());
  std::string profile = args.value("profile").value_or("mlx5");
  std::string size = args.value("size").value_or("256M");
  auto src = open_arg(fmt::format("sim:{},size={},seed=1", profile, size), 0);
  auto dst = open_arg(fmt::format("sim:{},size={},seed=2", profile, size), 1);
  if (!src.device) return usage_error("demo", src.device.error());
  if (!dst.device) return usage_error("demo", dst.device.error());
  auto& source = *src.device;
  auto& destination = *dst.device;

  auto body = source.model->image().size;
  fmt::print("vfio-mig demo: migrating a simulated '{}' device ({} of device state)\n", profile,
             format_size(body));
  fmt::print("  source:      {} (seed {:#x})\n", source.device->name(), source.model->image().seed);
  fmt::print("  destination: {} (seed {:#x}, different state before the migration)\n",
             destination.device->name(), destination.model->image().seed);
  fmt::print("  transport:   {}\n", source.mount
                                        ? "FUSE (the engine makes real ioctl/read/write syscalls)"
                                        : "direct (in-process calls; FUSE unavailable)");
  auto summary = migrate_and_verify(*source.device, *destination.device, *setup, true, "demo");
  if (!summary.error && source.model->image() != destination.model->image()) {
    summary.verified = false;
  }
  return finish(summary, args);
}

}  // namespace vfio::cli
