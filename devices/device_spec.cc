#include "devices/device_spec.h"

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <mutex>

#include <fmt/format.h>

#include "core/units.h"
#include "core/vfio_open.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"

namespace vfio::devices {
namespace {

// How long a reopen of a FUSE-served device waits for the previous open's release.
constexpr std::chrono::milliseconds kReleaseWait{5000};

std::string profile_names() {
  std::string names;
  for (const auto& p : sim::all_profiles()) {
    if (!names.empty()) names += ", ";
    names += p.name;
  }
  return names;
}

Result<SimSpec> parse_sim(std::string_view body, std::string_view text) {
  SimSpec sim;
  auto comma = body.find(',');
  sim.profile = std::string(body.substr(0, comma));
  if (!sim::find_profile(sim.profile)) {
    return fail(EINVAL, fmt::format("'{}': unknown profile '{}' (profiles: {})", text, sim.profile,
                                    profile_names()));
  }
  while (comma != std::string_view::npos) {
    body = body.substr(comma + 1);
    comma = body.find(',');
    std::string_view option = body.substr(0, comma);
    auto eq = option.find('=');
    std::string_view key = option.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : option.substr(eq + 1);
    Result<std::uint64_t> number = fail(EINVAL, "");
    if (key == "size") {
      number = parse_state_size(value, "size");
      if (!number) return fail(EINVAL, fmt::format("'{}': {}", text, number.error().message));
      sim.state_size = *number;
    } else if (key == "seed" && (number = parse_uint(value)) && *number != 0) {
      sim.seed = *number;
    } else if (key == "dirty" && value.ends_with("/read") &&
               (number = parse_size(value.substr(0, value.size() - 5)))) {
      sim.dirty_per_read = *number;
    } else if (key == "dirty" && (number = parse_size(value))) {
      sim.dirty_rate = *number;
    } else if (key == "keep-state" && (value == "0" || value == "1")) {
      sim.keep_state = value == "1";
    } else if (key == "hang-sc-pc" && (value == "0" || value == "1")) {
      sim.hang_sc_pc = value == "1";
    } else if (key == "transport" && value == "direct") {
      sim.transport = Transport::kDirect;
    } else if (key == "transport" && value == "fuse") {
      sim.transport = Transport::kFuse;
    } else if (key == "transport" && value == "fuse-flaky") {
      sim.transport = Transport::kFuseFlaky;
    } else {
      return fail(EINVAL,
                  fmt::format("'{}': bad option '{}' (options: size=SIZE, seed=N>0, "
                              "dirty=SIZE (per second) or SIZE/read, "
                              "transport=fuse|fuse-flaky|direct, keep-state=0|1, hang-sc-pc=0|1)",
                              text, option));
    }
  }
  return sim;
}

Result<std::shared_ptr<sim::SimMount>> new_mount(const sim::SimMountOptions& options = {}) {
  if (auto ok = sim::SimMount::fuse_available(); !ok) return std::unexpected(ok.error());
  auto created = sim::SimMount::create(options);
  if (!created) return std::unexpected(created.error());
  return std::shared_ptr<sim::SimMount>(std::move(*created));
}

// The process's mount, created on first use and unmounted when the last device using it (or
// the last hold_mount()) goes. Also hands out file names that are unique on it. After a fork
// the parent's mount is forgotten, not destroyed: it is the parent's to unmount.
Result<std::shared_ptr<sim::SimMount>> shared_mount(std::uint64_t& serial) {
  static std::mutex mu;
  static std::weak_ptr<sim::SimMount> current;
  static pid_t owner = 0;
  static std::uint64_t next_serial = 0;
  std::lock_guard lock(mu);
  serial = next_serial++;
  if (owner != ::getpid()) {
    new (&current) std::weak_ptr<sim::SimMount>();  // the parent's: never released here
    owner = ::getpid();
  }
  if (auto mount = current.lock()) return mount;
  auto mount = new_mount();
  if (mount) current = *mount;
  return mount;
}

// A mount of this device's own, its server threads on `cpu`.
Result<std::shared_ptr<sim::SimMount>> placed_mount(int cpu) {
  sim::SimMountOptions options;
  options.cpu = cpu;
  return new_mount(options);
}

Result<OpenedDevice> open_over_fuse(std::shared_ptr<sim::SimDevice> model, const std::string& name,
                                    bool flaky, int server_cpu) {
  std::uint64_t serial = 0;
  auto mount = server_cpu >= 0 ? placed_mount(server_cpu) : shared_mount(serial);
  if (!mount) return std::unexpected(mount.error());
  auto path = (*mount)->add_device(model, fmt::format("{}.{}", model->profile().name, serial));
  if (!path) return std::unexpected(path.error());
  auto open = [path = *path, name = name + " (fuse)", model]() -> Result<std::unique_ptr<Device>> {
    // A reopen: the last open's release may still be on its way to the server.
    if (!model->wait_unused(kReleaseWait))
      return fail(EBUSY, fmt::format("{}: the previous open was not released within {} ms", name,
                                     kReleaseWait.count()));
    auto dev = sim::SimMount::open_device(path, name, model);
    if (!dev) return std::unexpected(dev.error());
    return std::unique_ptr<Device>(std::move(*dev));
  };
  auto dev = open();
  if (!dev) return std::unexpected(dev.error());
  // Prime steps, so that the faults fall on every kind of request in turn.
  if (flaky) (*mount)->set_fault(*model, sim::flaky_server(7, 11, 5));
  return OpenedDevice{std::move(*mount), std::move(*dev), std::move(model), ConfigRestore::kExact,
                      std::move(open)};
}

}  // namespace

Result<std::uint64_t> parse_state_size(std::string_view text, std::string_view what) {
  return parse_size(text, sim::kMaxDeclaredSize, what);
}

Result<DeviceArg> parse_device_arg(std::string_view text) {
  DeviceArg spec{std::string(text), std::nullopt};
  if (text.starts_with("sim:")) {
    auto sim = parse_sim(text.substr(4), text);
    if (!sim) return std::unexpected(sim.error());
    spec.sim = *sim;
    return spec;
  }
  if (auto kernel = vfio::parse_device_spec(text); !kernel) return std::unexpected(kernel.error());
  return spec;
}

std::string driver_name(const DeviceArg& spec) {
  if (spec.sim) return fmt::format("vfio-mig simulator, profile {}", spec.sim->profile);
  auto kernel = vfio::parse_device_spec(spec.text);
  if (!kernel) return "unknown";
  auto driver = find_driver(*kernel);
  return driver ? *driver : "unknown";
}

Result<OpenedDevice> open_device(const DeviceArg& spec, std::size_t index) {
  if (!spec.sim) {
    auto open = [text = spec.text]() -> Result<std::unique_ptr<Device>> {
      auto dev = open_vfio_device(text);
      if (!dev) return std::unexpected(dev.error());
      return std::unique_ptr<Device>(std::move(*dev));
    };
    auto dev = open();
    if (!dev) return std::unexpected(dev.error());
    return OpenedDevice{nullptr, std::move(*dev), nullptr, ConfigRestore::kRegisters,
                        std::move(open)};
  }
  const auto& s = *spec.sim;
  sim::SimOptions options;
  options.state_size = s.state_size;
  options.seed = s.seed ? s.seed : index + 1;
  options.dirty_rate = s.dirty_rate;
  options.dirty_per_read = s.dirty_per_read;
  options.keep_state = s.keep_state;
  options.hang_stop_copy_to_precopy = s.hang_sc_pc;
  auto opened = open_sim(s.transport, *sim::find_profile(s.profile), options,
                         fmt::format("sim:{}#{}", s.profile, index), s.server_cpu);
  if (!opened && s.transport != Transport::kDirect) {
    Error e = opened.error();
    e.message =
        fmt::format("'{}': transport={}: {}", spec.text, transport_name(s.transport), e.message);
    return std::unexpected(std::move(e));
  }
  return opened;
}

Result<OpenedDevice> open_sim(Transport t, const sim::Profile& profile,
                              const sim::SimOptions& options, const std::string& name,
                              int server_cpu) {
  auto model = std::make_shared<sim::SimDevice>(profile, options);
  if (t != Transport::kDirect) {
    auto fuse = open_over_fuse(model, name, t == Transport::kFuseFlaky, server_cpu);
    if (fuse || t != Transport::kAuto) return fuse;
    // Said once per process: every later sim: device falls back the same way.
    static std::once_flag noticed;
    std::call_once(noticed, [&] {
      fmt::print(stderr, "FUSE unavailable ({}); using the direct transport\n",
                 fuse.error().describe());
    });
  }
  auto open = [model, name]() -> Result<std::unique_ptr<Device>> {
    return std::make_unique<sim::DirectDevice>(model, name);
  };
  auto dev = open();
  return OpenedDevice{nullptr, std::move(*dev), model, ConfigRestore::kExact, std::move(open)};
}

Result<Device*> OpenedDevice::reopen() {
  device.reset();
  if (!open_again) return fail(ENOTSUP, "this device cannot be opened again");
  auto dev = open_again();
  if (!dev) return std::unexpected(dev.error());
  device = std::move(*dev);
  return device.get();
}

Result<std::shared_ptr<sim::SimMount>> hold_mount() {
  std::uint64_t serial;
  return shared_mount(serial);
}

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::kAuto:
      return "auto";
    case Transport::kFuse:
      return "fuse";
    case Transport::kDirect:
      return "direct";
    case Transport::kFuseFlaky:
      return "fuse-flaky";
  }
  return "?";
}

Result<> transport_available(Transport t) {
  if (t == Transport::kDirect || t == Transport::kAuto) return {};
  return sim::SimMount::fuse_available();
}

}  // namespace vfio::devices
