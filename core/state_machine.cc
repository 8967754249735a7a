#include "core/state_machine.h"

#include <array>

namespace vfio {
namespace {

using uapi::State;
constexpr State S = State::kStop, R = State::kRunning, SC = State::kStopCopy, RS = State::kResuming,
                RP = State::kRunningP2p, PC = State::kPreCopy, PCP = State::kPreCopyP2p,
                E = State::kError;

// Next arc with every optional flag present (the uAPI document's table); E = refused.
// Rows: current state, columns: target, both indexed by the uapi::State value.
constexpr std::array<std::array<State, uapi::kStateCount>, uapi::kStateCount> kNext = {{
    /* ERROR */ {E, E, E, E, E, E, E, E},
    /* S     */ {E, S, RP, SC, RS, RP, RP, RP},
    /* R     */ {E, RP, R, RP, RP, RP, PC, RP},
    /* SC    */ {E, S, S, SC, S, S, E, E},
    /* RS    */ {E, S, S, S, RS, S, S, S},
    /* RP    */ {E, S, R, S, S, RP, R, PCP},
    /* PC    */ {E, R, R, PCP, R, R, PC, PCP},
    /* PCP   */ {E, RP, RP, SC, RP, RP, PC, PCP},
}};

std::size_t index(State s) {
  return static_cast<std::size_t>(s);
}

}  // namespace

bool state_supported(State s, std::uint64_t flags) {
  switch (s) {
    case S:
    case R:
    case SC:
    case RS:
    case E:
      return true;
    case RP:
      return flags & uapi::kMigrationP2p;
    case PC:
      return flags & uapi::kMigrationPreCopy;
    case PCP:
      return (flags & uapi::kMigrationP2p) && (flags & uapi::kMigrationPreCopy);
  }
  return false;
}

std::optional<State> next_arc(State cur, State target, std::uint64_t flags) {
  if (index(cur) >= uapi::kStateCount || index(target) >= uapi::kStateCount) return std::nullopt;
  if (target == E || cur == E) return std::nullopt;
  if (!state_supported(cur, flags) || !state_supported(target, flags)) return std::nullopt;
  if (cur == target) return cur;
  // An arc landing on an unsupported state is looked up again from there (at most twice).
  State next = cur;
  do {
    next = kNext[index(next)][index(target)];
    if (next == E) return std::nullopt;
  } while (!state_supported(next, flags));
  return next;
}

std::vector<State> transition_path(State cur, State target, std::uint64_t flags) {
  std::vector<State> path;
  State at = cur;
  while (at != target) {
    auto next = next_arc(at, target, flags);
    if (!next) return {};
    path.push_back(*next);
    at = *next;
  }
  return path;
}

ArcEffect arc_effect(State from, State to) {
  if ((from == S && to == SC) || (from == R && to == PC) || (from == RP && to == PCP))
    return ArcEffect::kOpensSave;
  if (from == S && to == RS) return ArcEffect::kOpensResume;
  if ((from == SC && to == S) || (from == PC && to == R) || (from == PCP && to == RP))
    return ArcEffect::kEndsSave;
  if (from == RS && to == S) return ArcEffect::kConsumesResume;
  return ArcEffect::kNone;
}

}  // namespace vfio
