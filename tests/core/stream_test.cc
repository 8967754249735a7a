#include "core/stream.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace vfio {
namespace {

// A channel that accepts or returns at most `chunk` bytes per call, then fails after `limit`.
class TrickleChannel final : public Channel {
 public:
  TrickleChannel(std::size_t chunk, std::size_t limit) : chunk_(chunk), limit_(limit) {}
  Result<std::size_t> write(std::span<const std::byte> data) override {
    if (data_.size() >= limit_) return fail(ENOSPC, "trickle: write");
    std::size_t n = std::min({data.size(), chunk_, limit_ - data_.size()});
    data_.insert(data_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    return n;
  }
  Result<std::size_t> read(std::span<std::byte> out) override {
    std::size_t n = std::min({out.size(), chunk_, data_.size() - pos_});
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(pos_), n, out.begin());
    pos_ += n;
    return n;
  }
  const std::string& name() const override { return name_; }
  std::vector<std::byte> data_;

 private:
  std::size_t chunk_, limit_, pos_ = 0;
  std::string name_ = "trickle";
};

TEST(Stream, BigEndianIntegersRoundTripThroughShortTransfers) {
  TrickleChannel channel(3, 1 << 20);
  {
    StreamWriter out(channel, 16);
    out.put_be64(0x0102030405060708ULL);
    out.put_be32(0xa1b2c3d4);
    ASSERT_TRUE(out.flush());
  }
  ASSERT_EQ(channel.data_.size(), 12u);
  EXPECT_EQ(channel.data_[0], std::byte{0x01});
  EXPECT_EQ(channel.data_[7], std::byte{0x08});
  StreamReader in(channel, 16);
  EXPECT_EQ(in.get_be64(), 0x0102030405060708ULL);
  EXPECT_EQ(in.get_be32(), 0xa1b2c3d4u);
  EXPECT_TRUE(in.status());
  EXPECT_TRUE(in.at_end());
}

TEST(Stream, AnEmptyBufferWritesNothing) {
  TrickleChannel channel(3, 1 << 20);
  {
    StreamWriter out(channel, 16);
    out.put_buffer({});  // a null pointer with no bytes: UBSan (asan preset) watches the copy
    out.put_be32(7);
    ASSERT_TRUE(out.flush());
  }
  EXPECT_EQ(channel.data_.size(), 4u);
}

TEST(Stream, LargeBuffersBypassTheWriteBufferIntact) {
  MemoryChannel channel;
  std::vector<std::byte> big(100000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = std::byte(i % 251);
  StreamWriter out(channel, 1024);
  out.put_be32(7);
  out.put_buffer(big);
  out.put_be32(9);
  ASSERT_TRUE(out.flush());
  EXPECT_EQ(out.bytes_written(), big.size() + 8);
  StreamReader in(channel, 4096);
  EXPECT_EQ(in.get_be32(), 7u);
  std::vector<std::byte> back(big.size());
  EXPECT_EQ(in.get_buffer(back), big.size());
  EXPECT_EQ(back, big);
  EXPECT_EQ(in.get_be32(), 9u);
}

TEST(Stream, FirstWriteErrorIsStickyAndLaterWritesAreIgnored) {
  TrickleChannel channel(1000, 10);
  StreamWriter out(channel, 4);
  out.put_be64(1);
  out.put_be64(2);  // the channel fills up here
  ASSERT_FALSE(out.flush());
  EXPECT_EQ(out.error()->code, ENOSPC);
  out.set_error(Error{EIO, "later"});
  out.put_be64(3);
  EXPECT_EQ(out.error()->code, ENOSPC);
  EXPECT_EQ(channel.data_.size(), 10u);
}

TEST(Stream, TruncatedStreamReportsItsLengthAndStaysFailed) {
  MemoryChannel channel(std::vector<std::byte>(5, std::byte{0xff}));
  StreamReader in(channel);
  EXPECT_EQ(in.get_be64(), 0u);
  ASSERT_TRUE(in.error());
  EXPECT_EQ(in.error()->code, EIO);
  EXPECT_NE(in.error()->message.find("truncated after 5 bytes"), std::string::npos);
  EXPECT_EQ(in.get_be32(), 0u);
}

TEST(Stream, ChecksumCoversExactlyTheBytesSinceReset) {
  MemoryChannel channel;
  StreamWriter out(channel);
  out.put_be32(1);
  out.reset_checksum();
  out.put_be64(42);
  std::uint32_t written = out.checksum();
  ASSERT_TRUE(out.flush());
  StreamReader in(channel);
  in.get_be32();
  in.reset_checksum();
  in.get_be64();
  EXPECT_EQ(in.checksum(), written);
  EXPECT_NE(written, 0u);
}

}  // namespace
}  // namespace vfio
