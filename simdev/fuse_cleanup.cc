#include "simdev/fuse_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

namespace vfio::sim::fuse_cleanup {
namespace {

constexpr const char* kConnections = "/sys/fs/fuse/connections";
constexpr unsigned long kPfExiting = 0x4;  // PF_EXITING in /proc/<pid>/stat flags

// Undoes mountinfo's octal escapes (\040 for a space and so on).
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct ProcStat {
  char state;
  unsigned long flags;
  unsigned long long starttime;
};

// Fields 3 (state), 9 (flags) and 22 (starttime) of /proc/<pid>/stat.
std::optional<ProcStat> read_stat(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // comm may hold spaces and parentheses; the fields start after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  ProcStat st{};
  std::string skip;
  fields >> st.state;                            // 3
  for (int i = 4; i < 9; ++i) fields >> skip;    // 4..8
  fields >> st.flags;                            // 9
  for (int i = 10; i < 22; ++i) fields >> skip;  // 10..21
  fields >> st.starttime;                        // 22
  if (!fields) return std::nullopt;
  return st;
}

// Whether SIGKILL is pending in `status` (a /proc status file) in the set named `field`.
bool sigkill_in(const std::string& status, std::string_view field) {
  std::ifstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(field)) continue;
    const auto mask = std::strtoull(line.c_str() + field.size(), nullptr, 16);
    return (mask >> (SIGKILL - 1)) & 1;
  }
  return false;
}

// A process with SIGKILL pending never runs its own code again: it only waits to finish. The
// kernel also queues SIGKILL on every thread for any fatal signal it turns into a group exit.
// If one of its threads waits on a request its own (now dead) server thread had taken, it
// stays in D state until the connection is aborted, so such an owner counts as gone.
bool sigkill_pending(const std::string& pid) {
  const std::string proc = "/proc/" + pid;
  if (sigkill_in(proc + "/status", "ShdPnd:")) return true;
  if (DIR* tasks = ::opendir((proc + "/task").c_str())) {
    bool pending = false;
    while (dirent* t = ::readdir(tasks)) {
      if (t->d_name[0] == '.') continue;
      if (sigkill_in(proc + "/task/" + t->d_name + "/status", "SigPnd:")) pending = true;
    }
    ::closedir(tasks);
    return pending;
  }
  return false;
}

// The owner tag in a mountpoint's last component: "vfio-mig-sim.<pid>.<starttime>.XXXXXX".
std::optional<std::pair<std::string, std::string>> parse_owner(const std::string& mountpoint) {
  const auto slash = mountpoint.rfind('/');
  std::string base = mountpoint.substr(slash == std::string::npos ? 0 : slash + 1);
  if (!base.starts_with(kMountPrefix)) return std::nullopt;
  base = base.substr(std::strlen(kMountPrefix));
  const auto a = base.find('.');
  const auto b = a == std::string::npos ? a : base.find('.', a + 1);
  if (b == std::string::npos) return std::nullopt;
  std::string pid = base.substr(0, a), start = base.substr(a + 1, b - a - 1);
  auto digits = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (!digits(pid) || !digits(start)) return std::nullopt;
  return std::pair{pid, start};
}

// The registry: written under no lock by one creator at a time per slot (claimed by CAS on
// `dev`), read from signal handlers. A slot is usable when `ready` is set.
struct Slot {
  std::atomic<unsigned long> dev{0};
  std::atomic<bool> ready{false};
  char mountpoint[256];
};
Slot g_slots[kMaxRegistered];

// Small async-signal-safe decimal formatter.
char* put_decimal(char* p, unsigned long v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

// Writes "1" to the connection's abort file; async-signal-safe.
bool write_abort(unsigned long dev) {
  char path[96];
  const char* prefix = "/sys/fs/fuse/connections/";
  char* p = path;
  for (const char* s = prefix; *s;) *p++ = *s++;
  p = put_decimal(p, dev);
  for (const char* s = "/abort"; *s;) *p++ = *s++;
  *p = '\0';
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, "1", 1) == 1;
  ::close(fd);
  return ok;
}

}  // namespace

std::vector<SimMountEntry> sim_mounts() {
  std::vector<SimMountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint, word;
    fields >> id >> parent >> devno >> root >> mountpoint;
    while (fields >> word && word != "-") {
    }
    std::string fstype, source;
    fields >> fstype >> source;
    if (!(fstype == "fuse" || fstype.starts_with("fuse.")) || source != kFsName) continue;
    unsigned major = 0, minor = 0;
    if (std::sscanf(devno.c_str(), "%u:%u", &major, &minor) != 2) continue;
    // The kernel's internal dev_t (MKDEV), which names the fusectl directory.
    out.push_back({unescape(mountpoint), (static_cast<unsigned long>(major) << 20) | minor});
  }
  return out;
}

std::string owner_tag() {
  auto st = read_stat("self");
  return fmt::format("{}.{}", ::getpid(), st ? st->starttime : 0);
}

bool owner_alive(const std::string& mountpoint) {
  auto owner = parse_owner(mountpoint);
  if (!owner) return true;
  auto st = read_stat(owner->first);
  if (!st) return false;                                             // gone
  if (std::to_string(st->starttime) != owner->second) return false;  // pid reused
  // A dying process may hang on its own mount: the leader is a zombie or exiting, or the
  // process was killed (SIGKILL pending) while a thread waits on its own mount.
  if (st->state == 'Z' || st->state == 'X' || (st->flags & kPfExiting)) return false;
  return !sigkill_pending(owner->first);
}

Result<> ensure_fusectl() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" - fusectl ") != std::string::npos) return {};
  }
  if (::mount("fusectl", kConnections, "fusectl", 0, nullptr) < 0 && errno != EBUSY)
    return fail_errno(fmt::format("mount fusectl at {}", kConnections));
  return {};
}

Result<> abort_connection(unsigned long dev) {
  if (auto r = ensure_fusectl(); !r) return r;
  if (!write_abort(dev))
    return fail_errno(fmt::format("abort FUSE connection {} through {}", dev, kConnections));
  return {};
}

int cleanup_stale_mounts() {
  int removed = 0;
  for (const auto& m : sim_mounts()) {
    if (owner_alive(m.mountpoint)) continue;
    // Abort first: a detach alone would leave a hung caller (and the superblock) behind.
    (void)abort_connection(m.dev);
    if (::umount2(m.mountpoint.c_str(), MNT_DETACH) == 0) ++removed;
    ::rmdir(m.mountpoint.c_str());
  }
  // Directories whose mount is already gone (a crash between unmount and rmdir).
  if (DIR* dir = ::opendir("/tmp")) {
    while (dirent* e = ::readdir(dir)) {
      const std::string path = std::string("/tmp/") + e->d_name;
      if (std::string_view(e->d_name).starts_with(kMountPrefix) && !owner_alive(path))
        ::rmdir(path.c_str());  // fails harmlessly while still mounted or not empty
    }
    ::closedir(dir);
  }
  return removed;
}

void register_mount(unsigned long dev, const std::string& mountpoint) {
  if (dev == 0 || mountpoint.size() >= sizeof(Slot::mountpoint)) return;
  for (Slot& s : g_slots) {
    unsigned long expected = 0;
    if (!s.dev.compare_exchange_strong(expected, dev)) continue;
    std::memcpy(s.mountpoint, mountpoint.c_str(), mountpoint.size() + 1);
    s.ready.store(true, std::memory_order_release);
    return;
  }
}

void unregister_mount(unsigned long dev) {
  for (Slot& s : g_slots) {
    if (s.dev.load() != dev || !s.ready.load(std::memory_order_acquire)) continue;
    s.ready.store(false);
    s.dev.store(0);
    return;
  }
}

void forget_registered() noexcept {
  for (Slot& s : g_slots) {
    s.ready.store(false);
    s.dev.store(0);
  }
}

void abort_registered(bool detach) noexcept {
  for (Slot& s : g_slots) {
    if (!s.ready.load(std::memory_order_acquire)) continue;
    write_abort(s.dev.load());
    if (detach) {
      ::umount2(s.mountpoint, MNT_DETACH);
      ::rmdir(s.mountpoint);
    }
  }
}

}  // namespace vfio::sim::fuse_cleanup
