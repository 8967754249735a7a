// FaultChannel: a Channel decorator applying a fault plan to the migration stream. Writes are
// `send` calls, reads are `recv` calls. It can also keep a copy of every byte that reached the
// inner channel, so an oracle can check what actually went over the wire.
#pragma once

#include <mutex>
#include <vector>

#include "core/channel.h"
#include "faults/injector.h"

namespace vfio::faults {

class FaultChannel final : public Channel {
 public:
  FaultChannel(Channel& inner, Injector& injector, Side side);

  Result<std::size_t> write(std::span<const std::byte> data) override;
  Result<std::size_t> read(std::span<std::byte> data) override;
  const std::string& name() const override { return inner_.name(); }

  void keep_copy(bool on) { keep_ = on; }
  // Bytes the inner channel accepted (writes) or delivered after faults (reads).
  std::vector<std::byte> copy() const;

 private:
  Channel& inner_;
  Injector& injector_;
  Side side_;
  bool truncated_ = false;
  bool keep_ = false;
  mutable std::mutex mu_;
  std::vector<std::byte> copy_;
};

}  // namespace vfio::faults
