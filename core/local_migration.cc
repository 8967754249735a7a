#include "core/local_migration.h"

#include <csignal>
#include <thread>
#include <utility>

#include "core/cpu_pin.h"

namespace vfio {

Result<LocalMigrationReport> migrate_locally(Session& source, Session& destination,
                                             ThreadPlacement placement) {
  // Both sides' devices are checked before either side sends anything.
  for (auto [session, side] : {std::pair{&source, "source: "}, {&destination, "destination: "}}) {
    if (auto r = session->learn_device_states(); !r) {
      Error e = r.error();
      e.message = side + e.message;
      return std::unexpected(e);
    }
  }
  // A destination that fails closes its end under the writing source: that must come back as
  // EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  auto channel = make_socket_channel();
  if (!channel) return std::unexpected(channel.error());
  auto& [read_end, write_end] = *channel;

  Result<Report> loaded = fail(ECANCELED, "destination did not run");
  std::thread destination_thread([&] {
    CpuPin pin(placement.destination_cpu);
    loaded = destination.load(read_end);
    // A destination that stopped early must not leave the source blocked on a full socket.
    read_end.close();
  });
  Result<Report> saved = [&] {
    CpuPin pin(placement.source_cpu);
    return source.save(write_end);
  }();
  write_end.close();  // end of stream, or the truncation the destination will notice
  destination_thread.join();

  if (!saved) {
    Error e = saved.error();
    e.message = "source: " + e.message;
    if (!loaded) e.message += " (destination: " + loaded.error().describe() + ")";
    return std::unexpected(e);
  }
  if (!loaded) {
    Error e = loaded.error();
    e.message = "destination: " + e.message;
    // The source finished sending but the VM never arrived: it keeps running where it was.
    if (auto resumed = source.resume_vm(); !resumed) {
      e.message += "; restarting the source failed: " + resumed.error().describe();
    }
    return std::unexpected(e);
  }
  return LocalMigrationReport{*saved, *loaded};
}

}  // namespace vfio
