#include "faults/transport.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

#include <fmt/format.h>

#include "simdev/direct_device.h"
#include "simdev/sim_mount.h"

namespace vfio::faults {
namespace {

// One mount serves every case of the process: mounting per case would dominate the run time.
// It belongs to the process that made it: a forked child has no thread serving it, and makes
// its own.
struct Shared {
  std::mutex mu;
  std::unique_ptr<sim::SimMount> mount;
  pid_t owner = 0;
};
Shared& shared() {
  static Shared s;
  return s;
}

Result<sim::SimMount*> shared_mount() {
  auto& [mu, mount, owner] = shared();
  std::lock_guard lock(mu);
  if (mount && owner != ::getpid()) (void)mount.release();  // the parent's, served by the parent
  if (!mount) {
    owner = ::getpid();
    if (auto ok = sim::SimMount::fuse_available(); !ok) return std::unexpected(ok.error());
    auto m = sim::SimMount::create();
    if (!m) return std::unexpected(m.error());
    mount = std::move(*m);
  }
  return mount.get();
}

}  // namespace

void close_transport() {
  auto& [mu, mount, owner] = shared();
  std::lock_guard lock(mu);
  if (mount && owner == ::getpid()) mount.reset();
}

std::string_view transport_name(Transport t) {
  return t == Transport::kFuse ? "fuse" : t == Transport::kFuseFlaky ? "fuse-flaky" : "direct";
}

Result<> transport_available(Transport t) {
  if (t == Transport::kDirect) return {};
  return sim::SimMount::fuse_available();
}

Result<SimHandle> open_sim(Transport t, const sim::Profile& profile, const sim::SimOptions& options,
                           const std::string& name) {
  auto model = std::make_shared<sim::SimDevice>(profile, options);
  if (t == Transport::kDirect)
    return SimHandle{model, std::make_unique<sim::DirectDevice>(model, name)};
  auto mount = shared_mount();
  if (!mount) return std::unexpected(mount.error());
  static std::atomic<std::uint64_t> serial{0};
  auto file = fmt::format("{}-{}", name, serial++);
  auto path = (*mount)->add_device(model, file);
  if (!path) return std::unexpected(path.error());
  auto dev = sim::SimMount::open_device(*path, name, model);
  if (!dev) return std::unexpected(dev.error());
  // Prime steps, so that the faults fall on every kind of request in turn.
  if (t == Transport::kFuseFlaky) (*mount)->set_fault(*model, sim::flaky_server(7, 11, 5));
  return SimHandle{model, std::move(*dev)};
}

}  // namespace vfio::faults
