#include "tests/core/scripted_device.h"

#include <cstring>

#include <fmt/format.h>

namespace vfio::testing {

void ScriptedDevice::fail_set(uapi::State state, int err, int times) {
  auto left = std::make_shared<int>(times);
  rules_.push_back([=](const Call& c) -> std::optional<int> {
    if (c.requested_state == state && *left > 0) {
      --*left;
      return err;
    }
    return std::nullopt;
  });
}

void ScriptedDevice::fail_resets(int err) {
  rules_.push_back([=](const Call& c) -> std::optional<int> {
    if (c.op == Call::Op::kReset) return err;
    return std::nullopt;
  });
}

std::size_t ScriptedDevice::count(Call::Op op) const {
  std::size_t n = 0;
  for (const auto& c : calls_) n += c.op == op;
  return n;
}

std::optional<Error> ScriptedDevice::intercept(Call call) {
  calls_.push_back(call);
  std::optional<int> err;
  for (auto& rule : rules_) {
    if ((err = rule(call))) break;
  }
  if (!err && before) err = before(call);
  if (!err) return std::nullopt;
  return Error{*err, fmt::format("{}: scripted failure", name())};
}

Result<> ScriptedDevice::feature(std::span<std::byte> arg) {
  Call call{Call::Op::kFeature};
  uapi::FeatureHeader header{};
  if (arg.size() >= sizeof(header)) std::memcpy(&header, arg.data(), sizeof(header));
  call.feature_flags = header.flags;
  bool set_state = (header.flags & uapi::kFeatureSet) &&
                   (header.flags & uapi::kFeatureMask) ==
                       static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState);
  if (set_state && arg.size() >= sizeof(header) + sizeof(uapi::MigState)) {
    uapi::MigState payload;
    std::memcpy(&payload, arg.data() + sizeof(header), sizeof(payload));
    call.requested_state = static_cast<uapi::State>(payload.device_state);
  }
  if (auto e = intercept(call)) return std::unexpected(*e);
  return inner_.feature(arg);
}

Result<> ScriptedDevice::reset() {
  if (auto e = intercept({Call::Op::kReset})) return std::unexpected(*e);
  return inner_.reset();
}

Result<std::size_t> ScriptedDevice::read(int fd, std::span<std::byte> buf) {
  if (auto e = intercept({Call::Op::kRead})) return std::unexpected(*e);
  return inner_.read(fd, buf);
}

Result<std::size_t> ScriptedDevice::write(int fd, std::span<const std::byte> buf) {
  if (auto e = intercept({Call::Op::kWrite})) return std::unexpected(*e);
  return inner_.write(fd, buf);
}

Result<> ScriptedDevice::precopy_info(int fd, uapi::PrecopyInfo& info) {
  if (auto e = intercept({Call::Op::kPrecopyInfo})) return std::unexpected(*e);
  return inner_.precopy_info(fd, info);
}

Result<> ScriptedDevice::close(int fd) {
  if (auto e = intercept({Call::Op::kClose})) return std::unexpected(*e);
  return inner_.close(fd);
}

Result<std::size_t> ScriptedDevice::config_read(std::uint64_t off, std::span<std::byte> buf) {
  Call call{Call::Op::kConfigRead};
  call.offset = off;
  call.size = buf.size();
  if (auto e = intercept(call)) return std::unexpected(*e);
  return inner_.config_read(off, buf);
}

Result<std::size_t> ScriptedDevice::config_write(std::uint64_t off,
                                                 std::span<const std::byte> buf) {
  Call call{Call::Op::kConfigWrite};
  call.offset = off;
  call.size = buf.size();
  if (auto e = intercept(call)) return std::unexpected(*e);
  if (swallow_config_writes) return buf.size();
  return inner_.config_write(off, buf);
}

}  // namespace vfio::testing
