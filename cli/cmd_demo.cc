// demo: the main job. Two simulated devices, a full migration, byte-exact verification. When the
// profile offers PRE_COPY the guest keeps writing device state during the migration, and the
// pre-copy iterations (with switchover-ack) chase what it dirties.
#include <fmt/format.h>

#include "cli/command_support.h"
#include "cli/commands.h"
#include "simdev/profile.h"

namespace vfio::cli {

int run_demo(const ParsedArgs& args) {
  auto setup = transfer_setup(args);
  if (!setup) return usage_error("demo", setup.error());
  if (auto p = precopy_setup(args, *setup); !p) return usage_error("demo", p.error());
  std::string profile = args.value("profile").value_or("mlx5");
  std::string size = args.value("size").value_or("256M");
  std::string dirty = args.value("dirty").value_or("64M");
  if (auto s = parse_state_size(size, "--size"); !s) return usage_error("demo", s.error());
  const sim::Profile* p = sim::find_profile(profile);
  const bool precopy =
      p && (p->mig_flags & uapi::kMigrationPreCopy) && setup->session.migration.precopy;
  // Pre-copy is what the demo shows off: with switchover-ack, all initial data goes first.
  setup->switchover_ack = precopy;
  auto src = open_arg(
      fmt::format("sim:{},size={},seed=1,dirty={}", profile, size, precopy ? dirty : "0"), 0);
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
  if (precopy)
    fmt::print(
        "  pre-copy:    on, with switchover-ack; the guest writes {}/s of device state, "
        "downtime limit {} ms\n",
        dirty, setup->session.downtime_limit.count());
  else
    fmt::print("  pre-copy:    off ({})\n",
               setup->session.migration.precopy ? "the profile has no PRE_COPY" : "--precopy off");
  const DevicePair pair{source.device.get(), destination.device.get()};
  auto summary = migrate_and_verify(std::span(&pair, 1), *setup, true, "demo");
  if (!summary.error && source.model->image() != destination.model->image()) {
    summary.verified = false;
  }
  return finish(summary, args);
}

}  // namespace vfio::cli
