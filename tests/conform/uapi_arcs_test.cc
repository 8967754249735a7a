// conform's own arc table (conform/uapi_arcs) against the engine's and the simulator's
// (core/state_machine): written apart, they must agree in every cell for every flag combination,
// and the comparison must name a cell where they do not.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <set>

#include "conform/uapi_arcs.h"
#include "core/state_machine.h"

namespace vfio::conform {
namespace {

using uapi::State;
using Path = std::optional<std::vector<State>>;  // nullopt: refused
using Table = std::function<Path(State, State, std::uint64_t)>;

// Every combination of the three migration flags.
std::vector<std::uint64_t> all_flag_sets() {
  std::vector<std::uint64_t> out;
  for (std::uint64_t f = 0; f < 8; ++f) out.push_back(f);
  return out;
}

Path core_path(State cur, State target, std::uint64_t flags) {
  if (!next_arc(cur, target, flags)) return std::nullopt;
  return transition_path(cur, target, flags);
}

std::string text(const Path& p) {
  if (!p) return "refused";
  std::string out = "ok";
  for (State s : *p) out += " " + std::string(uapi::state_short_name(s));
  return out;
}

// The cells where two tables differ, as "flags F: CUR->TARGET: a vs b".
std::vector<std::string> differences(const Table& a, const Table& b) {
  std::vector<std::string> out;
  for (std::uint64_t flags : all_flag_sets())
    for (std::uint32_t c = 0; c < uapi::kStateCount; ++c)
      for (std::uint32_t t = 0; t < uapi::kStateCount; ++t) {
        const auto cur = static_cast<State>(c), target = static_cast<State>(t);
        const Path pa = a(cur, target, flags), pb = b(cur, target, flags);
        if (pa != pb)
          out.push_back(fmt::format("flags {}: {}->{}: {} vs {}", flags,
                                    uapi::state_short_name(cur), uapi::state_short_name(target),
                                    text(pa), text(pb)));
      }
  return out;
}

TEST(UapiArcs, AgreesWithTheEngineTableInEveryCellForEveryFlagCombination) {
  const auto diff = differences(uapi_path, core_path);
  EXPECT_TRUE(diff.empty()) << fmt::format("{}", fmt::join(diff, "\n"));
}

TEST(UapiArcs, TheComparisonNamesACellThatDiffers) {
  // A copy of the engine's table with one wrong cell: R->SC straight, with P2P.
  const Table altered = [](State cur, State target, std::uint64_t flags) -> Path {
    if (cur == State::kRunning && target == State::kStopCopy && (flags & uapi::kMigrationP2p))
      return std::vector{State::kStopCopy};
    return core_path(cur, target, flags);
  };
  const auto diff = differences(uapi_path, altered);
  ASSERT_EQ(diff.size(), 4u);  // the four flag sets with P2P
  EXPECT_EQ(diff[0], "flags 2: R->SC: ok RP S SC vs ok SC");
  // A refusal turned into a success differs too.
  const Table accepts_sc_pc = [](State cur, State target, std::uint64_t flags) -> Path {
    if (cur == State::kStopCopy && target == State::kPreCopy && (flags & uapi::kMigrationPreCopy))
      return std::vector{State::kPreCopy};
    return core_path(cur, target, flags);
  };
  EXPECT_EQ(differences(uapi_path, accepts_sc_pc).size(), 4u);
}

// The arcs the uAPI says a device with these flags implements.
std::set<std::pair<State, State>> listed_arcs(std::uint64_t flags) {
  using enum State;
  const bool p2p = flags & uapi::kMigrationP2p, pre = flags & uapi::kMigrationPreCopy;
  std::set<std::pair<State, State>> arcs = {
      {kResuming, kStop}, {kStop, kResuming}, {kStop, kStopCopy}, {kStopCopy, kStop}};
  if (p2p)
    arcs.insert({{kRunning, kRunningP2p},
                 {kRunningP2p, kRunning},
                 {kRunningP2p, kStop},
                 {kStop, kRunningP2p}});
  if (pre) arcs.insert({{kRunning, kPreCopy}, {kPreCopy, kRunning}});
  // With P2P too the kernel goes PC->PCP->SC: PC->SC is an arc only without P2P.
  if (pre && !p2p) arcs.insert({kPreCopy, kStopCopy});
  if (p2p && pre)
    arcs.insert({{kPreCopy, kPreCopyP2p},
                 {kPreCopyP2p, kPreCopy},
                 {kPreCopyP2p, kRunningP2p},
                 {kPreCopyP2p, kStopCopy},
                 {kRunningP2p, kPreCopyP2p}});
  if (!p2p) arcs.insert({{kRunning, kStop}, {kStop, kRunning}});
  return arcs;
}

bool saving(State s) {
  return s == State::kPreCopy || s == State::kPreCopyP2p || s == State::kStopCopy;
}

// The uAPI's rules checked on conform's table alone: every step is a listed arc, no shorter such
// path exists, and a path passes through no session state (RS, PC, PCP, SC) unless it stays in
// one save session (PC->PCP->SC: the uAPI text's "only at its ends" is too strict there).
TEST(UapiArcs, EveryPathIsAShortestWalkOverListedArcs) {
  for (std::uint64_t flags : all_flag_sets()) {
    const auto arcs = listed_arcs(flags);
    for (std::uint32_t c = 1; c < uapi::kStateCount; ++c)
      for (std::uint32_t t = 1; t < uapi::kStateCount; ++t) {
        const auto cur = static_cast<State>(c), target = static_cast<State>(t);
        const auto inner_ok = [&](State s) {
          if (s == State::kResuming) return false;
          return !saving(s) || (saving(cur) && saving(target));
        };
        const Path path = uapi_path(cur, target, flags);
        if (!path) continue;
        SCOPED_TRACE(fmt::format("flags {}: {}->{}", flags, uapi::state_short_name(cur),
                                 uapi::state_short_name(target)));
        State at = cur;
        for (std::size_t i = 0; i < path->size(); ++i) {
          EXPECT_TRUE(arcs.contains({at, (*path)[i]})) << "not a listed arc";
          if (i + 1 < path->size()) {
            EXPECT_TRUE(inner_ok((*path)[i]));
          }
          at = (*path)[i];
        }
        EXPECT_EQ(at, target);
        // Breadth-first over listed arcs, through allowed inner states only.
        std::map<State, std::size_t> dist{{cur, 0}};
        std::deque<State> queue{cur};
        while (!queue.empty()) {
          const State s = queue.front();
          queue.pop_front();
          if (s != cur && !inner_ok(s)) continue;
          for (const auto& [from, to] : arcs)
            if (from == s && !dist.contains(to)) {
              dist[to] = dist[s] + 1;
              queue.push_back(to);
            }
        }
        EXPECT_EQ(dist[target], path->size());
      }
  }
}

TEST(UapiArcs, RefusalsFollowTheText) {
  const std::uint64_t all =
      uapi::kMigrationStopCopy | uapi::kMigrationP2p | uapi::kMigrationPreCopy;
  EXPECT_FALSE(uapi_path(State::kStopCopy, State::kPreCopy, all));
  EXPECT_FALSE(uapi_path(State::kStopCopy, State::kPreCopyP2p, all));
  EXPECT_FALSE(uapi_path(State::kRunning, State::kError, all));
  EXPECT_FALSE(uapi_path(State::kError, State::kRunning, all));
  EXPECT_FALSE(uapi_path(State::kRunning, State::kRunningP2p, uapi::kMigrationStopCopy));
  EXPECT_EQ(uapi_path(State::kPreCopy, State::kStopCopy,
                      uapi::kMigrationStopCopy | uapi::kMigrationPreCopy),
            std::vector{State::kStopCopy});
  EXPECT_EQ(uapi_path(State::kRunning, State::kRunning, all), std::vector<State>{});
}

TEST(UapiArcs, SessionsOpenOnTheArcsTheTextNames) {
  for (std::uint32_t f = 0; f < uapi::kStateCount; ++f)
    for (std::uint32_t t = 0; t < uapi::kStateCount; ++t) {
      const auto from = static_cast<State>(f), to = static_cast<State>(t);
      const auto core = arc_effect(from, to);
      const Opens want = core == ArcEffect::kOpensSave     ? Opens::kSave
                         : core == ArcEffect::kOpensResume ? Opens::kResume
                                                           : Opens::kNothing;
      EXPECT_EQ(uapi_opens(from, to), want) << f << "->" << t;
    }
}

}  // namespace
}  // namespace vfio::conform
