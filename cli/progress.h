// A one-line progress bar on stderr for long migrations (and any one-line status, fuzz-resume's);
// silent when stderr is not a terminal (CI logs get the summary only).
#pragma once

#include <chrono>
#include <string_view>

#include "core/session.h"

namespace vfio::cli {

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  ~ProgressLine() { finish(); }
  // Redraws at most ten times a second.
  void update(const Progress& p);
  // Shows `line` in place of the last one, at most ten times a second.
  void show(std::string_view line);
  // Clears the line.
  void finish();
  static bool stderr_is_terminal();

 private:
  // Whether a redraw is due now (and from now on, the next one 100 ms later).
  bool due();
  void draw(std::string_view line);
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace vfio::cli
