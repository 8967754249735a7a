#include "faults/device_checks.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "core/checksum.h"
#include "core/dirty_tracking.h"
#include "core/feature.h"
#include "core/retry.h"

namespace vfio::faults {

using uapi::State;

std::string StateDigest::describe() const {
  return fmt::format("{} bytes, crc32c {:08x}", length, crc);
}

Result<StateDigest> read_state_digest(Device& device) {
  if (auto r = request_device_state(device, State::kStop); !r) return std::unexpected(r.error());
  auto fd = request_device_state(device, State::kStopCopy);
  if (!fd) {
    (void)request_device_state(device, State::kRunning);
    return std::unexpected(fd.error());
  }
  StateDigest digest;
  std::vector<std::byte> buffer(1 << 20);
  Result<> read_ok;
  while (true) {
    auto n = retry_transient([&] { return device.read(*fd, buffer); });
    if (!n) {
      read_ok = std::unexpected(n.error());
      break;
    }
    if (*n == 0) break;
    digest.crc = crc32c(digest.crc, std::span(buffer).first(*n));
    digest.length += *n;
  }
  (void)device.close(*fd);
  if (auto r = request_device_state(device, State::kStop); !r) return std::unexpected(r.error());
  if (auto r = request_device_state(device, State::kRunning); !r) return std::unexpected(r.error());
  if (!read_ok) return std::unexpected(read_ok.error());
  return digest;
}

Result<std::string> bring_to_running(Device& device) {
  auto state = query_device_state(device);
  if (!state) return std::unexpected(state.error());
  if (*state == State::kRunning) return std::string();
  std::string done;
  if (*state == State::kStop && request_device_state(device, State::kRunning)) {
    done = "resumed from STOP";
  } else {
    if (auto r = device.reset(); !r) return std::unexpected(r.error());
    done = fmt::format("reset: it was in {}", uapi::state_name(*state));
  }
  auto now = query_device_state(device);
  if (!now) return std::unexpected(now.error());
  if (*now != State::kRunning)
    return fail(EIO, fmt::format("{}, yet it is in {}", done, uapi::state_name(*now)));
  return done;
}

std::optional<std::string> dma_logging_unusable(Device& device, const uapi::DmaLoggingRange& range,
                                                std::uint64_t page_size) {
  if (!probe_feature(device, uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet))
    return std::string();
  if (auto r = dma_logging_start(device, page_size, std::span(&range, 1)); !r)
    return "DMA logging is advertised but START fails: " + r.error().describe();
  auto report = dma_logging_report(device, range.iova, range.length, page_size);
  auto stopped = dma_logging_stop(device);
  if (!report) return "DMA logging is advertised but REPORT fails: " + report.error().describe();
  if (!stopped) return "DMA logging is advertised but STOP fails: " + stopped.error().describe();
  return std::nullopt;
}

std::map<int, std::string> open_fds() {
  std::map<int, std::string> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return fds;
  const int own = ::dirfd(dir);
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || end == e->d_name || fd == own) continue;
    char target[512];
    const ssize_t n = ::readlinkat(own, e->d_name, target, sizeof target - 1);
    fds[static_cast<int>(fd)] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
  }
  ::closedir(dir);
  return fds;
}

std::vector<std::string> new_fds(const std::map<int, std::string>& before,
                                 const std::map<int, std::string>& after) {
  std::vector<std::string> out;
  for (const auto& [fd, target] : after) {
    auto was = before.find(fd);
    if (was == before.end() || was->second != target)
      out.push_back(fmt::format("fd {} -> {}", fd, target));
  }
  return out;
}

Result<> run_check_command(const std::string& command,
                           const std::vector<std::pair<std::string, std::string>>& env,
                           std::chrono::milliseconds limit) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail(errno, "pipe for --check");
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    ::close(out[0]);
    ::close(out[1]);
    return fail(e, "fork for --check");
  }
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(out[1], STDERR_FILENO);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::setpgid(0, 0);  // a timeout ends the command's own children too
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // as the child does: whichever runs first, a timeout reaches the group
  ::close(out[1]);
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;  // the command and whatever it started closed their output
    if (output.size() < 4096) output.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  // The first lines of what it said, on one line.
  if (output.size() > 300) output = output.substr(0, 300) + "...";
  for (char& c : output)
    if (c == '\n') c = ' ';
  std::string how = timed_out ? fmt::format("still running after {} ms: killed", limit.count())
                    : WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
                                        : fmt::format("killed by signal {}", WTERMSIG(status));
  return fail(EIO,
              fmt::format("--check '{}': {}{}", command, how, output.empty() ? "" : ": " + output));
}

}  // namespace vfio::faults
