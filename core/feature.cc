#include "core/feature.h"

#include <fmt/format.h>
#include <cstring>
#include <utility>

#include "core/retry.h"

namespace vfio {
namespace {

// A feature call buffer: header plus payload, 8-byte aligned as the kernel expects.
template <class Payload>
struct FeatureBuffer {
  uapi::FeatureHeader header;
  Payload payload;

  FeatureBuffer(std::uint32_t flags, const Payload& p) : header{sizeof(*this), flags}, payload(p) {}
  std::span<std::byte> bytes() { return std::as_writable_bytes(std::span(this, 1)); }
};

std::uint32_t flags_of(uapi::Feature f, std::uint32_t direction) {
  return static_cast<std::uint32_t>(f) | direction;
}

}  // namespace

Result<std::uint64_t> query_migration_flags(Device& dev) {
  FeatureBuffer<uapi::MigrationFlags> buf(flags_of(uapi::Feature::kMigration, uapi::kFeatureGet),
                                          {});
  if (auto r = retry_transient([&] { return dev.feature(buf.bytes()); }); !r)
    return std::unexpected(std::move(r).error());
  return buf.payload.flags;
}

Result<uapi::State> query_device_state(Device& dev) {
  FeatureBuffer<uapi::MigState> buf(flags_of(uapi::Feature::kMigDeviceState, uapi::kFeatureGet),
                                    {0, -1});
  if (auto r = retry_transient([&] { return dev.feature(buf.bytes()); }); !r)
    return std::unexpected(std::move(r).error());
  return static_cast<uapi::State>(buf.payload.device_state);
}

Result<int> request_device_state(Device& dev, uapi::State state) {
  FeatureBuffer<uapi::MigState> buf(flags_of(uapi::Feature::kMigDeviceState, uapi::kFeatureSet),
                                    {static_cast<std::uint32_t>(state), -1});
  if (auto r = retry_transient([&] { return dev.feature(buf.bytes()); }); !r) {
    Error e = std::move(r).error();
    // A SET refused before it reached the kernel explains itself; others name the raw ioctl.
    if (e.code != kHangingArcRefused)
      e.message = fmt::format("{}: set device state {}", dev.name(), uapi::state_name(state));
    return std::unexpected(std::move(e));
  }
  return buf.payload.data_fd;
}

Result<std::uint64_t> query_stop_copy_size(Device& dev) {
  FeatureBuffer<uapi::MigDataSize> buf(flags_of(uapi::Feature::kMigDataSize, uapi::kFeatureGet),
                                       {});
  if (auto r = retry_transient([&] { return dev.feature(buf.bytes()); }); !r)
    return std::unexpected(std::move(r).error());
  return buf.payload.stop_copy_length;
}

bool probe_feature(Device& dev, uapi::Feature feature, std::uint32_t direction) {
  uapi::FeatureHeader header{sizeof(header), flags_of(feature, direction | uapi::kFeatureProbe)};
  return retry_transient([&] { return dev.feature(std::as_writable_bytes(std::span(&header, 1))); })
      .has_value();
}

}  // namespace vfio
