// The channel stage's placements: the migrate benchmark's socket ceiling is the faster of the two
// pinned ones, so each must move every byte where it says, and refuse what it cannot pin.
#include "bench/stages.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <thread>

namespace vfio::bench {
namespace {

constexpr std::uint64_t kTotal = 8 << 20;

TEST(ChannelStage, EveryKindAndPlacementMovesEveryByte) {
  for (auto kind : {ChannelKind::kPipe, ChannelKind::kSocket}) {
    for (auto placement :
         {ChannelPlacement::kAny, ChannelPlacement::kOneCpu, ChannelPlacement::kTwoCpus}) {
      auto pass = channel_stage(kind, 1 << 20, 64 << 10, kTotal, placement);
      if (!pass && pass.error().code == EINVAL && placement == ChannelPlacement::kTwoCpus) continue;
      ASSERT_TRUE(pass) << pass.error().describe();
      EXPECT_EQ(pass->bytes, kTotal);
      EXPECT_GT(pass->calls, 0u);
    }
  }
}

// A process allowed one CPU cannot put the writer and the reader on two: a ceiling measured
// "on two CPUs" there would be a one-CPU figure under the wrong name.
TEST(ChannelStage, TwoCpusAreRefusedWhereOnlyOneIsAllowed) {
  std::thread confined([] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu(), &set);
    ASSERT_EQ(::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set), 0);
    auto two =
        channel_stage(ChannelKind::kSocket, 1 << 20, 64 << 10, kTotal, ChannelPlacement::kTwoCpus);
    ASSERT_FALSE(two);
    EXPECT_EQ(two.error().code, EINVAL);
    auto one =
        channel_stage(ChannelKind::kSocket, 1 << 20, 64 << 10, kTotal, ChannelPlacement::kOneCpu);
    ASSERT_TRUE(one) << one.error().describe();
    EXPECT_EQ(one->bytes, kTotal);
  });
  confined.join();
}

}  // namespace
}  // namespace vfio::bench
