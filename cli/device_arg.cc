#include "cli/device_arg.h"

#include <cerrno>

#include <fmt/format.h>

#include "cli/args.h"
#include "core/vfio_open.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"

namespace vfio::cli {
namespace {

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
    if (key == "size" && (number = parse_size(value))) {
      sim.state_size = *number;
    } else if (key == "seed" && (number = parse_uint(value)) && *number != 0) {
      sim.seed = *number;
    } else if (key == "transport" && value == "direct") {
      sim.transport = Transport::kDirect;
    } else {
      return fail(EINVAL, fmt::format("'{}': bad option '{}' (options: size=SIZE, seed=N>0, "
                                      "transport=direct)",
                                      text, option));
    }
  }
  return sim;
}

}  // namespace

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

Result<OpenedDevice> open_device(const DeviceArg& spec, std::size_t index) {
  if (!spec.sim) {
    auto dev = open_vfio_device(spec.text);
    if (!dev) return std::unexpected(dev.error());
    return OpenedDevice{std::move(*dev), nullptr};
  }
  const auto& s = *spec.sim;
  sim::SimOptions options;
  options.state_size = s.state_size;
  options.seed = s.seed ? s.seed : index + 1;
  auto model = std::make_shared<sim::SimDevice>(*sim::find_profile(s.profile), options);
  auto name = fmt::format("sim:{}#{}", s.profile, index);
  return OpenedDevice{std::make_unique<sim::DirectDevice>(model, name), model};
}

}  // namespace vfio::cli
