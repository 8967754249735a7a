#include "simdev/image.h"

#include <gtest/gtest.h>

#include <vector>

namespace vfio::sim {
namespace {

std::vector<std::byte> render(std::uint64_t seed, std::uint64_t off, std::size_t len) {
  std::vector<std::byte> out(len);
  render_body(seed, off, out);
  return out;
}

TEST(Image, WordsAreLittleEndianInTheBody) {
  const auto bytes = render(42, 0, 16);
  for (std::uint64_t w = 0; w < 2; ++w)
    for (int i = 0; i < 8; ++i)
      EXPECT_EQ(std::to_integer<unsigned>(bytes[w * 8 + i]), (body_word(42, w) >> (8 * i)) & 0xff);
}

TEST(Image, UnalignedRenderMatchesAlignedRender) {
  const auto whole = render(7, 0, 256);
  for (std::size_t off = 0; off < 40; ++off) {
    for (std::size_t len : {0, 1, 3, 7, 8, 9, 15, 16, 17, 100}) {
      const auto part = render(7, off, len);
      ASSERT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + off)) << off << "+" << len;
      EXPECT_TRUE(body_matches(7, off, part));
    }
  }
}

TEST(Image, BodyMatchesDetectsEveryFlippedByte) {
  const std::uint64_t off = 5;
  auto data = render(9, off, 1100);  // spans more than one 64-word compare block
  ASSERT_TRUE(body_matches(9, off, data));
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] ^= std::byte{0x10};
    ASSERT_FALSE(body_matches(9, off, data)) << i;
    data[i] ^= std::byte{0x10};
  }
  EXPECT_FALSE(body_matches(10, off, data));
  EXPECT_FALSE(body_matches(9, off + 1, data));
}

TEST(Image, SeedsGiveDifferentBodies) {
  EXPECT_NE(render(1, 0, 64), render(2, 0, 64));
  EXPECT_EQ(render(1, 0, 64), render(1, 0, 64));
}

TEST(Image, MutatedChangesSeedDeterministically) {
  const Image a{5, 1000};
  const Image b = mutated(a);
  EXPECT_NE(a.seed, b.seed);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(b, mutated(a));
  EXPECT_NE(mutated(b), a);
}

}  // namespace
}  // namespace vfio::sim
