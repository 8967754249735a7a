// The pipe stage's placements: the migrate benchmark's pipe ceiling is the faster of the two
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

TEST(PipeStage, EveryPlacementMovesEveryByte) {
  for (auto placement : {PipePlacement::kAny, PipePlacement::kOneCpu, PipePlacement::kTwoCpus}) {
    auto pass = pipe_stage(1 << 20, 64 << 10, kTotal, placement);
    if (!pass && pass.error().code == EINVAL && placement == PipePlacement::kTwoCpus) continue;
    ASSERT_TRUE(pass) << pass.error().describe();
    EXPECT_EQ(pass->bytes, kTotal);
    EXPECT_GT(pass->calls, 0u);
  }
}

// A process allowed one CPU cannot put the writer and the reader on two: a ceiling measured
// "on two CPUs" there would be a one-CPU figure under the wrong name.
TEST(PipeStage, TwoCpusAreRefusedWhereOnlyOneIsAllowed) {
  std::thread confined([] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu(), &set);
    ASSERT_EQ(::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set), 0);
    auto two = pipe_stage(1 << 20, 64 << 10, kTotal, PipePlacement::kTwoCpus);
    ASSERT_FALSE(two);
    EXPECT_EQ(two.error().code, EINVAL);
    auto one = pipe_stage(1 << 20, 64 << 10, kTotal, PipePlacement::kOneCpu);
    ASSERT_TRUE(one) << one.error().describe();
    EXPECT_EQ(one->bytes, kTotal);
  });
  confined.join();
}

}  // namespace
}  // namespace vfio::bench
