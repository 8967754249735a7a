// A system call that SIGKILL cannot end, for tests of kernel-hang classification: a process
// mounts a FUSE file system it serves itself, answers INIT, takes the next request (a LOOKUP)
// and never answers it. Once killed, the caller waits uninterruptibly (state D) in the kernel
// for an answer that no thread is left to give, as a driver spinning in an ioctl would. Only an
// abort through fusectl (release()) ends it.
#pragma once

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "simdev/fuse_cleanup.h"

namespace vfio::faults::test {

inline bool can_mount_fuse() {
  return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0;
}

inline std::string stuck_mountpoint(pid_t pid) {
  return fmt::format("/tmp/vfio-mig-stuck-test.{}", pid);
}

// In a child that is about to be killed: blocks for ever in openat() on a FUSE file whose
// request was taken by the server thread. Returns only when something went wrong.
inline void block_in_fuse_request() {
  const std::string dir = stuck_mountpoint(::getpid());
  ::mkdir(dir.c_str(), 0700);
  const int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  const auto opts = fmt::format("fd={},rootmode=40000,user_id=0,group_id=0", fd);
  if (::mount("vfio-mig-stuck-test", dir.c_str(), "fuse", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
    return;
  std::atomic<bool> ready{false};
  std::thread server([fd, &ready] {
    std::vector<char> buf(1 << 20);
    // INIT: answer it, so the next request is sent to this server.
    if (::read(fd, buf.data(), buf.size()) <= 0) return;
    fuse_in_header in;
    std::memcpy(&in, buf.data(), sizeof in);
    struct {
      fuse_out_header h;
      fuse_init_out init;
    } out{};
    out.h.len = sizeof out;
    out.h.unique = in.unique;
    out.init.major = FUSE_KERNEL_VERSION;
    out.init.minor = FUSE_KERNEL_MINOR_VERSION;
    out.init.max_write = 4096;
    if (::write(fd, &out, sizeof out) != static_cast<ssize_t>(sizeof out)) return;
    ready = true;
    (void)::read(fd, buf.data(), buf.size());  // the LOOKUP: taken, never answered
    for (;;) ::pause();
  });
  server.detach();
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  (void)::open((dir + "/never").c_str(), O_RDONLY);
}

// Ends what block_in_fuse_request() left behind in process `pid` (already killed): aborts the
// connection, detaches the mount, removes its directory.
inline void release_stuck_fuse(pid_t pid) {
  const std::string dir = stuck_mountpoint(pid);
  std::ifstream info("/proc/self/mountinfo");
  for (std::string line; std::getline(info, line);) {
    std::istringstream f(line);
    std::string id, parent, devno, root, mountpoint;
    f >> id >> parent >> devno >> root >> mountpoint;
    if (mountpoint != dir) continue;
    (void)sim::fuse_cleanup::ensure_fusectl();
    (void)sim::fuse_cleanup::abort_connection(std::stoul(devno.substr(devno.find(':') + 1)));
  }
  ::umount2(dir.c_str(), MNT_DETACH);
  ::rmdir(dir.c_str());
}

// Ends a simulator mount of process `pid` whose server is gone while a caller waits on it: the
// same abort, for mounts named by their owner (simdev/fuse_cleanup.h).
inline int release_sim_mounts_of(pid_t pid) {
  int released = 0;
  const std::string tag = fmt::format("{}{}.", sim::fuse_cleanup::kMountPrefix, pid);
  for (const auto& m : sim::fuse_cleanup::sim_mounts()) {
    if (m.mountpoint.find(tag) == std::string::npos) continue;
    (void)sim::fuse_cleanup::ensure_fusectl();
    (void)sim::fuse_cleanup::abort_connection(m.dev);
    ::umount2(m.mountpoint.c_str(), MNT_DETACH);
    ::rmdir(m.mountpoint.c_str());
    ++released;
  }
  return released;
}

}  // namespace vfio::faults::test
