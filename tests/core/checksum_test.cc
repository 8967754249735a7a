#include "core/checksum.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace vfio {
namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s));
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  // The CRC-32C check value from the iSCSI specification's test vectors.
  EXPECT_EQ(crc32c(0, bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(0, {}), 0u);
}

TEST(Crc32c, ExtendsAcrossChunksOfAnySize) {
  std::vector<std::byte> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 37 + 11);
  std::uint32_t whole = crc32c(0, data);
  for (std::size_t cut : {1u, 7u, 8u, 9u, 500u, 999u}) {
    std::uint32_t split =
        crc32c(crc32c(0, std::span(data).first(cut)), std::span(data).subspan(cut));
    EXPECT_EQ(split, whole) << "cut at " << cut;
  }
}

TEST(Crc32c, DetectsASingleFlippedBit) {
  std::vector<std::byte> data(4096, std::byte{0x5a});
  std::uint32_t before = crc32c(0, data);
  data[1234] ^= std::byte{0x10};
  EXPECT_NE(crc32c(0, data), before);
}

}  // namespace
}  // namespace vfio

namespace vfio {
namespace {

// Long inputs take the three-lane path; it must agree with the byte-at-a-time definition.
TEST(Crc32c, LongInputsMatchTheBitwiseDefinition) {
  std::vector<std::byte> data(3 * 8192 * 2 + 1234);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte((i * 7919) >> 3);
  auto bitwise = [](std::span<const std::byte> d) {
    std::uint32_t c = ~0u;
    for (auto b : d) {
      c ^= std::to_integer<std::uint32_t>(b);
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
  };
  for (std::size_t len : {data.size(), std::size_t{3 * 8192}, std::size_t{3 * 8192 + 8},
                          std::size_t{3 * 8192 - 1}, std::size_t{100000 - 3}}) {
    auto part = std::span<const std::byte>(data).first(std::min(len, data.size()));
    EXPECT_EQ(crc32c(0, part), bitwise(part)) << len;
  }
}

// Inputs of 256 bytes and more take the carry-less folding path where the CPU has it: every
// length around its block sizes (16, 64, 256), at unaligned starts, continuing a CRC.
TEST(Crc32c, FoldedInputsMatchTheBitwiseDefinition) {
  std::vector<std::byte> data(3000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte((i * 2654435761u) >> 13);
  auto bitwise = [](std::uint32_t crc, std::span<const std::byte> d) {
    std::uint32_t c = ~crc;
    for (auto b : d) {
      c ^= std::to_integer<std::uint32_t>(b);
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
  };
  for (std::size_t offset : {0u, 1u, 3u, 8u}) {
    for (std::size_t len = 240; len <= 2600; len += len < 600 ? 1 : 61) {
      auto part = std::span<const std::byte>(data).subspan(offset, len);
      ASSERT_EQ(crc32c(0, part), bitwise(0, part)) << "offset " << offset << ", length " << len;
      ASSERT_EQ(crc32c(0xDEADBEEF, part), bitwise(0xDEADBEEF, part))
          << "offset " << offset << ", length " << len;
    }
  }
}

}  // namespace
}  // namespace vfio
