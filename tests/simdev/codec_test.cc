// The stream codec of each format: rendering at any offset, and validation in any chunking.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "simdev/profile.h"

namespace vfio::sim {
namespace {

std::vector<std::byte> full_stream(const Profile& p, const Image& img) {
  std::vector<std::byte> out(stream_length(p, img));
  render_stream(p, img, 0, out);
  return out;
}

// Feeds `s` in random chunks; returns the validator.
ResumeValidator feed_chunked(const Profile& p, std::span<const std::byte> s, unsigned seed) {
  ResumeValidator v(p);
  std::mt19937 rng(seed);
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t n = std::min<std::size_t>(s.size() - pos, 1 + rng() % 97);
    v.feed(s.subspan(pos, n));
    pos += n;
  }
  return v;
}

// mlx5 framing with small records, so a small image spans many records.
Profile small_records() {
  Profile p = *find_profile("mlx5");
  p.record_payload = 40;
  return p;
}

std::vector<Profile> codec_profiles() {
  return {*find_profile("plain"), *find_profile("mtty"), *find_profile("mlx5"), small_records()};
}

const std::uint64_t kSizes[] = {0, 1, 7, 8, 40, 72, 81, 1000, 4099};

TEST(Codec, ProfilesExist) {
  for (auto name : {"mtty", "mlx5", "stopcopy", "p2p", "plain"})
    ASSERT_NE(find_profile(name), nullptr) << name;
  EXPECT_EQ(find_profile("nope"), nullptr);
  EXPECT_GE(all_profiles().size(), 5u);
  const Profile& mtty = *find_profile("mtty");
  EXPECT_EQ(stream_length(mtty, Image{1, mtty.default_state_size}), 96u);
}

TEST(Codec, HeaderLayouts) {
  const Image img{0x1122334455667788ULL, 72};
  const auto mtty = full_stream(*find_profile("mtty"), img);
  auto le64 = [](const std::vector<std::byte>& b, std::size_t off) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(b[off + i]);
    return v;
  };
  EXPECT_EQ(le64(mtty, 0), kMttyMagic);
  EXPECT_EQ(le64(mtty, 8), img.seed);
  EXPECT_EQ(le64(mtty, 16), 72u);
  const Profile recs = small_records();
  const auto mlx = full_stream(recs, img);
  EXPECT_EQ(le64(mlx, 0), 32u);                                    // header record size
  EXPECT_EQ(le64(mlx, 8), std::uint64_t{kRecordTagHeader} << 32);  // flags 0, tag
  EXPECT_EQ(le64(mlx, 48), 40u);                                   // first data record
  EXPECT_EQ(mlx.size(), 48u + 72 + 2 * 16);
}

TEST(Codec, RenderAtAnyOffsetMatchesWholeRendering) {
  for (const Profile& p : codec_profiles()) {
    for (std::uint64_t size : kSizes) {
      const Image img{size * 3 + 1, size};
      const auto whole = full_stream(p, img);
      for (std::size_t off = 0; off < whole.size(); off += 1 + off / 3) {
        for (std::size_t len : {1, 5, 16, 33, 200}) {
          const std::size_t n = std::min(len, whole.size() - off);
          std::vector<std::byte> part(n);
          render_stream(p, img, off, part);
          ASSERT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + off))
              << p.name << " size " << size << " at " << off << "+" << n;
        }
      }
    }
  }
}

TEST(Codec, RoundTripInAnyChunking) {
  for (const Profile& p : codec_profiles()) {
    for (std::uint64_t size : kSizes) {
      const Image img{size + 100, size};
      const auto s = full_stream(p, img);
      ResumeValidator whole(p);
      EXPECT_EQ(whole.feed(s), ResumeValidator::Feed::kOk);
      EXPECT_TRUE(whole.accepted()) << p.name << " " << size;
      EXPECT_EQ(whole.image(), img);
      for (unsigned seed = 0; seed < 5; ++seed) {
        const auto v = feed_chunked(p, s, seed);
        ASSERT_TRUE(v.accepted()) << p.name << " size " << size << " chunking " << seed;
        EXPECT_EQ(v.image(), img);
        EXPECT_EQ(v.received(), s.size());
      }
      // Byte by byte.
      ResumeValidator bytewise(p);
      for (std::byte b : s) bytewise.feed(std::span(&b, 1));
      EXPECT_TRUE(bytewise.accepted());
    }
  }
}

TEST(Codec, EveryFlippedByteIsDetected) {
  for (const Profile& p : codec_profiles()) {
    for (std::uint64_t size : {72, 81, 200}) {
      const Image img{size, size};
      auto s = full_stream(p, img);
      for (std::size_t i = 0; i < s.size(); ++i) {
        s[i] ^= std::byte{0x01};
        const auto v = feed_chunked(p, s, static_cast<unsigned>(i));
        ASSERT_FALSE(v.accepted()) << p.name << " size " << size << " byte " << i;
        s[i] ^= std::byte{0x01};
      }
    }
  }
}

TEST(Codec, HeaderAndFramingErrorsAreReportedAsSuch) {
  for (const Profile& p : codec_profiles()) {
    const Image img{3, 200};
    auto s = full_stream(p, img);
    const std::size_t magic_at = p.format == StreamFormat::kMlx5Records ? 16 : 0;
    s[magic_at] ^= std::byte{0xff};
    ResumeValidator v(p);
    // Rejected as soon as the magic is in, before the rest of the header.
    EXPECT_EQ(v.feed(std::span(s).first(magic_at + 8)), ResumeValidator::Feed::kBadHeader)
        << p.name;
    EXPECT_TRUE(v.framing_bad());
    EXPECT_EQ(v.feed(std::span(s).subspan(magic_at + 8)), ResumeValidator::Feed::kBadHeader);
    EXPECT_FALSE(v.accepted());
  }
  // A corrupt data record prefix is a framing error too.
  const Profile recs = small_records();
  auto s = full_stream(recs, Image{3, 200});
  s[48 + 12] ^= std::byte{0x01};  // tag of the first data record
  ResumeValidator v(recs);
  EXPECT_EQ(v.feed(s), ResumeValidator::Feed::kBadHeader);
  // A corrupt body byte is not: it surfaces as bytes_ok() == false.
  s = full_stream(recs, Image{3, 200});
  s[100] ^= std::byte{0x01};
  ResumeValidator b(recs);
  EXPECT_EQ(b.feed(s), ResumeValidator::Feed::kOk);
  EXPECT_TRUE(b.header_valid());
  EXPECT_FALSE(b.bytes_ok());
  EXPECT_TRUE(b.complete());
  EXPECT_FALSE(b.accepted());
}

TEST(Codec, TruncatedAndOverlongStreams) {
  for (const Profile& p : codec_profiles()) {
    const auto s = full_stream(p, Image{11, 100});
    ResumeValidator shortv(p);
    shortv.feed(std::span(s).first(s.size() - 1));
    EXPECT_TRUE(shortv.header_valid());
    EXPECT_TRUE(shortv.bytes_ok());
    EXPECT_FALSE(shortv.complete());
    EXPECT_FALSE(shortv.accepted());

    ResumeValidator header_only(p);
    header_only.feed(std::span(s).first(stream_header_size(p) - 1));
    EXPECT_FALSE(header_only.header_valid());
    EXPECT_FALSE(header_only.accepted());

    auto longer = s;
    longer.push_back(std::byte{0});
    ResumeValidator longv(p);
    EXPECT_EQ(longv.feed(longer), ResumeValidator::Feed::kOverflow) << p.name;
    EXPECT_EQ(longv.received(), stream_header_size(p));  // excess not consumed
    EXPECT_EQ(longv.feed(std::span(s).subspan(stream_header_size(p))), ResumeValidator::Feed::kOk);
    EXPECT_TRUE(longv.accepted());
    EXPECT_EQ(longv.feed(std::span(s).first(1)), ResumeValidator::Feed::kOverflow);
  }
}

TEST(Codec, StreamFromAnotherProfileIsRejected) {
  const Image img{1, 64};
  for (const Profile& from : all_profiles()) {
    for (const Profile& to : all_profiles()) {
      if (from.name == to.name) continue;
      ResumeValidator v(to);
      EXPECT_EQ(v.feed(full_stream(from, img)), ResumeValidator::Feed::kBadHeader)
          << from.name << " -> " << to.name;
    }
  }
}

TEST(Codec, DeclaredSizeBound) {
  for (const Profile& p : codec_profiles()) {
    for (std::uint64_t size : {kMaxDeclaredSize, kMaxDeclaredSize + 1}) {
      std::vector<std::byte> header(stream_header_size(p));
      render_stream(p, Image{1, size}, 0, header);
      ResumeValidator v(p);
      const auto r = v.feed(header);
      if (size <= kMaxDeclaredSize) {
        EXPECT_EQ(r, ResumeValidator::Feed::kOk) << p.name;
        EXPECT_TRUE(v.header_valid());
        EXPECT_EQ(v.expected_length(), stream_length(p, Image{1, size}));
      } else {
        EXPECT_EQ(r, ResumeValidator::Feed::kBadHeader) << p.name;
      }
    }
  }
}

}  // namespace
}  // namespace vfio::sim
