// The matcher: nth, every, after, state, prob (seeded), times, side; the fire log and trace.
#include "faults/injector.h"

#include <gtest/gtest.h>

namespace vfio::faults {
namespace {

using uapi::State;

Injector make(std::string_view text) {
  auto p = parse_plan(text);
  EXPECT_TRUE(p) << (p ? "" : p.error().message);
  return Injector(p ? *p : Plan{});
}

// Which of `calls` reads (1-based) a fault fired on.
std::vector<int> fires(Injector& inj, int calls, std::size_t bytes = 100, Side side = Side::kSource,
                       std::optional<State> state = std::nullopt) {
  std::vector<int> out;
  CallFacts facts;
  facts.current_state = [state] { return state; };
  for (int i = 1; i <= calls; ++i) {
    auto t = inj.begin({side, Op::kRead, {}, {}, bytes}, facts);
    if (t.effects.err) out.push_back(i);
    inj.end(t, bytes, false);
  }
  return out;
}

TEST(Injector, NthFiresOnceByDefault) {
  auto inj = make("read nth=3 -> errno=EIO");
  EXPECT_EQ(fires(inj, 6), (std::vector<int>{3}));
  auto again = make("read nth=3 times=2 -> errno=EIO");
  EXPECT_EQ(fires(again, 6), (std::vector<int>{3, 4}));
}

TEST(Injector, EveryAndTimes) {
  auto inj = make("read every=2 -> errno=EIO");
  EXPECT_EQ(fires(inj, 7), (std::vector<int>{2, 4, 6}));
  auto limited = make("read every=2 times=2 -> errno=EIO");
  EXPECT_EQ(fires(limited, 9), (std::vector<int>{2, 4}));
}

TEST(Injector, AfterCountsBytesOfMatchingCalls) {
  auto inj = make("read after=250 times=1 -> errno=EIO");
  EXPECT_EQ(fires(inj, 5, 100), (std::vector<int>{4}));  // 300 bytes had passed by call 4
}

TEST(Injector, StateAndSide) {
  auto inj = make("read state=SC -> errno=EIO");
  EXPECT_TRUE(fires(inj, 3, 1, Side::kSource, State::kStop).empty());
  EXPECT_EQ(fires(inj, 2, 1, Side::kSource, State::kStopCopy), (std::vector<int>{1, 2}));
  auto dst = make("read side=dst -> errno=EIO");
  EXPECT_TRUE(fires(dst, 3, 1, Side::kSource).empty());
  EXPECT_EQ(fires(dst, 1, 1, Side::kDestination), (std::vector<int>{1}));
}

TEST(Injector, ProbabilityIsSeeded) {
  auto a = make("seed 7\nread prob=0.3 -> errno=EIO");
  auto b = make("seed 7\nread prob=0.3 -> errno=EIO");
  auto c = make("seed 8\nread prob=0.3 -> errno=EIO");
  auto fa = fires(a, 200), fb = fires(b, 200), fc = fires(c, 200);
  EXPECT_EQ(fa, fb);
  EXPECT_NE(fa, fc);
  EXPECT_GT(fa.size(), 30u);
  EXPECT_LT(fa.size(), 90u);
  auto never = make("read prob=0 -> errno=EIO");
  EXPECT_TRUE(fires(never, 50).empty());
}

TEST(Injector, SetArcsAndLogAndTrace) {
  auto inj = make("set:S>SC -> errno=EIO land=ERROR");
  inj.set_recording(true);
  State cur = State::kRunning;
  CallFacts facts;
  facts.current_state = [&] { return std::optional(cur); };
  auto t1 =
      inj.begin({Side::kSource, Op::kSet, uapi::Feature::kMigDeviceState, State::kStop, 0}, facts);
  EXPECT_FALSE(t1.effects.err);
  inj.end(t1, 0, false);
  cur = State::kStop;
  auto t2 = inj.begin(
      {Side::kSource, Op::kSet, uapi::Feature::kMigDeviceState, State::kStopCopy, 0}, facts);
  EXPECT_EQ(t2.effects.err, EIO);
  EXPECT_EQ(t2.effects.land, State::kError);
  inj.end(t2, 0, true);
  auto fired = inj.fired();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].rule, "set:S>SC -> errno=EIO land=ERROR");
  EXPECT_EQ(fired[0].op, "set:S>SC");
  EXPECT_EQ(fired[0].call, 1u);
  auto trace = inj.trace();
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0].where, "set:R>S");
  EXPECT_EQ(trace[1].where, "set:S>SC");
  EXPECT_TRUE(trace[1].failed);
}

TEST(Injector, LandDefaultsToEio) {
  auto inj = make("set:SC -> land=S");
  auto t =
      inj.begin({Side::kSource, Op::kSet, uapi::Feature::kMigDeviceState, State::kStopCopy, 0}, {});
  EXPECT_EQ(t.effects.err, EIO);
}

TEST(Injector, AnyOnlyWhereEveryFaultApplies) {
  auto inj = make("any -> eof");
  auto w = inj.begin({Side::kSource, Op::kWrite, {}, {}, 1}, {});
  EXPECT_FALSE(w.effects.eof);
  auto r = inj.begin({Side::kSource, Op::kRead, {}, {}, 1}, {});
  EXPECT_TRUE(r.effects.eof);
}

// The hook sees every call as it arrives, before the rules: also the one a fault then fails.
TEST(Injector, CallHookSeesEachCallBeforeTheRules) {
  auto inj = make("set:SC -> errno=EIO");
  std::vector<std::pair<Op, std::optional<State>>> seen;
  std::size_t fired_when_seen = 0;
  inj.set_call_hook([&](const Call& c) {
    seen.emplace_back(c.op, c.target);
    fired_when_seen = inj.fired().size();
  });
  auto r = inj.begin({Side::kSource, Op::kRead, {}, {}, 1}, {});
  inj.end(r, 1, false);
  auto t =
      inj.begin({Side::kSource, Op::kSet, uapi::Feature::kMigDeviceState, State::kStopCopy, 0}, {});
  EXPECT_EQ(t.effects.err, EIO);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::pair(Op::kRead, std::optional<State>()));
  EXPECT_EQ(seen[1], std::pair(Op::kSet, std::optional(State::kStopCopy)));
  EXPECT_EQ(fired_when_seen, 0u);  // called before the rule fired
  EXPECT_EQ(inj.fired().size(), 1u);
}

TEST(Injector, TraceHoldsTheRequestedStateAndTheOffset) {
  auto inj = make("");
  inj.set_recording(true);
  auto set = inj.begin({.side = Side::kDestination,
                        .op = Op::kSet,
                        .feature = uapi::Feature::kMigDeviceState,
                        .target = State::kResuming},
                       {});
  inj.end(set, 0, true);
  auto cfg = inj.begin(
      {.side = Side::kDestination, .op = Op::kConfigWrite, .size = 4, .offset = 0x3c}, {});
  inj.end(cfg, 4, false);
  auto trace = inj.trace();
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0].target, State::kResuming);
  EXPECT_TRUE(trace[0].failed);
  EXPECT_EQ(trace[1].target, std::nullopt);
  EXPECT_EQ(trace[1].offset, 0x3cu);
  EXPECT_EQ(trace[1].bytes, 4u);
}

}  // namespace
}  // namespace vfio::faults
