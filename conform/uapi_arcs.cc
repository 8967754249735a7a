#include "conform/uapi_arcs.h"

#include <array>
#include <string_view>

namespace vfio::conform {
namespace {

using uapi::State;

// The whole path of every request on a device with all three optional flags, as the uAPI lists
// it (the shortest path; PC, PCP and SC only at its ends; SC->PC and SC->PCP refused).
// "-": refused; "": nothing to do (cur == target). Rows: current state, columns: target, both
// in uapi::State order (ERROR S R SC RS RP PC PCP). A device without a flag skips its states.
constexpr std::array<std::array<std::string_view, uapi::kStateCount>, uapi::kStateCount> kPaths = {{
    /* ERROR */ {"-", "-", "-", "-", "-", "-", "-", "-"},
    /* S     */ {"-", "", "RP R", "SC", "RS", "RP", "RP R PC", "RP PCP"},
    /* R     */ {"-", "RP S", "", "RP S SC", "RP S RS", "RP", "PC", "RP PCP"},
    /* SC    */ {"-", "S", "S RP R", "", "S RS", "S RP", "-", "-"},
    /* RS    */ {"-", "S", "S RP R", "S SC", "", "S RP", "S RP R PC", "S RP PCP"},
    /* RP    */ {"-", "S", "R", "S SC", "S RS", "", "R PC", "PCP"},
    /* PC    */ {"-", "R RP S", "R", "PCP SC", "R RP S RS", "R RP", "", "PCP"},
    /* PCP   */ {"-", "RP S", "RP R", "SC", "RP S RS", "RP", "PC", ""},
}};

std::optional<State> state_of(std::string_view token) {
  for (std::uint32_t i = 0; i < uapi::kStateCount; ++i)
    if (uapi::state_short_name(static_cast<State>(i)) == token) return static_cast<State>(i);
  return std::nullopt;
}

}  // namespace

bool uapi_has_state(State s, std::uint64_t flags) {
  switch (s) {
    case State::kRunningP2p:
      return flags & uapi::kMigrationP2p;
    case State::kPreCopy:
      return flags & uapi::kMigrationPreCopy;
    case State::kPreCopyP2p:
      return (flags & uapi::kMigrationP2p) && (flags & uapi::kMigrationPreCopy);
    default:
      return static_cast<std::uint32_t>(s) < uapi::kStateCount;
  }
}

std::optional<std::vector<State>> uapi_path(State cur, State target, std::uint64_t flags) {
  if (!uapi_has_state(cur, flags) || !uapi_has_state(target, flags)) return std::nullopt;
  const std::string_view cell =
      kPaths[static_cast<std::size_t>(cur)][static_cast<std::size_t>(target)];
  if (cell == "-") return std::nullopt;
  std::vector<State> path;
  for (std::size_t at = 0; at < cell.size();) {
    const std::size_t end = std::min(cell.find(' ', at), cell.size());
    if (auto s = state_of(cell.substr(at, end - at)); s && uapi_has_state(*s, flags))
      path.push_back(*s);
    at = end + 1;
  }
  return path;
}

Opens uapi_opens(State from, State to) {
  using enum State;
  if ((from == kStop && to == kStopCopy) || (from == kRunning && to == kPreCopy) ||
      (from == kRunningP2p && to == kPreCopyP2p))
    return Opens::kSave;
  if (from == kStop && to == kResuming) return Opens::kResume;
  return Opens::kNothing;
}

}  // namespace vfio::conform
