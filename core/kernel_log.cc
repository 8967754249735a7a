#include "core/kernel_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <sstream>
#include <utility>

#include "core/kernel_trouble_patterns.h"

namespace vfio {
namespace {

struct Pattern {
  std::regex regex;
  std::string kind;
};

const std::vector<Pattern>& patterns() {
  static const std::vector<Pattern> all = [] {
    std::vector<Pattern> out;
    std::istringstream in(kKernelTroublePatterns);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line.starts_with('#')) continue;
      const auto sep = line.find(" ## ");
      if (sep == std::string::npos) continue;
      out.push_back({std::regex(line.substr(0, sep)), line.substr(sep + 4)});
    }
    return out;
  }();
  return all;
}

}  // namespace

std::optional<std::string> kernel_trouble_kind(const std::string& message) {
  for (const auto& p : patterns())
    if (std::regex_search(message, p.regex)) return p.kind;
  return std::nullopt;
}

Result<std::regex> parse_kernel_log_ignore(const std::string& regex) {
  try {
    return std::regex(regex);
  } catch (const std::regex_error& e) {
    return fail(EINVAL, "bad kernel log ignore regex '" + regex + "': " + e.what());
  }
}

Result<KernelLog> KernelLog::open(const std::string& path,
                                  const std::optional<std::string>& ignore) {
  std::optional<std::regex> rx;
  if (ignore) {
    auto parsed = parse_kernel_log_ignore(*ignore);
    if (!parsed) return std::unexpected(parsed.error());
    rx = std::move(*parsed);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fail(errno, "cannot open the kernel log " + path);
  // /dev/kmsg: the end of the ring; a file: its end.
  if (::lseek(fd, 0, SEEK_END) < 0) {
    const int err = errno;
    ::close(fd);
    return fail(err, "cannot seek to the end of " + path);
  }
  return KernelLog(fd, std::move(rx));
}

KernelLog::KernelLog(KernelLog&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      ignore_(std::move(other.ignore_)),
      partial_(std::move(other.partial_)) {}

KernelLog::~KernelLog() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::vector<KernelTrouble>> KernelLog::since_mark() {
  std::vector<KernelTrouble> out;
  auto take = [&](std::string_view record) {
    if (record.empty() || record.front() == ' ') return;  // continuation (KEY=value)
    const auto semi = record.find(';');
    if (semi == std::string_view::npos) return;
    std::string message(record.substr(semi + 1));
    auto kind = kernel_trouble_kind(message);
    if (!kind || (ignore_ && std::regex_search(message, *ignore_))) return;
    out.push_back({std::move(*kind), std::move(message)});
  };
  // /dev/kmsg returns one record per read; a file returns chunks: split both at newlines.
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) continue;  // records overwritten before we read them
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) return fail(errno, "reading the kernel log");
    if (n == 0) break;
    partial_.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1)
      take(std::string_view(partial_).substr(start, nl - start));
    partial_.erase(0, start);
  }
  return out;
}

}  // namespace vfio
