#include "core/state_machine.h"

#include <gtest/gtest.h>

namespace vfio {
namespace {

using uapi::State;
constexpr std::uint64_t kAll =
    uapi::kMigrationStopCopy | uapi::kMigrationP2p | uapi::kMigrationPreCopy;
constexpr std::uint64_t kStopCopyOnly = uapi::kMigrationStopCopy;
constexpr std::uint64_t kNoP2p = uapi::kMigrationStopCopy | uapi::kMigrationPreCopy;

TEST(StateMachine, RefusesErrorTargetsAndUnsupportedStates) {
  EXPECT_FALSE(next_arc(State::kRunning, State::kError, kAll));
  EXPECT_FALSE(next_arc(State::kError, State::kRunning, kAll));
  EXPECT_FALSE(next_arc(State::kStopCopy, State::kPreCopy, kAll));
  EXPECT_FALSE(next_arc(State::kStopCopy, State::kPreCopyP2p, kAll));
  EXPECT_FALSE(next_arc(State::kRunning, State::kRunningP2p, kStopCopyOnly));
  EXPECT_FALSE(next_arc(State::kRunning, State::kPreCopy, kStopCopyOnly));
  EXPECT_FALSE(next_arc(static_cast<State>(9), State::kStop, kAll));
}

TEST(StateMachine, WalksThroughUnsupportedIntermediates) {
  using V = std::vector<State>;
  EXPECT_EQ(transition_path(State::kRunning, State::kStop, kStopCopyOnly), V{State::kStop});
  EXPECT_EQ(transition_path(State::kRunning, State::kStopCopy, kStopCopyOnly),
            (V{State::kStop, State::kStopCopy}));
  EXPECT_EQ(transition_path(State::kRunning, State::kStopCopy, kAll),
            (V{State::kRunningP2p, State::kStop, State::kStopCopy}));
  EXPECT_EQ(transition_path(State::kPreCopy, State::kStopCopy, kNoP2p), V{State::kStopCopy});
  EXPECT_EQ(transition_path(State::kPreCopy, State::kStopCopy, kAll),
            (V{State::kPreCopyP2p, State::kStopCopy}));
  EXPECT_EQ(transition_path(State::kResuming, State::kRunning, kAll),
            (V{State::kStop, State::kRunningP2p, State::kRunning}));
}

TEST(StateMachine, EveryPathIsShortAndKeepsCopyStatesAtItsEnds) {
  for (std::uint64_t flags : {kAll, kStopCopyOnly, kNoP2p, kStopCopyOnly | uapi::kMigrationP2p}) {
    for (std::uint32_t c = 1; c < uapi::kStateCount; ++c) {
      for (std::uint32_t t = 1; t < uapi::kStateCount; ++t) {
        auto cur = static_cast<State>(c), target = static_cast<State>(t);
        if (!state_supported(cur, flags) || !state_supported(target, flags) || c == t) continue;
        auto path = transition_path(cur, target, flags);
        bool refused =
            cur == State::kStopCopy && (target == State::kPreCopy || target == State::kPreCopyP2p);
        if (refused) {
          EXPECT_TRUE(path.empty());
          continue;
        }
        ASSERT_FALSE(path.empty()) << c << "->" << t << " flags " << flags;
        EXPECT_LE(path.size(), 4u);
        EXPECT_EQ(path.back(), target);
        for (std::size_t i = 0; i + 1 < path.size(); ++i) {
          EXPECT_TRUE(state_supported(path[i], flags));
          EXPECT_NE(path[i], State::kStopCopy);
          EXPECT_NE(path[i], State::kPreCopy);
          // The one exception: with P2P, PC->SC passes through PCP (the kernel's table).
          if (!(cur == State::kPreCopy && target == State::kStopCopy)) {
            EXPECT_NE(path[i], State::kPreCopyP2p);
          }
        }
      }
    }
  }
}

TEST(StateMachine, ArcEffectsMatchTheContract) {
  EXPECT_EQ(arc_effect(State::kStop, State::kStopCopy), ArcEffect::kOpensSave);
  EXPECT_EQ(arc_effect(State::kRunning, State::kPreCopy), ArcEffect::kOpensSave);
  EXPECT_EQ(arc_effect(State::kRunningP2p, State::kPreCopyP2p), ArcEffect::kOpensSave);
  EXPECT_EQ(arc_effect(State::kStop, State::kResuming), ArcEffect::kOpensResume);
  EXPECT_EQ(arc_effect(State::kStopCopy, State::kStop), ArcEffect::kEndsSave);
  EXPECT_EQ(arc_effect(State::kResuming, State::kStop), ArcEffect::kConsumesResume);
  EXPECT_EQ(arc_effect(State::kPreCopy, State::kStopCopy), ArcEffect::kNone);
}

TEST(StateNames, ParseBothSpellings) {
  EXPECT_EQ(uapi::parse_state("stop_copy"), State::kStopCopy);
  EXPECT_EQ(uapi::parse_state("PCP"), State::kPreCopyP2p);
  EXPECT_FALSE(uapi::parse_state("sideways"));
  EXPECT_EQ(uapi::state_name(static_cast<State>(42)), "UNKNOWN");
}

}  // namespace
}  // namespace vfio
