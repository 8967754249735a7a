// A Device decorator for tests: passes every call to the device it wraps; a test overrides the
// calls it bends.
#pragma once

#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "core/device.h"

namespace vfio::testing {

// The data fd that a MIG_DEVICE_STATE SET in `arg` returned, if it succeeded and returned one,
// and the state it asked for.
inline std::optional<std::pair<int, uapi::State>> new_data_fd(const Result<>& r,
                                                              std::span<const std::byte> arg) {
  uapi::FeatureHeader h;
  uapi::MigState mig;
  if (!r || arg.size() < sizeof(h) + sizeof(mig)) return std::nullopt;
  std::memcpy(&h, arg.data(), sizeof(h));
  std::memcpy(&mig, arg.data() + sizeof(h), sizeof(mig));
  if (!(h.flags & uapi::kFeatureSet) || (h.flags & uapi::kFeatureProbe) ||
      (h.flags & uapi::kFeatureMask) !=
          static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) ||
      mig.data_fd < 0)
    return std::nullopt;
  return std::pair{mig.data_fd, static_cast<uapi::State>(mig.device_state)};
}

class ForwardingDevice : public Device {
 public:
  explicit ForwardingDevice(std::unique_ptr<Device> inner) : inner_(std::move(inner)) {}
  Result<> feature(std::span<std::byte> arg) override { return inner_->feature(arg); }
  Result<> reset() override { return inner_->reset(); }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    return inner_->read(fd, buf);
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    return inner_->write(fd, buf);
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    return inner_->precopy_info(fd, info);
  }
  Result<> close(int fd) override { return inner_->close(fd); }
  std::optional<Result<std::size_t>> read_at(int fd, std::span<std::byte> buf,
                                             std::int64_t offset) override {
    return inner_->read_at(fd, buf, offset);
  }
  std::optional<Result<std::size_t>> write_at(int fd, std::span<const std::byte> buf,
                                              std::int64_t offset) override {
    return inner_->write_at(fd, buf, offset);
  }
  Result<std::size_t> config_read(std::uint64_t off, std::span<std::byte> buf) override {
    return inner_->config_read(off, buf);
  }
  Result<std::size_t> config_write(std::uint64_t off, std::span<const std::byte> buf) override {
    return inner_->config_write(off, buf);
  }
  const std::string& name() const override { return inner_->name(); }

 protected:
  std::unique_ptr<Device> inner_;
};

}  // namespace vfio::testing
