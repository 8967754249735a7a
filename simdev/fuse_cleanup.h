// Keeping FUSE mounts of the simulator from outliving their server.
//
// The simulator's FUSE server runs inside the process that uses its files, so a crash can leave
// a mount with no server: every access then fails with ENOTCONN, or, when a request was already
// being served, the caller (and with it the whole dying process) hangs in D state until the
// connection is aborted through fusectl (/sys/fs/fuse/connections/<dev>/abort). Three defences:
//  - every mountpoint is named /tmp/vfio-mig-sim.<pid>.<starttime>.XXXXXX, so a later process can
//    tell a mount whose owner is gone (or is dying, even stuck in D state on that very mount, or
//    whose pid was reused) and clean it: abort through fusectl (the connection taken from
//    /proc/self/mountinfo, the mount itself never touched), detach, remove the directory
//    (cleanup_stale_mounts);
//  - live mounts are kept in a fixed table that abort_registered() walks with async-signal-safe
//    calls only, for fatal-signal, terminate and atexit handlers;
//  - device and data files are opened with noflush, so close() at exit never waits on a server.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace vfio::sim::fuse_cleanup {

inline constexpr const char* kFsName = "vfio-mig-sim";
inline constexpr const char* kMountPrefix = "vfio-mig-sim.";  // directory name prefix

// A mount of the simulator (source kFsName, FUSE type), from /proc/self/mountinfo.
struct SimMountEntry {
  std::string mountpoint;
  unsigned long dev;  // kernel dev_t of the superblock: the fusectl connection name
};
std::vector<SimMountEntry> sim_mounts();

// "<pid>.<starttime>" of this process, for the mountpoint name.
std::string owner_tag();
// Whether the process named by a mountpoint's owner tag still runs and is not dying. Dying:
// its leader is a zombie or exiting (PF_EXITING), or SIGKILL is pending (in the shared set or
// any thread's; the kernel queues it on every thread for each fatal signal). Such a process
// never runs its own code again; when a thread of it waits on a request its own server thread
// had taken, it stays in D state until the connection is aborted. A live process waiting for
// its own healthy server has no SIGKILL pending, so its mount is never touched.
// Names that carry no tag count as alive: they are not ours to touch.
bool owner_alive(const std::string& mountpoint);

// Mounts fusectl at /sys/fs/fuse/connections unless it is there already.
Result<> ensure_fusectl();
// Aborts a FUSE connection: all waiting requests fail, server reads return ENODEV.
Result<> abort_connection(unsigned long dev);

// Aborts, detaches and removes every simulator mount whose owner is gone, and removes
// leftover empty mountpoint directories of dead owners. Returns how many mounts it removed.
int cleanup_stale_mounts();

// The table of this process's live mounts. At most kMaxRegistered are tracked; more still work,
// they are just not aborted by abort_registered().
inline constexpr int kMaxRegistered = 64;
void register_mount(unsigned long dev, const std::string& mountpoint);
void unregister_mount(unsigned long dev);
// Aborts every registered connection, and with `detach` also lazily unmounts it and removes
// the directory. Async-signal-safe: no allocation, no locks.
void abort_registered(bool detach) noexcept;
// Empties the table without touching the mounts: a forked child's inherited entries are its
// parent's mounts, not its own to abort.
void forget_registered() noexcept;

}  // namespace vfio::sim::fuse_cleanup
