// conform's scratch room: bytes kept across growth, zeros where asked, and a big room that costs
// only what is written.
#include "conform/room.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

namespace vfio::conform::detail {
namespace {

TEST(Room, KeepsItsBytesWhileItGrows) {
  Room room;
  room.resize(10);
  std::fill_n(room.data(), 10, std::byte{7});
  room.resize(3 << 20);  // moved by mremap, not copied: the bytes come along
  EXPECT_EQ(room.size(), 3u << 20);
  EXPECT_TRUE(
      std::all_of(room.data(), room.data() + 10, [](std::byte b) { return b == std::byte{7}; }));
  room.resize(0);
  EXPECT_TRUE(room.empty());
  room.resize(10);  // within the mapping: still there
  EXPECT_EQ(room.data()[9], std::byte{7});
}

TEST(Room, ZeroFromClearsWhatWasWritten) {
  Room room;
  room.resize(5 * 4096 + 100);
  std::memset(room.data(), 0xff, room.size());
  room.zero_from(4096 + 17);  // mid-page: the rest of that page, then whole pages
  const auto b = room.bytes();
  EXPECT_TRUE(std::all_of(b.begin(), b.begin() + 4096 + 17,
                          [](std::byte x) { return x == std::byte{0xff}; }));
  EXPECT_TRUE(
      std::all_of(b.begin() + 4096 + 17, b.end(), [](std::byte x) { return x == std::byte{0}; }));
}

// overflow/huge-write's room: a stream, then 1 GiB that reads as zeros.
TEST(Room, AHugeRoomReadsAsZerosBeyondWhatWasWritten) {
  Room room;
  ASSERT_TRUE(room.try_resize((1ULL << 30) + 4096));
  room.data()[0] = std::byte{1};
  room.zero_from(4096);
  EXPECT_EQ(room.data()[0], std::byte{1});
  EXPECT_EQ(room.data()[(1ULL << 30) + 4095], std::byte{0});
  EXPECT_EQ(room.data()[1ULL << 29], std::byte{0});
}

}  // namespace
}  // namespace vfio::conform::detail
