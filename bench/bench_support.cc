#include "bench/bench_support.h"

#include <fmt/format.h>

#include <fstream>
#include <string>

namespace vfio::bench {

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

std::uint64_t peak_rss() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  }
  return 0;
}

Result<devices::OpenedDevice> make_device(std::string_view transport, std::string_view profile,
                                          std::uint64_t state_size, std::uint64_t seed) {
  auto arg = devices::parse_device_arg(
      fmt::format("sim:{},size={},seed={},transport={}", profile, state_size, seed, transport));
  if (!arg) return std::unexpected(arg.error());
  return devices::open_device(*arg, 0);
}

}  // namespace vfio::bench
