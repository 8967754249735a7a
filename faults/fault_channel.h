// FaultChannel: a Channel decorator applying a fault plan to the migration stream. Writes are
// `send` calls, reads are `recv` calls. To check what actually went over the wire, put a
// CheckedChannel (faults/stream_check.h) inside it.
#pragma once

#include "core/channel.h"
#include "faults/injector.h"

namespace vfio::faults {

class FaultChannel final : public Channel {
 public:
  FaultChannel(Channel& inner, Injector& injector, Side side);

  Result<std::size_t> write(std::span<const std::byte> data) override;
  Result<std::size_t> read(std::span<std::byte> data) override;
  const std::string& name() const override { return inner_.name(); }

 private:
  Channel& inner_;
  Injector& injector_;
  Side side_;
  bool truncated_ = false;
};

}  // namespace vfio::faults
