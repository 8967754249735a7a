// Test support for the contract checker: a simulated device called in process, the checker run
// as `vfio-mig conform` runs it on one, and a decorator that forwards every call to a device (the
// base of the misbehaving devices the tests build).
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "conform/checker.h"
#include "core/device.h"
#include "devices/device_spec.h"
#include "tests/forwarding_device.h"

namespace vfio::conform {

inline std::unique_ptr<Device> open_sim(const std::string& spec) {
  auto arg = devices::parse_device_arg(spec + ",transport=direct");
  if (!arg) return nullptr;
  auto opened = devices::open_device(*arg, 0);
  if (!opened) return nullptr;
  return std::move(opened->device);
}

inline std::string failures(const Report& r) {
  std::string out;
  for (const auto& c : r.checks)
    if (c.verdict == Verdict::kFail) out += c.id + ": " + c.detail + "\n";
  return out;
}

// The options `vfio-mig conform` uses for a simulated device.
inline Report run_checks(Device& dev, bool strict = true, Options options = {}) {
  options.strict_resume_validation = strict;
  options.send_hanging_arcs = true;
  auto report = check_device(dev, options);
  EXPECT_TRUE(report) << report.error().describe();
  return report ? *report : Report{};
}

// The ids of the failing checks: what a misbehaving device must narrow to exactly its check.
inline std::set<std::string> failed_ids(const Report& r) {
  std::set<std::string> out;
  for (const auto& c : r.checks)
    if (c.verdict == Verdict::kFail) out.insert(c.id);
  return out;
}

inline Verdict verdict_of(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  EXPECT_NE(c, nullptr) << id;
  return c ? c->verdict : Verdict::kSkip;
}

// Forwards everything to a real (simulated) device and remembers which data fds are open, so
// a test can tell whether the checker closed every fd it was given.
class Forwarding : public testing::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;

  Result<> feature(std::span<std::byte> arg) override {
    auto r = inner_->feature(arg);
    if (auto fd = testing::new_data_fd(r, arg)) {
      open_.insert(fd->first);
      opened_in_[fd->first] = fd->second;
    }
    return r;
  }
  Result<> close(int fd) override {
    open_.erase(fd);
    return inner_->close(fd);
  }
  Result<std::size_t> config_write(std::uint64_t off, std::span<const std::byte> buf) override {
    ++config_writes;
    return inner_->config_write(off, buf);
  }

  const std::set<int>& open_fds() const { return open_; }
  // The state the SET that returned `fd` asked for.
  std::optional<uapi::State> opened_in(int fd) const {
    auto it = opened_in_.find(fd);
    return it == opened_in_.end() ? std::nullopt : std::optional(it->second);
  }
  int config_writes = 0;

 protected:
  static constexpr std::size_t kSetSize = sizeof(uapi::FeatureHeader) + sizeof(uapi::MigState);
  static std::uint32_t index_of(std::span<const std::byte> arg) {
    uapi::FeatureHeader h;
    std::memcpy(&h, arg.data(), sizeof(h));
    return h.flags & uapi::kFeatureMask;
  }
  std::set<int> open_;
  std::map<int, uapi::State> opened_in_;
};

}  // namespace vfio::conform
