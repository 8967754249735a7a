// For the torture groups' tests (reopen, chunked-io, overflow): a simulated device that can be
// reopened, wrapped in a misbehaving decorator, and the checks' verdicts.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "conform/checker.h"
#include "core/kernel_device.h"
#include "core/uapi.h"
#include "devices/device_spec.h"
#include "tests/forwarding_device.h"

namespace vfio::conform::testing {

// A misbehaving device overrides what it breaks.
using Decorator = ::vfio::testing::ForwardingDevice;

// Wraps an open of the device (the first, or a reopen) in a decorator; null: none.
using Wrap = std::function<std::unique_ptr<Device>(std::unique_ptr<Device>, bool reopened)>;

// Runs conform on `spec` (a sim: spec) as `vfio-mig conform` does on a simulated device, with
// the reopen going to the same model; every open goes through `wrap`.
inline Report check_spec(const std::string& spec, const Wrap& wrap = nullptr,
                         bool with_reopen = true) {
  auto arg = devices::parse_device_arg(spec);
  EXPECT_TRUE(arg) << spec;
  if (!arg) return {};
  auto opened = devices::open_device(*arg, 0);
  EXPECT_TRUE(opened) << opened.error().describe();
  if (!opened) return {};
  std::unique_ptr<Device> dev = std::move(opened->device);
  Options options;
  options.strict_resume_validation = true;
  // As `vfio-mig conform`: a KernelDevice (here the simulator over FUSE), wrapped or not, refuses
  // them unsent.
  options.send_hanging_arcs = dynamic_cast<KernelDevice*>(dev.get()) == nullptr;
  if (wrap) dev = wrap(std::move(dev), false);
  if (with_reopen)
    options.reopen = [&]() -> Result<Device*> {
      dev.reset();
      auto again = opened->open_again();
      if (!again) return std::unexpected(again.error());
      dev = wrap ? wrap(std::move(*again), true) : std::move(*again);
      return dev.get();
    };
  auto report = check_device(*dev, options);
  EXPECT_TRUE(report) << report.error().describe();
  return report ? *report : Report{};
}

// The verdict of every check whose id starts with `prefix`.
inline std::map<std::string, Verdict> verdicts(const Report& r, std::string_view prefix) {
  std::map<std::string, Verdict> out;
  for (const auto& c : r.checks)
    if (c.id.starts_with(prefix)) out[c.id] = c.verdict;
  return out;
}

// The failing checks, with their details.
inline std::map<std::string, std::string> failures(const Report& r) {
  std::map<std::string, std::string> out;
  for (const auto& c : r.checks)
    if (c.verdict == Verdict::kFail) out[c.id] = c.detail;
  return out;
}

inline std::string describe(const std::map<std::string, std::string>& failed) {
  std::string out;
  for (const auto& [id, detail] : failed) out += id + ": " + detail + "\n";
  return out;
}

// The payload of `arg` if it is a SET MIG_DEVICE_STATE (as it stands: before the call, the
// request; after it, what the device wrote back).
inline std::optional<uapi::MigState> set_state_arg(std::span<const std::byte> arg) {
  uapi::FeatureHeader h;
  uapi::MigState mig;
  if (arg.size() < sizeof(h) + sizeof(mig)) return std::nullopt;
  std::memcpy(&h, arg.data(), sizeof(h));
  if (!(h.flags & uapi::kFeatureSet) || (h.flags & uapi::kFeatureProbe) ||
      (h.flags & uapi::kFeatureMask) != static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState))
    return std::nullopt;
  std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
  return mig;
}

// Runs conform on `spec` with every open wrapped in Broken(device, args...).
template <class Broken, class... Args>
Report check_broken(const std::string& spec, Args... args) {
  return check_spec(spec, [=](std::unique_ptr<Device> d, bool) -> std::unique_ptr<Device> {
    return std::make_unique<Broken>(std::move(d), args...);
  });
}

// The detail of `id`, which must be the run's only failed check ("" when it is not).
inline std::string only_failure(const Report& r, const std::string& id) {
  const auto failed = failures(r);
  EXPECT_EQ(failed.size(), 1u) << id << "\n" << describe(failed);
  auto it = failed.find(id);
  EXPECT_NE(it, failed.end()) << id << "\n" << describe(failed);
  return it == failed.end() ? "" : it->second;
}

// Runs conform on each of `specs` (those over FUSE only where FUSE works) and expects exactly
// the checks `ids` under `prefix`, each with verdict `want`.
inline void expect_verdicts(std::initializer_list<const char*> specs, std::string_view prefix,
                            std::span<const char* const> ids, Verdict want = Verdict::kPass) {
  for (std::string spec : specs) {
    if (spec.find("transport=fuse") != std::string::npos &&
        !devices::transport_available(devices::Transport::kFuse))
      continue;
    const auto got = verdicts(check_spec(spec), prefix);
    EXPECT_EQ(got.size(), ids.size()) << spec;
    for (std::string id : ids) {
      auto it = got.find(id);
      ASSERT_NE(it, got.end()) << spec << " " << id;
      EXPECT_EQ(it->second, want) << spec << " " << id;
    }
  }
}

// Remembers the state each data fd was opened in (SC, PC or RS): a decorator misbehaving on one
// kind of fd derives from it.
class OpenedIn : public Decorator {
 public:
  using Decorator::Decorator;
  Result<> feature(std::span<std::byte> arg) override {
    auto r = inner_->feature(arg);
    if (auto fd = ::vfio::testing::new_data_fd(r, arg)) {
      std::lock_guard lock(mu_);
      opened_in_[fd->first] = fd->second;
    }
    return r;
  }

 protected:
  std::optional<uapi::State> opened_in(int fd) {
    std::lock_guard lock(mu_);
    auto it = opened_in_.find(fd);
    if (it == opened_in_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mu_;  // the concurrency checks call from several threads
  std::map<int, uapi::State> opened_in_;
};

}  // namespace vfio::conform::testing
