// A one-line progress bar on stderr for long migrations; silent when stderr is not a terminal
// (CI logs get the summary only).
#pragma once

#include <chrono>

#include "core/session.h"

namespace vfio::cli {

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  ~ProgressLine() { finish(); }
  // Redraws at most ten times a second.
  void update(const Progress& p);
  // Clears the line.
  void finish();
  static bool stderr_is_terminal();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace vfio::cli
