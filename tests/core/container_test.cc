#include "core/container.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace vfio::container {
namespace {

std::vector<std::byte> header_bytes(const Header& h) {
  MemoryChannel channel;
  {
    StreamWriter out(channel);
    write_header(out, h);
  }
  return channel.data();
}

TEST(Container, HeaderRoundTrips) {
  MemoryChannel channel(header_bytes({{"src0", "a-much-longer-device-id"}}));
  StreamReader in(channel);
  auto h = read_header(in);
  ASSERT_TRUE(h) << h.error().describe();
  EXPECT_EQ(h->device_ids, (std::vector<std::string>{"src0", "a-much-longer-device-id"}));
}

// A Session reads every load's header into the same Header, through the same buffer: what an
// earlier, longer header left must not show through.
TEST(Container, HeaderReadIntoReusedStorage) {
  Header header{{"a-much-longer-device-id-than-the-next", "b", "c", "d"}};
  AlignedBuffer buffer(64 * 1024);  // another size than asked for: the reader resizes it
  MemoryChannel channel(header_bytes({{"x", "yy"}}));
  StreamReader in(channel, buffer, 16);
  ASSERT_TRUE(read_header(in, header));
  EXPECT_EQ(header.device_ids, (std::vector<std::string>{"x", "yy"}));
  EXPECT_EQ(buffer.size(), 16u);
  EXPECT_TRUE(in.at_end());
}

TEST(Container, RejectsForeignMagicAndFutureVersions) {
  auto bytes = header_bytes({{"d"}});
  auto bad_magic = bytes;
  bad_magic[0] ^= std::byte{1};
  MemoryChannel c1(bad_magic);
  StreamReader in1(c1);
  auto h1 = read_header(in1);
  ASSERT_FALSE(h1);
  EXPECT_NE(h1.error().message.find("not a vfio-mig stream"), std::string::npos);

  auto future = bytes;
  future[11] = std::byte{2};  // version, big-endian low byte
  MemoryChannel c2(future);
  StreamReader in2(c2);
  auto h2 = read_header(in2);
  ASSERT_FALSE(h2);
  EXPECT_EQ(h2.error().code, EPROTONOSUPPORT);
}

TEST(Container, RejectsHugeCountsAndIdsWithoutAllocating) {
  MemoryChannel channel;
  {
    StreamWriter out(channel);
    out.put_be64(kMagic);
    out.put_be32(kVersion);
    out.put_be32(1);
    out.put_be32(0xfffffff0);  // id length
  }
  StreamReader in(channel);
  auto h = read_header(in);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("exceeds"), std::string::npos);

  MemoryChannel many;
  {
    StreamWriter out(many);
    out.put_be64(kMagic);
    out.put_be32(kVersion);
    out.put_be32(1u << 30);
  }
  StreamReader in2(many);
  EXPECT_FALSE(read_header(in2));
}

TEST(Container, CorruptedHeaderFailsTheChecksum) {
  auto bytes = header_bytes({{"dev"}});
  bytes[bytes.size() - 6] ^= std::byte{0x20};  // inside the id
  MemoryChannel channel(bytes);
  StreamReader in(channel);
  auto h = read_header(in);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, EBADMSG);
}

TEST(Container, SectionChecksumCoversTypeDeviceAndPayload) {
  MemoryChannel channel;
  {
    StreamWriter out(channel);
    begin_section(out, SectionType::kComplete, 1);
    out.put_be64(0x1234);
    end_section(out);
  }
  for (std::size_t flip = 0; flip < 16; ++flip) {
    auto bytes = channel.data();
    bytes[flip] ^= std::byte{0x01};
    MemoryChannel c(bytes);
    StreamReader in(c);
    auto start = read_section_start(in, 2);
    if (!start) continue;  // the type or index itself became invalid: also rejected
    in.get_be64();
    EXPECT_FALSE(verify_section_end(in)) << "flip at byte " << flip;
  }
  MemoryChannel intact(channel.data());
  StreamReader in(intact);
  auto start = read_section_start(in, 2);
  ASSERT_TRUE(start);
  EXPECT_EQ(start->type, SectionType::kComplete);
  EXPECT_EQ(in.get_be64(), 0x1234u);
  EXPECT_TRUE(verify_section_end(in));
}

TEST(Container, SectionForAMissingDeviceIsRejected) {
  MemoryChannel channel;
  {
    StreamWriter out(channel);
    begin_section(out, SectionType::kSetup, 5);
  }
  StreamReader in(channel);
  auto start = read_section_start(in, 2);
  ASSERT_FALSE(start);
  EXPECT_NE(start.error().message.find("names device"), std::string::npos);
}

}  // namespace
}  // namespace vfio::container
