// The plan format: every WHERE, WHEN and WHAT, and errors that name line and column.
#include "faults/plan.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace vfio::faults {
namespace {

using namespace std::chrono_literals;
using uapi::Feature;
using uapi::State;

Rule one(std::string_view text) {
  auto p = parse_plan(text);
  EXPECT_TRUE(p) << (p ? "" : p.error().message);
  if (!p || p->rules.size() != 1) return {};
  return p->rules[0];
}

std::string error_of(std::string_view text) {
  auto p = parse_plan(text);
  return p ? "(parsed)" : p.error().message;
}

TEST(PlanParser, EveryWhere) {
  EXPECT_EQ(one("get:migration -> errno=EIO").where.feature, Feature::kMigration);
  EXPECT_EQ(one("get:data-size -> errno=EIO").where.feature, Feature::kMigDataSize);
  EXPECT_EQ(one("probe:dma-start -> errno=EIO").where.op, Op::kProbe);
  EXPECT_EQ(one("set:dma-stop -> errno=EIO").where.feature, Feature::kDmaLoggingStop);
  EXPECT_EQ(one("get:dma-report -> errno=EIO").where.feature, Feature::kDmaLoggingReport);
  EXPECT_EQ(one("set:state -> errno=EIO").where.feature, Feature::kMigDeviceState);
  Rule to = one("set:SC -> errno=EIO");
  EXPECT_EQ(to.where.to, State::kStopCopy);
  EXPECT_FALSE(to.where.from);
  EXPECT_EQ(one("set:stop_copy -> errno=EIO").where.to, State::kStopCopy);
  Rule arc = one("set:S>SC -> errno=EIO");
  EXPECT_EQ(arc.where.from, State::kStop);
  EXPECT_EQ(arc.where.to, State::kStopCopy);
  for (auto [name, op] : {std::pair{"reset", Op::kReset},
                          {"read", Op::kRead},
                          {"write", Op::kWrite},
                          {"precopy-info", Op::kPrecopyInfo},
                          {"open", Op::kOpen},
                          {"close", Op::kClose},
                          {"config-read", Op::kConfigRead},
                          {"config-write", Op::kConfigWrite},
                          {"send", Op::kSend},
                          {"recv", Op::kRecv},
                          {"any", Op::kAny}}) {
    EXPECT_EQ(one(std::string(name) + " -> errno=EIO").where.op, op) << name;
  }
}

TEST(PlanParser, EveryWhen) {
  Rule r = one("read nth=3 after=1M state=SC prob=0.5 times=2 side=src -> errno=EIO");
  EXPECT_EQ(r.when.nth, 3u);
  EXPECT_EQ(r.when.after, 1u << 20);
  EXPECT_EQ(r.when.state, State::kStopCopy);
  EXPECT_EQ(r.when.prob, 0.5);
  EXPECT_EQ(r.when.times, 2u);
  EXPECT_EQ(r.when.side, Side::kSource);
  EXPECT_EQ(one("write every=4 side=dst -> short=10").when.every, 4u);
  EXPECT_EQ(one("read after=64K -> eof").when.after, 64u << 10);
}

TEST(PlanParser, EveryWhat) {
  EXPECT_EQ(one("read -> errno=ENODEV").actions[0].amount, static_cast<unsigned>(ENODEV));
  EXPECT_EQ(one("read -> errno=5").actions[0].amount, 5u);
  EXPECT_EQ(one("read -> short=7").actions[0].amount, 7u);
  EXPECT_EQ(one("read -> delay=10ms").actions[0].delay, 10ms);
  EXPECT_EQ(one("read -> delay=2s").actions[0].delay, 2s);
  Rule land = one("set:SC -> land=ERROR errno=EINVAL");
  ASSERT_EQ(land.actions.size(), 2u);
  EXPECT_EQ(land.actions[0].kind, Kind::kLand);
  EXPECT_EQ(land.actions[0].state, State::kError);
  EXPECT_EQ(one("set:SC -> async-reset").actions[0].kind, Kind::kAsyncReset);
  EXPECT_EQ(one("send -> corrupt=3").actions[0].amount, 3u);
  EXPECT_EQ(one("send -> drop=2").actions[0].kind, Kind::kDrop);
  EXPECT_EQ(one("recv -> dup=2").actions[0].kind, Kind::kDup);
  EXPECT_EQ(one("send -> truncate").actions[0].kind, Kind::kTruncate);
  EXPECT_EQ(one("recv -> eof").actions[0].kind, Kind::kEof);
  EXPECT_EQ(one("read -> hang").actions[0].kind, Kind::kHang);
  EXPECT_EQ(one("read -> cancel").actions[0].kind, Kind::kCancel);
}

TEST(PlanParser, CommentsSeedAndSeparators) {
  auto p = parse_plan(
      "# a plan\n"
      "seed 42\n"
      "read nth=1 -> errno=EIO   # trailing; not a separator\n"
      "write -> short=1; send->truncate\n");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->seed, 42u);
  ASSERT_EQ(p->rules.size(), 3u);
  EXPECT_EQ(p->rules[0].text, "read nth=1 -> errno=EIO");
  EXPECT_EQ(p->rules[0].line, 3u);
  EXPECT_EQ(p->rules[2].text, "send->truncate");
  EXPECT_EQ(p->rules[2].where.op, Op::kSend);
}

TEST(PlanParser, ErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("read -> errno=EIO\n\nread nth=1 -> errno=EFOO"),
            "plan:3:21: unknown errno 'EFOO'");
  EXPECT_EQ(error_of("reed -> errno=EIO"), "plan:1:1: unknown operation 'reed'");
  EXPECT_EQ(error_of("set:S>XX -> errno=EIO"), "plan:1:7: unknown state 'XX'");
  EXPECT_EQ(error_of("get:bogus -> errno=EIO"), "plan:1:5: unknown feature 'bogus'");
  EXPECT_EQ(error_of("get -> errno=EIO"), "plan:1:1: 'get' needs a feature, e.g. get:state");
  EXPECT_EQ(error_of("read nth=0 -> eof"), "plan:1:10: bad count (want a number >= 1) '0'");
  EXPECT_EQ(error_of("read prob=2 -> eof"), "plan:1:11: bad probability (want 0..1) '2'");
  EXPECT_EQ(error_of("read often=2 -> eof"), "plan:1:6: unknown condition 'often'");
  EXPECT_EQ(error_of("read nth=1"), "plan:1:6: missing '->' and a fault");
  EXPECT_EQ(error_of("read ->"), "plan:1:6: missing a fault after '->'");
  EXPECT_EQ(error_of("read -> explode"), "plan:1:9: unknown fault 'explode'");
  EXPECT_EQ(error_of("read -> delay=fast"), "plan:1:15: bad duration (e.g. 10ms, 2s) 'fast'");
  EXPECT_EQ(error_of("write -> eof"), "plan:1:1: 'eof' cannot act on 'write'");
  EXPECT_EQ(error_of("send -> land=ERROR"), "plan:1:1: 'land' cannot act on 'send'");
  EXPECT_EQ(error_of("seed x"), "plan:1:6: bad seed 'x'");
  EXPECT_EQ(error_of("x; read -> hang=1"), "plan:1:1: unknown operation 'x'");
  EXPECT_EQ(error_of("read -> hang=1"), "plan:1:13: 'hang' takes no value");
  auto named = parse_plan("read -> errno=EFOO", "my.plan");
  ASSERT_FALSE(named);
  EXPECT_EQ(named.error().message, "my.plan:1:15: unknown errno 'EFOO'");
}

TEST(PlanParser, SizesDurationsErrnos) {
  EXPECT_EQ(parse_byte_size("1M"), 1u << 20);
  EXPECT_EQ(parse_byte_size("4KiB"), 4096u);
  EXPECT_FALSE(parse_byte_size("1X"));
  EXPECT_EQ(parse_duration("500us"), 500us);
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_EQ(parse_errno("eio"), EIO);
  EXPECT_EQ(errno_name(ENODEV), "ENODEV");
}

}  // namespace
}  // namespace vfio::faults
