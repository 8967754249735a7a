#include "core/atomic_file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <utility>

namespace vfio {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string temp_name(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  return dir + "." + base + ".vfio-mig-" + std::to_string(::getpid()) + ".tmp";
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return fd >= 0 && ::poll(&p, 1, 0) > 0;
}

Result<> close_checked(int fd, const std::string& what) {
  // Linux releases the fd even when close() fails; retrying could close another thread's.
  if (::close(fd) < 0 && errno != EINTR) return fail_errno(what + ": close");
  return {};
}

}  // namespace

AtomicFile::AtomicFile(int fd, std::string path, std::string temp, int cancel_fd)
    : fd_(fd), cancel_fd_(cancel_fd), path_(std::move(path)), temp_(std::move(temp)) {}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      cancel_fd_(other.cancel_fd_),
      path_(std::move(other.path_)),
      temp_(std::exchange(other.temp_, {})) {}

AtomicFile::~AtomicFile() {
  discard();
}

Result<AtomicFile> AtomicFile::create(const std::string& path, int cancel_fd) {
  if (path == "-") {
    const int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return fail_errno("stdout");
    return AtomicFile(fd, "stdout", {}, cancel_fd);
  }
  struct stat st;
  const bool exists = ::stat(path.c_str(), &st) == 0;
  // A symbolic link stays one: the file it names is what gets replaced.
  struct stat link;
  if (exists && S_ISREG(st.st_mode) && ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    char* real = ::realpath(path.c_str(), nullptr);
    if (!real) return fail_errno("cannot resolve " + path);
    const std::string target = real;
    std::free(real);
    return create(target, cancel_fd);
  }
  if (exists && S_ISDIR(st.st_mode)) return fail(EISDIR, "cannot create " + path);
  if (exists && !S_ISREG(st.st_mode)) {
    // A FIFO, a device, /dev/null: no rename can replace it, so it is written as it is. A
    // FIFO without a reader refuses a non-blocking open (ENXIO): wait for one, cancellably.
    int fd;
    while ((fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK)) < 0 && errno == ENXIO) {
      pollfd p{cancel_fd, POLLIN, 0};
      if (::poll(&p, cancel_fd >= 0 ? 1 : 0, 50) > 0) return fail(ECANCELED, path + ": cancelled");
    }
    if (fd < 0) return fail_errno("cannot open " + path);
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
      auto err = fail_errno("cannot open " + path);
      ::close(fd);
      return err;
    }
    return AtomicFile(fd, path, {}, cancel_fd);
  }
  const std::string temp = temp_name(path);
  const mode_t mode = exists ? (st.st_mode & 07777) : 0666;  // umask applies to a new file
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0 && errno == EEXIST) {
    // Left by an earlier process with our pid that was killed: ours to replace.
    ::unlink(temp.c_str());
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  }
  if (fd < 0) return fail_errno("cannot create " + temp);
  if (exists && ::fchmod(fd, mode) < 0) {
    auto err = fail_errno("cannot set the mode of " + temp);
    ::close(fd);
    ::unlink(temp.c_str());
    return err;
  }
  return AtomicFile(fd, path, temp, cancel_fd);
}

Result<> AtomicFile::commit() {
  if (fd_ < 0) return fail(EBADF, path_ + ": already committed or discarded");
  const int fd = std::exchange(fd_, -1);
  if (temp_.empty()) return close_checked(fd, path_);
  Result<> r;
  if (::fsync(fd) < 0) r = fail_errno(temp_ + ": fsync");
  if (auto c = close_checked(fd, temp_); r && !c) r = c;
  // The last moment a cancel can keep the old file; after the rename the output is final.
  if (r && readable(cancel_fd_)) r = fail(ECANCELED, path_ + ": cancelled; the old file is kept");
  if (r && ::rename(temp_.c_str(), path_.c_str()) < 0)
    r = fail_errno("cannot rename " + temp_ + " to " + path_);
  if (!r) {
    discard();
    return r;
  }
  temp_.clear();
  // The rename is durable only once the directory is.
  const std::string dir = directory_of(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return fail_errno("cannot open directory " + dir);
  if (::fsync(dfd) < 0) {
    auto err = fail_errno(dir + ": fsync");
    ::close(dfd);
    return err;
  }
  return close_checked(dfd, dir);
}

void AtomicFile::discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

Result<> write_file_atomically(const std::string& path, std::string_view content) {
  auto file = AtomicFile::create(path);
  if (!file) return std::unexpected(file.error());
  while (!content.empty()) {
    const ssize_t n = ::write(file->fd(), content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("cannot write " + path);
    content.remove_prefix(static_cast<std::size_t>(n));
  }
  return file->commit();
}

}  // namespace vfio
