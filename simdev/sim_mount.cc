#include "simdev/sim_mount.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/cpu_pin.h"
#include "simdev/fuse_cleanup.h"
#include "simdev/profile.h"

namespace vfio::sim {
namespace {

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kDataDirIno = 2;
constexpr fuse_ino_t kFirstDeviceIno = 16;
constexpr fuse_ino_t kFirstDataIno = fuse_ino_t{1} << 40;
constexpr const char* kDataDir = ".data";

// Where the config region sits in the device file, as vfio-pci does (index << 40).
constexpr std::uint64_t kConfigRegionOffset = std::uint64_t{uapi::kPciConfigRegionIndex} << 40;
constexpr std::uint32_t kNumRegions = 9;  // VFIO_PCI_NUM_REGIONS: BAR0-5, ROM, CONFIG, VGA
constexpr std::size_t kMaxIo = 1 << 20;   // one FUSE request carries at most this much
// The payloads the model reads are a few dozen bytes; anything larger than this is not a
// struct a caller could mean, and bounds what we expose of the caller's memory.
constexpr std::uint32_t kMaxFeatureArgsz = 64 << 10;
constexpr double kStableTimeout = 3600.0;  // devices and directories never change

// An open data file: the session a SET produced.
struct DataHandle {
  std::shared_ptr<SimDevice> sim;
  SimDevice::SessionId id;
};

// Replies with the model's errno. The kernel rejects values outside (0, 512), and an ioctl
// answered ENOSYS would disable ioctls on the whole mount.
void reply_error(fuse_req_t req, int code, bool ioctl = false) {
  if (code <= 0 || code >= 512) code = EIO;
  if (ioctl && code == ENOSYS) code = ENOTTY;
  fuse_reply_err(req, code);
}

// A per-thread buffer for replies, grown to the largest request seen (at most kMaxIo).
std::span<std::byte> io_buffer(std::size_t size) {
  thread_local std::vector<std::byte> buf;
  size = std::min(size, kMaxIo);
  if (buf.size() < size) buf.resize(size);
  return {buf.data(), size};
}

}  // namespace

struct SimMount::Impl {
  struct Entry {
    std::string name;
    std::shared_ptr<SimDevice> sim;
  };

  SimMountOptions options;
  std::string mountpoint;
  fuse_session* se = nullptr;
  std::thread loop;
  unsigned long dev = 0;  // fusectl connection, 0 if unknown

  std::mutex mu;
  std::vector<Entry> devices;                                    // ino - kFirstDeviceIno
  std::map<std::uint64_t, std::shared_ptr<DataHandle>> pending;  // token -> session to open
  std::set<DataHandle*> open_handles;
  std::uint64_t next_token = 1;
  std::map<const SimDevice*, FuseFault> faults;

  FuseAnswer fault_for(const SimDevice& sim, FuseRequest request, std::size_t size) {
    FuseFault fault;
    {
      std::lock_guard lock(mu);
      auto it = faults.find(&sim);
      if (it == faults.end()) return {};
      fault = it->second;
    }
    return fault(request, size);
  }

  std::shared_ptr<SimDevice> device(fuse_ino_t ino) {
    std::lock_guard lock(mu);
    if (ino < kFirstDeviceIno || ino >= kFirstDeviceIno + devices.size()) return nullptr;
    return devices[ino - kFirstDeviceIno].sim;
  }

  // Runs on a server thread inside a SET: opening the file on our own mount puts the fd in
  // the process's fd table, which is the caller's. The open is served by another worker.
  Result<int> open_data_fd(std::shared_ptr<SimDevice> sim, SimDevice::SessionId id) {
    std::uint64_t token;
    {
      std::lock_guard lock(mu);
      token = next_token++;
      pending.emplace(token, std::make_shared<DataHandle>(DataHandle{std::move(sim), id}));
    }
    const auto path = fmt::format("{}/{}/{}", mountpoint, kDataDir, token);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      auto err = fail_errno(fmt::format("open data file {}", path));
      std::lock_guard lock(mu);
      pending.erase(token);
      return err;
    }
    return fd;
  }

  // Frees what callers left open when the connection went away (no release will come).
  void drop_open_handles() {
    std::lock_guard lock(mu);
    for (DataHandle* h : open_handles) {
      h->sim->release(h->id);
      delete h;
    }
    open_handles.clear();
    pending.clear();
  }
};

namespace {

using Impl = SimMount::Impl;

Impl& impl_of(fuse_req_t req) {
  return *static_cast<Impl*>(fuse_req_userdata(req));
}

struct stat attr_of(fuse_ino_t ino) {
  struct stat st {};
  st.st_ino = ino;
  st.st_uid = ::getuid();
  st.st_gid = ::getgid();
  if (ino == kRootIno || ino == kDataDirIno) {
    st.st_mode = S_IFDIR | 0700;
    st.st_nlink = 2;
  } else {
    st.st_mode = S_IFREG | 0600;
    st.st_nlink = 1;
  }
  return st;
}

bool valid_ino(Impl& m, fuse_ino_t ino) {
  if (ino == kRootIno || ino == kDataDirIno || ino >= kFirstDataIno) return true;
  return m.device(ino) != nullptr;
}

void op_init(void*, fuse_conn_info* conn) {
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;  // must match the max_read mount option
  // Reads of one stream must arrive in order: no parallel direct-I/O requests per fd.
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
  conn->want &= ~FUSE_CAP_ASYNC_READ;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Impl& m = impl_of(req);
  fuse_entry_param e{};
  std::string_view n(name);
  if (parent == kRootIno && n == kDataDir) {
    e.ino = kDataDirIno;
  } else if (parent == kRootIno) {
    std::lock_guard lock(m.mu);
    for (std::size_t i = 0; i < m.devices.size(); ++i) {
      if (m.devices[i].name == n) e.ino = kFirstDeviceIno + i;
    }
  } else if (parent == kDataDirIno) {
    // Only a session waiting to be opened has a name; it vanishes once opened.
    std::uint64_t token = 0;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), token);
    std::lock_guard lock(m.mu);
    if (ec == std::errc() && end == n.data() + n.size() && m.pending.contains(token))
      e.ino = kFirstDataIno + token;
  }
  if (e.ino == 0) return reply_error(req, ENOENT);
  e.attr = attr_of(e.ino);
  const double timeout = e.ino >= kFirstDataIno ? 0.0 : kStableTimeout;
  e.attr_timeout = timeout;
  e.entry_timeout = timeout;
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (!valid_ino(impl_of(req), ino)) return reply_error(req, ENOENT);
  const struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, ino >= kFirstDataIno ? 0.0 : kStableTimeout);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Impl& m = impl_of(req);
  // direct_io: every read/write reaches us and its result reaches the caller unchanged.
  // noflush: close() never waits on the server (it may be gone when a crashing process exits).
  fi->direct_io = 1;
  fi->noflush = 1;
  fi->keep_cache = 0;
  if (ino == kRootIno || ino == kDataDirIno) return reply_error(req, EISDIR);
  if (ino < kFirstDataIno) {
    auto sim = m.device(ino);
    if (!sim) return reply_error(req, ENOENT);
    fi->fh = 0;
    sim->open_device();
    // The opener went away (interrupted): no release will follow.
    if (fuse_reply_open(req, fi) != 0) sim->close_device();
    return;
  }
  std::shared_ptr<DataHandle> pending;
  {
    std::lock_guard lock(m.mu);
    auto it = m.pending.find(ino - kFirstDataIno);
    if (it == m.pending.end()) return reply_error(req, ENOENT);
    pending = std::move(it->second);
    m.pending.erase(it);
  }
  // A stream, like the kernel's anonymous-inode data fd: no seeking.
  fi->nonseekable = 1;
  auto* handle = new DataHandle(*pending);
  {
    std::lock_guard lock(m.mu);
    m.open_handles.insert(handle);
  }
  fi->fh = reinterpret_cast<std::uintptr_t>(handle);
  if (fuse_reply_open(req, fi) != 0) {
    // The opener went away (interrupted): no release will follow.
    std::lock_guard lock(m.mu);
    m.open_handles.erase(handle);
    handle->sim->release(handle->id);
    delete handle;
  }
}

DataHandle* handle_of(fuse_ino_t ino, const fuse_file_info* fi) {
  return ino >= kFirstDataIno ? reinterpret_cast<DataHandle*>(fi->fh) : nullptr;
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (DataHandle* h = handle_of(ino, fi)) {
    Impl& m = impl_of(req);
    {
      std::lock_guard lock(m.mu);
      m.open_handles.erase(h);
    }
    h->sim->release(h->id);
    delete h;
  } else if (auto sim = impl_of(req).device(ino)) {
    sim->close_device();
  }
  fuse_reply_err(req, 0);
}

// The config region of a device file: [kConfigRegionOffset, + config size). Anything else is
// EINVAL, as vfio-pci answers an access to a region that does not exist.
Result<std::uint64_t> config_offset(off_t off) {
  if (off < 0 || static_cast<std::uint64_t>(off) < kConfigRegionOffset ||
      static_cast<std::uint64_t>(off) >= kConfigRegionOffset + (std::uint64_t{1} << 40))
    return fail(EINVAL, "access outside the config region");
  return static_cast<std::uint64_t>(off) - kConfigRegionOffset;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Impl& m = impl_of(req);
  DataHandle* h = handle_of(ino, fi);
  auto sim = h ? h->sim : m.device(ino);
  const FuseAnswer a = sim ? m.fault_for(*sim, FuseRequest::kRead, size) : FuseAnswer{};
  if (a.error) return reply_error(req, a.error);
  const auto buf = io_buffer(std::min(size, a.at_most));
  Result<std::size_t> r;
  if (h) {
    r = h->sim->read(h->id, buf, (fi->flags & O_NONBLOCK) != 0);
  } else if (sim) {
    auto at = config_offset(off);
    r = at ? sim->config_read(*at, buf) : std::unexpected(at.error());
  } else {
    r = fail(EBADF, "not a device or data file");
  }
  if (!r) return reply_error(req, r.error().code);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *r);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
              fuse_file_info* fi) {
  Impl& m = impl_of(req);
  DataHandle* h = handle_of(ino, fi);
  auto sim = h ? h->sim : m.device(ino);
  const FuseAnswer a = sim ? m.fault_for(*sim, FuseRequest::kWrite, size) : FuseAnswer{};
  if (a.error) return reply_error(req, a.error);
  const std::span<const std::byte> buf(reinterpret_cast<const std::byte*>(data),
                                       std::min(size, a.at_most));
  Result<std::size_t> r;
  if (h) {
    r = h->sim->write(h->id, buf);
  } else if (sim) {
    auto at = config_offset(off);
    r = at ? sim->config_write(*at, buf) : std::unexpected(at.error());
  } else {
    r = fail(EBADF, "not a device or data file");
  }
  if (!r) return reply_error(req, r.error().code);
  fuse_reply_write(req, *r);
}

void ioctl_done(fuse_req_t req, const Result<>& r) {
  if (!r) return reply_error(req, r.error().code, /*ioctl=*/true);
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

// `arg` is the caller's pointer, valid in this address space. Like the kernel, reads only the
// fixed struct (after checking argsz) and writes back only on success.
Result<> device_feature(Impl& m, const std::shared_ptr<SimDevice>& sim, void* arg) {
  uapi::FeatureHeader hdr;
  std::memcpy(&hdr, arg, sizeof(hdr));
  // The model validates argsz itself (EINVAL below 8, EFAULT beyond the span).
  const std::size_t len =
      hdr.argsz < sizeof(hdr) ? sizeof(hdr) : std::min(hdr.argsz, kMaxFeatureArgsz);
  const SimDevice::FdOpener opener = [&m, &sim](SimDevice::SessionId id) {
    return m.open_data_fd(sim, id);
  };
  return sim->feature({static_cast<std::byte*>(arg), len}, opener);
}

Result<> device_get_info(void* arg) {
  std::uint32_t argsz;
  std::memcpy(&argsz, arg, sizeof(argsz));
  constexpr std::size_t kMinsz = offsetof(uapi::DeviceInfo, num_irqs) + sizeof(std::uint32_t);
  if (argsz < kMinsz) return fail(EINVAL, "argsz too small");
  uapi::DeviceInfo info{};
  info.argsz = argsz;
  info.flags = uapi::kDeviceFlagsPci | uapi::kDeviceFlagsReset;
  info.num_regions = kNumRegions;
  info.num_irqs = 0;
  std::memcpy(arg, &info, kMinsz);  // vfio-pci copies back minsz bytes
  return {};
}

Result<> device_get_region_info(const SimDevice& sim, void* arg) {
  uapi::RegionInfo info;
  std::memcpy(&info, arg, sizeof(std::uint32_t));
  if (info.argsz < sizeof(info)) return fail(EINVAL, "argsz too small");
  std::memcpy(&info, arg, sizeof(info));
  if (info.index >= kNumRegions) return fail(EINVAL, "no such region");
  info.cap_offset = 0;
  info.offset = std::uint64_t{info.index} << 40;
  if (info.index == uapi::kPciConfigRegionIndex) {
    info.flags = uapi::kRegionFlagRead | uapi::kRegionFlagWrite;
    info.size = sim.config().size();
  } else {
    info.flags = 0;
    info.size = 0;
  }
  std::memcpy(arg, &info, sizeof(info));
  return {};
}

Result<> data_precopy_info(DataHandle& h, void* arg) {
  uapi::PrecopyInfo info{};
  std::memcpy(&info, arg, sizeof(std::uint32_t));
  std::memcpy(&info, arg, std::min<std::size_t>(info.argsz, sizeof(info)));
  if (auto r = h.sim->precopy_info(h.id, info); !r) return r;  // argsz < 24 refused here
  std::memcpy(arg, &info, sizeof(info));
  return {};
}

void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg, fuse_file_info* fi,
              unsigned flags, const void*, size_t, size_t) {
  Impl& m = impl_of(req);
  if (flags & FUSE_IOCTL_COMPAT) return reply_error(req, ENOTTY);
  DataHandle* h = handle_of(ino, fi);
  if (auto target = h ? h->sim : m.device(ino)) {
    if (int e = m.fault_for(*target, FuseRequest::kIoctl, 0).error)
      return reply_error(req, e, true);
  }
  if (h) {
    if (cmd != uapi::kMigGetPrecopyInfo) return reply_error(req, ENOTTY);
    if (!arg) return reply_error(req, EFAULT);
    return ioctl_done(req, data_precopy_info(*h, arg));
  }
  auto sim = m.device(ino);
  if (!sim) return reply_error(req, ENOTTY);
  if (cmd == uapi::kDeviceReset) return ioctl_done(req, sim->reset());
  if (cmd != uapi::kDeviceFeature && cmd != uapi::kDeviceGetInfo &&
      cmd != uapi::kDeviceGetRegionInfo)
    return reply_error(req, ENOTTY);
  if (!arg) return reply_error(req, EFAULT);
  switch (cmd) {
    case uapi::kDeviceFeature:
      return ioctl_done(req, device_feature(m, sim, arg));
    case uapi::kDeviceGetInfo:
      return ioctl_done(req, device_get_info(arg));
    default:
      return ioctl_done(req, device_get_region_info(*sim, arg));
  }
}

constexpr fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.release = op_release;
  ops.ioctl = op_ioctl;
  return ops;
}();

std::once_flag g_process_once;

// libfuse's messages: while a thread sets up a mount they go into its error instead of onto
// stderr (the CLI falls back to the direct transport with one line of its own).
thread_local std::string* t_log_capture = nullptr;

void fuse_log_sink(fuse_log_level, const char* format, va_list ap) {
  char line[512];
  std::vsnprintf(line, sizeof(line), format, ap);
  if (t_log_capture) {
    *t_log_capture += line;
  } else {
    std::fputs(line, stderr);
  }
}

// What libfuse said, as one line, or `fallback`.
std::string fuse_said(std::string log, std::string_view fallback) {
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  std::replace(log.begin(), log.end(), '\n', ';');
  return log.empty() ? std::string(fallback) : log;
}

}  // namespace

SimMount::SimMount(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SimMount::~SimMount() {
  (void)unmount();
}

const std::string& SimMount::mountpoint() const {
  return impl_->mountpoint;
}

Result<std::unique_ptr<SimMount>> SimMount::create(SimMountOptions options) {
  cleanup_stale_mounts();
  // Mounts a process forgets to unmount are at least aborted and detached when it exits.
  std::call_once(g_process_once, [] {
    std::atexit([] { fuse_cleanup::abort_registered(true); });
    fuse_set_log_func(fuse_log_sink);
  });

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::string dir = fmt::format("{}/{}{}.XXXXXX", options.parent_dir, fuse_cleanup::kMountPrefix,
                                fuse_cleanup::owner_tag());
  if (!::mkdtemp(dir.data())) return fail_errno(fmt::format("mkdtemp {}", dir));
  impl->mountpoint = dir;

  // No allow_other, no default_permissions: only this user, and we check nothing ourselves.
  const auto mount_opts = fmt::format("fsname={},max_read={}", fuse_cleanup::kFsName, kMaxIo);
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  if (fuse_opt_add_arg(&args, "vfio-mig-sim") || fuse_opt_add_arg(&args, "-o") ||
      fuse_opt_add_arg(&args, mount_opts.c_str())) {
    fuse_opt_free_args(&args);
    ::rmdir(dir.c_str());
    return fail(ENOMEM, "building FUSE arguments");
  }
  std::string log;
  t_log_capture = &log;
  impl->se = fuse_session_new(&args, &kOps, sizeof(kOps), impl.get());
  fuse_opt_free_args(&args);
  const bool mounted = impl->se && fuse_session_mount(impl->se, dir.c_str()) == 0;
  t_log_capture = nullptr;
  if (!mounted) {
    if (impl->se) fuse_session_destroy(impl->se);
    ::rmdir(dir.c_str());
    return fail(EIO, fmt::format("mounting FUSE at {}: {}", dir,
                                 fuse_said(std::move(log),
                                           impl->se ? "mount failed" : "fuse_session_new failed")));
  }
  for (const auto& e : fuse_cleanup::sim_mounts()) {
    if (e.mountpoint == dir) impl->dev = e.dev;
  }
  if (impl->dev) {
    fuse_cleanup::register_mount(impl->dev, dir);
    // Now rather than when unmount() needs it.
    if (options.use_fusectl) (void)fuse_cleanup::ensure_fusectl();
  }

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, std::max(options.max_threads, 2u));
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  impl->loop = std::thread([se = impl->se, cfg, cpu = options.cpu] {
    CpuPin pin(cpu);  // the workers this thread starts inherit it
    fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  });
  return std::unique_ptr<SimMount>(new SimMount(std::move(impl)));
}

Result<std::string> SimMount::add_device(std::shared_ptr<SimDevice> sim, std::string name) {
  Impl& m = *impl_;
  if (!m.se) return fail(ENOTCONN, fmt::format("{}: not mounted", m.mountpoint));
  if (!sim) return fail(EINVAL, "add_device: no device");
  if (name.empty() || name.starts_with('.') || name.find('/') != std::string::npos)
    return fail(EINVAL, fmt::format("add_device: bad file name '{}'", name));
  std::lock_guard lock(m.mu);
  for (const auto& e : m.devices) {
    if (e.name == name)
      return fail(EEXIST, fmt::format("{}/{} exists already", m.mountpoint, name));
  }
  m.devices.push_back({name, std::move(sim)});
  return fmt::format("{}/{}", m.mountpoint, name);
}

FuseFault flaky_server(int eintr, int eagain, int half) {
  auto count = std::make_shared<std::atomic<int>>(0);
  return [=](FuseRequest request, std::size_t size) {
    const int k = ++*count;
    if (k % eintr == 0) return FuseAnswer{EINTR};
    if (k % eagain == 0) return FuseAnswer{EAGAIN};
    if (request != FuseRequest::kIoctl && k % half == 0)
      return FuseAnswer{0, std::max<std::size_t>(1, size / 2)};
    return FuseAnswer{};
  };
}

void SimMount::set_fault(const SimDevice& sim, FuseFault fault) {
  std::lock_guard lock(impl_->mu);
  if (fault)
    impl_->faults[&sim] = std::move(fault);
  else
    impl_->faults.erase(&sim);
}

Result<> SimMount::unmount() {
  Impl& m = *impl_;
  if (!m.se) return {};
  fuse_session_exit(m.se);
  // Wake the loop. Aborting fails every pending and future request, so it works even when
  // callers keep fds open or every worker is stuck. Without fusectl (unprivileged, or turned
  // off), any one request wakes a worker, which then sees the exit flag. This thread must not
  // wait for that request: the loop may have stopped already (any request served after the
  // flag was set stops it) and nobody would answer. So a detached thread waits for it; the wait
  // ends at the latest when the /dev/fuse fd is closed below, which ends the connection.
  // (A retrieve notification would queue a request without a waiter, but the kernel refuses
  // it for the root directory.)
  const bool aborted =
      m.options.use_fusectl && m.dev && fuse_cleanup::abort_connection(m.dev).has_value();
  if (!aborted) {
    std::thread([wake = m.mountpoint + "/.wake"] {
      struct stat st;
      ::stat(wake.c_str(), &st);
    }).detach();
  }
  if (m.loop.joinable()) m.loop.join();
  // After an abort libfuse only closes /dev/fuse here; the detach below does the unmount.
  fuse_session_unmount(m.se);
  Result<> result;
  if (::umount2(m.mountpoint.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    result = fail_errno(fmt::format("umount {}", m.mountpoint));
  fuse_session_destroy(m.se);
  m.se = nullptr;
  if (m.dev) fuse_cleanup::unregister_mount(m.dev);
  m.drop_open_handles();
  if (::rmdir(m.mountpoint.c_str()) < 0 && errno != ENOENT && result)
    result = fail_errno(fmt::format("rmdir {}", m.mountpoint));
  return result;
}

Result<std::unique_ptr<KernelDevice>> SimMount::open_device(const std::string& path,
                                                            std::string name,
                                                            std::shared_ptr<SimDevice> model) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno(fmt::format("{}: open {}", name, path));
  auto dev = std::make_unique<KernelDevice>(std::move(name), std::move(fd));
  if (model) dev->set_explainer([model](int code) { return model->take_refusal(code); });
  return dev;
}

Result<> SimMount::fuse_available() {
  static const Result<> answer = []() -> Result<> {
    ScopedFd fd(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    if (!fd) return fail_errno("open /dev/fuse");
    fd.reset();
    auto mount = create();
    if (!mount) return std::unexpected(mount.error());
    auto sim = std::make_shared<SimDevice>(*find_profile("plain"),
                                           SimOptions{.state_size = 16, .seed = 1});
    auto path = (*mount)->add_device(sim, "probe");
    if (!path) return std::unexpected(path.error());
    auto dev = open_device(*path, "probe");
    if (!dev) return std::unexpected(dev.error());
    // Regular FUSE files forward only restricted ioctls; make sure ours arrive.
    if (auto info = (*dev)->device_info(); !info) return std::unexpected(info.error());
    dev->reset();  // close the device file before unmounting
    return (*mount)->unmount();
  }();
  return answer;
}

void SimMount::abort_all_connections_of_this_process() noexcept {
  fuse_cleanup::abort_registered(/*detach=*/true);
}

int SimMount::cleanup_stale_mounts() {
  return fuse_cleanup::cleanup_stale_mounts();
}

}  // namespace vfio::sim
