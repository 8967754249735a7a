#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "cli/args.h"

namespace vfio::cli {

ProgressLine::ProgressLine(bool enabled)
    : enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

bool ProgressLine::stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

void ProgressLine::update(const Progress& p) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  double seconds = std::chrono::duration<double>(now - start_).count();
  double rate = seconds > 0 ? static_cast<double>(p.device_bytes) / seconds : 0;
  constexpr int kWidth = 30;
  std::string bar;
  if (p.estimate > 0) {
    double fraction =
        std::min(1.0, static_cast<double>(p.device_bytes) / static_cast<double>(p.estimate));
    int filled = static_cast<int>(fraction * kWidth);
    bar =
        fmt::format("[{:#<{}}{:.<{}}] {:3.0f}% ", "", filled, "", kWidth - filled, fraction * 100);
  }
  std::string precopy;
  if (p.phase == Phase::kPrecopy)
    precopy = fmt::format(" iteration {} estimate {}", p.iteration, format_size(p.pending));
  fmt::print(stderr, "\r\033[K{}{:<9} {} {}/s{}", bar, phase_name(p.phase),
             format_size(p.device_bytes), format_size(static_cast<std::uint64_t>(rate)), precopy);
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (enabled_ && drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace vfio::cli
