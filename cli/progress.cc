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

bool ProgressLine::due() {
  if (!enabled_) return false;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return false;
  last_draw_ = now;
  drawn_ = true;
  return true;
}

void ProgressLine::show(std::string_view line) {
  if (due()) draw(line);
}

void ProgressLine::draw(std::string_view line) {
  fmt::print(stderr, "\r\033[K{}", line);
  std::fflush(stderr);
}

void ProgressLine::update(const Progress& p) {
  if (!due()) return;
  const auto now = last_draw_;
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
  draw(fmt::format("{}{:<9} {} {}/s{}", bar, phase_name(p.phase), format_size(p.device_bytes),
                   format_size(static_cast<std::uint64_t>(rate)), precopy));
}

void ProgressLine::finish() {
  if (enabled_ && drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace vfio::cli
