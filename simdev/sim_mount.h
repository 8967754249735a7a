// The simulator served over FUSE, so that the engine talks to it with the real syscalls
// (ioctl, read, write, pread) through core/kernel_device.h, exactly as it would to /dev/vfio.
//
// A SimMount is a private FUSE file system mounted at /tmp/vfio-mig-sim.<pid>.<start>.XXXXXX and
// served by a multithreaded libfuse loop inside this process. Each added SimDevice is a regular
// file <mountpoint>/<name> answering VFIO_DEVICE_FEATURE, _RESET, _GET_INFO, _GET_REGION_INFO
// and pread/pwrite of the PCI config region. VFIO ioctls are _IO (no size bits), so the kernel
// hands the server the caller's raw pointer; the server lives in the same address space and
// dereferences it, bounded by argsz. A SET that opens a data channel makes the server thread
// open <mountpoint>/.data/<token>: the fd lands in the (shared) fd table and is returned in
// data_fd. Data files answer read/write/VFIO_MIG_GET_PRECOPY_INFO; closing them releases the
// session. All files use direct_io, so short transfers and errnos reach the caller exactly.
//
// Crash safety (see simdev/fuse_cleanup.h): mountpoints carry the owner's pid and start time,
// and create() first removes mounts whose owner is gone; abort_all_connections_of_this_process()
// can be called from signal/terminate/atexit handlers; files are opened noflush. unmount()
// aborts the connection through fusectl, which wakes a blocked loop even while the caller still
// holds open fds on the mount (they then fail with ENOTCONN); without fusectl a request from a
// detached thread stops the loop, and closing /dev/fuse then ends the connection.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "core/kernel_device.h"
#include "core/result.h"
#include "simdev/sim_device.h"

namespace vfio::sim {

// Faults below the device seam: what the server answers a request with instead of serving it
// whole, so that the engine's own syscall path (core/kernel_device.cc) meets EINTR, EAGAIN and
// short counts as a kernel driver could give them.
enum class FuseRequest { kIoctl, kRead, kWrite };  // a read or write of a data file or config
struct FuseAnswer {
  int error = 0;  // replied without serving the request
  std::size_t at_most = std::numeric_limits<std::size_t>::max();  // a read or write moves less
};
using FuseFault = std::function<FuseAnswer(FuseRequest, std::size_t size)>;
// A flaky server, deterministic for one caller: of a device's requests, every `eintr`th is
// answered EINTR, else every `eagain`th EAGAIN, else every `half`th read or write moves half
// (at least one byte). What a correct caller absorbs.
FuseFault flaky_server(int eintr, int eagain, int half);

struct SimMountOptions {
  std::string parent_dir = "/tmp";  // where the mountpoint directory is made
  unsigned max_threads = 16;        // libfuse workers; a SET that opens a data fd needs two
  // The CPU every server thread runs on, -1 for any: a real driver serves a data-fd read on its
  // caller's CPU, and a benchmark that pins its caller places the server with it.
  int cpu = -1;
  // unmount() aborts the connection through fusectl (root only). Off, or where that fails,
  // it stops the loop gracefully; fds callers still hold fail ENOTCONN either way.
  bool use_fusectl = true;
};

class SimMount {
 public:
  static Result<std::unique_ptr<SimMount>> create(SimMountOptions options = {});
  ~SimMount();
  SimMount(const SimMount&) = delete;
  SimMount& operator=(const SimMount&) = delete;

  // Serves `sim` as <mountpoint>/<name> (a regular file, mode 0600); returns its path.
  // `name` is a single path component, not starting with '.', not used before on this mount.
  Result<std::string> add_device(std::shared_ptr<SimDevice> sim, std::string name);

  // Every request for `sim` (its device file and its data files) first asks `fault`, on a
  // server thread; an empty function serves them all again.
  void set_fault(const SimDevice& sim, FuseFault fault);

  // Stops serving, unmounts and removes the mountpoint; idempotent, never blocks on callers.
  // Fds still open on the mount then fail with ENOTCONN; sessions behind them are released.
  Result<> unmount();

  const std::string& mountpoint() const;

  // Opens a device file as a KernelDevice named `name` (e.g. "sim:mlx5#0 (fuse)"). With the
  // model served there, the device's errors carry the model's reasons (FUSE passes only errnos).
  static Result<std::unique_ptr<KernelDevice>> open_device(
      const std::string& path, std::string name, std::shared_ptr<SimDevice> model = nullptr);

  // Whether FUSE can serve the simulator here: /dev/fuse opens, a trial mount works and an
  // ioctl reaches the server. Computed once per process.
  static Result<> fuse_available();

  // Aborts the FUSE connection of every live mount of this process (callers get ENOTCONN,
  // nothing can hang on a dead server) and detaches the mounts. Async-signal-safe.
  static void abort_all_connections_of_this_process() noexcept;

  // Removes mounts left behind by processes that are gone; create() calls it. Returns the count.
  static int cleanup_stale_mounts();

  struct Impl;

 private:
  explicit SimMount(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vfio::sim
