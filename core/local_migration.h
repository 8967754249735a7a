// A source and a destination Session in one process, joined by a pipe: the shape of
// `vfio-mig migrate` and `vfio-mig demo`. Each side runs on its own thread, as two VMMs would.
#pragma once

#include "core/session.h"

namespace vfio {

struct LocalMigrationReport {
  Report source;
  Report destination;
};

// Fails with the source's error when the source failed (the destination then sees a truncated
// stream), otherwise with the destination's. Either side failing unblocks the other.
Result<LocalMigrationReport> migrate_locally(Session& source, Session& destination);

}  // namespace vfio
