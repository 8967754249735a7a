// A test decorator over any Device: records every call and lets a test make chosen calls
// fail (without reaching the device) to drive the engine down its error paths.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "core/device.h"

namespace vfio::testing {

struct Call {
  enum class Op {
    kFeature,
    kReset,
    kRead,
    kWrite,
    kPrecopyInfo,
    kClose,
    kConfigRead,
    kConfigWrite
  };
  Call(Op o) : op(o) {}  // NOLINT: calls are built from an Op alone
  Op op;
  std::uint32_t feature_flags = 0;             // kFeature: the header's flags
  std::optional<uapi::State> requested_state;  // kFeature SET MIG_DEVICE_STATE
  std::uint64_t offset = 0;                    // kConfigRead, kConfigWrite
  std::size_t size = 0;                        // kConfigRead, kConfigWrite: bytes asked for
};

class ScriptedDevice final : public Device {
 public:
  explicit ScriptedDevice(Device& inner) : inner_(inner) {}

  // Consulted before each call: an errno makes the call fail with it.
  std::function<std::optional<int>(const Call&)> before;
  // Convenience: the next `times` SETs of `state` fail with `err`.
  void fail_set(uapi::State state, int err, int times = 1);
  // Every reset fails with `err`.
  void fail_resets(int err);
  // Config writes report every byte written and change nothing (a device ignoring them).
  bool swallow_config_writes = false;

  const std::vector<Call>& calls() const { return calls_; }
  std::size_t count(Call::Op op) const;

  Result<> feature(std::span<std::byte> arg) override;
  Result<> reset() override;
  Result<std::size_t> read(int data_fd, std::span<std::byte> buf) override;
  Result<std::size_t> write(int data_fd, std::span<const std::byte> buf) override;
  Result<> precopy_info(int data_fd, uapi::PrecopyInfo& info) override;
  Result<> close(int data_fd) override;
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf) override;
  const std::string& name() const override { return inner_.name(); }

 private:
  std::optional<Error> intercept(Call call);

  Device& inner_;
  std::vector<Call> calls_;
  std::vector<std::function<std::optional<int>(const Call&)>> rules_;
};

}  // namespace vfio::testing
