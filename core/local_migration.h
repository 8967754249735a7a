// A source and a destination Session in one process, joined by a Unix socket pair
// (make_socket_channel): the shape of `vfio-mig migrate` and `vfio-mig demo`. Each side runs on its
// own thread, as two VMMs would.
#pragma once

#include "core/session.h"

namespace vfio {

struct LocalMigrationReport {
  Report source;
  Report destination;
};

// Where each side's thread runs while it saves or loads: a CPU, or -1 for wherever the
// scheduler puts it. The benchmark pins both, to compare the migration with ceilings measured
// in the same placement.
struct ThreadPlacement {
  int source_cpu = -1;
  int destination_cpu = -1;
};

// Fails with the source's error when the source failed (the destination then sees a truncated
// stream), otherwise with the destination's. Either side failing unblocks the other. Ignores
// SIGPIPE for the process.
Result<LocalMigrationReport> migrate_locally(Session& source, Session& destination,
                                             ThreadPlacement placement = {});

}  // namespace vfio
