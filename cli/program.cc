#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/interrupt.h"
#include "core/untrusted_text.h"

namespace vfio::cli {
namespace {

const OptionSpec kJson{"json", "FILE", "also write the result as JSON to FILE"};
const OptionSpec kQuiet{"quiet", "", "no progress line", 'q'};
const OptionSpec kBuffer{"buffer-size", "SIZE",
                         "data buffer per read (default: min(1 MiB, stop-copy size))"};
const OptionSpec kNoConfig{"no-config", "", "do not carry the device's config space"};
const OptionSpec kPrecopy{"precopy", "auto|off",
                          "pre-copy with devices that offer PRE_COPY (default auto)"};
const OptionSpec kDowntime{"downtime-ms", "MS",
                           "pre-copy until the rest fits in this downtime (default 300)"};
const OptionSpec kMaxIterations{"max-iterations", "N",
                                "at most N pre-copy iterations (default 10000)"};
const OptionSpec kResetFirst{"reset-first", "",
                             "reset a device found in a state other than RUNNING instead of "
                             "refusing it (its device state is lost)"};

const Command kCommands[] = {
    {{"demo",
      "",
      0,
      0,
      "Migrates a simulated device to a second one and verifies it byte for byte.\n"
      "Both devices live in this process: the main job, needs no hardware.",
      {{"profile", "NAME", "simulated device profile (default mlx5)"},
       {"size", "SIZE", "device state size (default 256M)"},
       {"dirty", "SIZE", "the guest writes SIZE of device state per second (default 64M)"},
       kPrecopy,
       kDowntime,
       kMaxIterations,
       kBuffer,
       kJson,
       kQuiet}},
     run_demo},
    {{"probe", "DEV", 1, 1, "Shows what a device offers for migration.", {kJson}}, run_probe},
    {{"save",
      "DEV",
      1,
      1,
      "Saves a device's state to a file; the device runs again after.\n"
      "A stop-and-copy save unless --precopy auto; --stay-stopped leaves the device stopped.",
      {{"output", "FILE", "where to write the stream (required; - for stdout)", 'o'},
       {"stay-stopped", "", "leave the device stopped after the save"},
       {"precopy", "auto|off",
        "pre-copy iterations first with a device that offers PRE_COPY, as QEMU does (default "
        "off)"},
       kDowntime,
       kMaxIterations,
       kResetFirst,
       kBuffer,
       kNoConfig,
       kJson,
       kQuiet}},
     run_save},
    {{"load",
      "DEV",
      1,
      1,
      "Loads a saved stream into a device and starts it.\n"
      "--from-qemu loads the VFIO device state of a QEMU migration stream instead.",
      {{"input", "FILE", "the stream to load (- for stdin)", 'i'},
       {"from-qemu", "FILE", "a QEMU migration stream (QEVM): its VFIO device's data chunks"},
       {"section", "IDSTR", "with --from-qemu: the VFIO device to load (its section idstr)"},
       kResetFirst,
       kNoConfig,
       kJson,
       kQuiet}},
     run_load},
    {{"migrate",
      "SRC DST [SRC DST...]",
      2,
      128,
      "Migrates SRC to DST through an in-process Unix socket pair.\n"
      "Source and destination run on two threads. Several pairs migrate together as one VM's\n"
      "devices (every device needs P2P then).",
      {kPrecopy,
       kDowntime,
       kMaxIterations,
       {"switchover-ack", "",
        "the source stops only after the destination loaded all "
        "initial pre-copy data"},
       kResetFirst,
       kBuffer,
       kNoConfig,
       {"verify", "", "compare the two devices' states byte for byte afterwards"},
       kJson,
       kQuiet}},
     run_migrate},
    {{"conform",
      "DEV",
      1,
      1,
      "Checks a device against the VFIO migration contract.\n"
      "State arcs, data streams, feature header validation, DMA logging. Resets the device;\n"
      "never writes its config space.",
      {{"buffer-size", "SIZE", "bytes per data read or write (default 1 MiB)"},
       {"unsafe-arcs", "",
        "also send SC->PC and SC->PCP to a real device (hangs Linux 6.12's vfio core), and "
        "DMA logging REPORTs with page sizes of 2^61 and more (divide by zero in iova_bitmap "
        "before late 2025)"},
       {"call-timeout", "DURATION",
        "a device call not back after this is a failed kernel-hang check (default 10s)"},
       {"kernel-log", "PATH",
        "fail checks that log kernel trouble (default /dev/kmsg on kernel devices; none: off)"},
       {"kernel-log-ignore", "REGEX", "kernel log lines to accept (one regex; | for several)"},
       kJson,
       {"quiet", "", "print only failed checks and the summary line", 'q'}}},
     run_conform},
    {{"faults",
      "[SRC DST ...]",
      0,
      64,
      "Runs the fault matrix, or one migration under a fault plan.\n"
      "The fault matrix (--matrix) over fresh simulated devices of each profile, or over the\n"
      "devices given (SRC DST, a pair per device of the scenario's VM: kernel devices or sim:\n"
      "specs, one case at a time, each from RUNNING); or one migration SRC -> DST under a fault\n"
      "plan (--plan FILE, --fault 'RULE; RULE'). See docs/faults.md.",
      {{"matrix", "SCENARIO", "save, load, migrate, cancel, precopy, p2p-multi or all"},
       {"profile", "NAMES", "simulated profiles, comma-separated (default: all)"},
       {"case", "ID", "run only this case (as printed in reproduction commands)"},
       {"random", "N", "N seeded random multi-fault cases (alone, unless --systematic)"},
       {"systematic", "", "with --random: the systematic sweep too"},
       {"seed", "S", "seed of the random cases, or of a plan's prob= draws"},
       {"transport", "NAME", "direct (default), fuse or fuse-flaky"},
       {"size", "SIZE", "device state size (default 1M; mtty: its own)"},
       kBuffer,
       {"jobs", "N", "cases in parallel (default: hardware threads)"},
       {"timeout", "DURATION",
        "watchdog of each case, or of a --plan/--fault run (default 10s): cancelled after it"},
       {"batch", "N", "cases per child process (default 32; 0: no child processes)"},
       {"kernel-log", "PATH",
        "fail cases that log kernel trouble (default /dev/kmsg on kernel devices)"},
       {"kernel-log-ignore", "REGEX", "kernel log lines to accept (one regex; | for several)"},
       {"check", "CMD",
        "with devices: a shell command after each case, exit 0 = device state intact"},
       {"shard", "K/N", "run the Kth of N parts (also GTEST_SHARD_INDEX/GTEST_TOTAL_SHARDS)"},
       {"junit", "FILE", "write a JUnit report"},
       {"plan", "FILE", "a fault plan to migrate SRC to DST under"},
       {"fault", "RULES", "plan rules inline, ';'-separated"},
       {"record", "", "print the operation trace of a clean run"},
       kResetFirst,
       kPrecopy,
       {"list", "", "list the matrix's case ids"},
       {"verbose", "", "every table row and state-lost case"},
       kNoConfig,
       kJson,
       kQuiet}},
     run_faults},
    {{"fuzz-resume",
      "DEV",
      1,
      1,
      "Fuzzes a device's resume path with damaged copies of its own saved state.\n"
      "Each input goes into RESUMING; RESUMING -> STOP's outcome is classified (accepted,\n"
      "refused, write refused, hang) and the device brought back to RUNNING; every N inputs a\n"
      "save and load of its own state proves it healthy. Hangs, kernel log trouble and a device\n"
      "that does not recover are findings (exit 1); damaged inputs it accepted are counted\n"
      "apart. Each gets a reproducer stream for 'vfio-mig load'. See docs/fuzz-resume.md.",
      {{"seconds", "N", "fuzz for N seconds (default 60 unless --runs)"},
       {"runs", "N", "stop after N inputs"},
       {"seed", "S", "the inputs' seed: the same seed gives the same inputs (default: random)"},
       {"corpus", "DIR", "fuzz these saved streams (vfio-mig save files) instead of a fresh save"},
       {"out", "DIR", "where reproducers go (default fuzz-resume-out)"},
       {"health-every", "N", "a save/load round trip of the device after every N inputs (100)"},
       {"call-timeout", "DURATION",
        "a device call not back after this is a hang; the device is abandoned (default 10s)"},
       {"kernel-log", "PATH",
        "kernel log to watch (default /dev/kmsg on kernel devices; none: off)"},
       {"kernel-log-ignore", "REGEX", "kernel log lines to accept (one regex; | for several)"},
       {"buffer-size", "SIZE", "bytes per write into the device (default 1 MiB)"},
       kResetFirst,
       kNoConfig,
       {"json", "FILE", "also write the result as JSON to FILE (- for stdout)"},
       kQuiet}},
     run_fuzz_resume},
    {{"inspect",
      "FILE",
      1,
      1,
      "Shows the structure of a migration stream file, vfio-mig's or QEMU's.\n"
      "vfio-mig streams: the header, every section (type, device, offset, length, CRC) and the\n"
      "device payload's tags. QEMU streams (QEVM, version 3): every section (start, part, end,\n"
      "full; id, idstr, instance, version, footer), VFIO device sections tag by tag, RAM\n"
      "sections summarised, and each VFIO device's data and config. Reads only. A damaged file\n"
      "is shown up to the damage, then named (exit 1). See docs/qemu.md.",
      {{"json", "", "print the structure as JSON instead of text"}}},
     run_inspect},
};

constexpr std::string_view kDeviceHelp =
    "devices:\n"
    "  sim:PROFILE[,size=SIZE][,seed=N][,dirty=SIZE[/read]][,transport=fuse|direct]\n"
    "             [,keep-state=0|1][,hang-sc-pc=0|1]\n"
    "                                     a simulated device (profiles: mtty, mlx5, stopcopy,\n"
    "                                     p2p, plain); dirty: guest writes per second, or\n"
    "                                     before every pre-copy read; keep-state: keep the\n"
    "                                     migration state across close and open (mtty: 1,\n"
    "                                     others: 0); hang-sc-pc=1: SET STOP_COPY->PRE_COPY(_P2P)\n"
    "                                     blocks, as on Linux 6.12\n"
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
    fmt::print("  {:<11} {}\n", c.spec.name, first_line);
  }
  fmt::print("\n{}\nRun 'vfio-mig COMMAND --help' for a command's options.\n", kDeviceHelp);
}

// Report files (--json, --junit) are written after the operation: a path that cannot take one
// must fail before the operation changes a device, not after.
Result<> check_report_paths(const CommandSpec& spec, const ParsedArgs& args) {
  for (std::string_view option : {"json", "junit"}) {
    auto path = args.value(option);
    if (!path) continue;
    const auto declared = std::find_if(spec.options.begin(), spec.options.end(),
                                       [&](const OptionSpec& o) { return o.name == option; });
    if (declared != spec.options.end() && declared->value_name.empty()) continue;  // a flag
    auto bad = [&](std::string_view why) {
      return fail(EINVAL, fmt::format("--{} {}: {}", option, *path, why));
    };
    if (path->empty()) return bad("an empty path");
    struct stat st {};
    if (::stat(path->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return bad("is a directory");
    const auto parent = std::filesystem::path(*path).parent_path();
    const std::string dir = parent.empty() ? std::string(".") : parent.string();
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return bad(fmt::format("no directory {}", dir));
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      return bad(fmt::format("directory {} is not writable", dir));
  }
  return {};
}

}  // namespace

std::span<const Command> all_commands() {
  return kCommands;
}

void print_error(std::string_view command, std::string_view message) {
  fmt::print(stderr, "vfio-mig {}: {}\n", command, printable(message));
}

int usage_error(std::string_view command, const Error& e) {
  print_error(command, e.message);
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
      // The device forms only where an argument names a device (not inspect's FILE, not demo).
      const bool names_devices = c.spec.positionals.find("DEV") != std::string_view::npos ||
                                 c.spec.positionals.find("SRC") != std::string_view::npos;
      fmt::print("{}\n{}", command_help("vfio-mig", c.spec), names_devices ? kDeviceHelp : "");
      return kExitOk;
    }
    if (auto paths = check_report_paths(c.spec, *parsed); !paths)
      return usage_error(c.spec.name, paths.error());
    const int code = c.run(*parsed);
    // A command that has no cancel path of its own ran to its end; it still says so.
    return interrupt::received() ? interrupt::report(c.spec.name, "") : code;
  }
  fmt::print(stderr, "vfio-mig: unknown command '{}' (see 'vfio-mig --help')\n",
             printable_prefix(args[0], kListedIdBytes));
  return kExitUsage;
}

}  // namespace vfio::cli
