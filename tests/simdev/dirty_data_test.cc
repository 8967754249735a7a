// Guest writes while the device runs: the image's write cursor, dirty records in the stream,
// and the pre-copy session that sends initial data, then what was written since.
#include <gtest/gtest.h>

#include <cerrno>
#include <thread>
#include <vector>

#include "simdev/direct_device.h"
#include "simdev/sim_device.h"

namespace vfio::sim {
namespace {

using uapi::State;
using Bytes = std::vector<std::byte>;

Bytes rendered(const Profile& p, const Image& img) {
  Bytes out(stream_length(p, img));
  render_stream(p, img, 0, out);
  return out;
}

// A device behind DirectDevice, so the tests read it as the engine does.
struct Dev {
  Dev(std::string_view profile, SimOptions o)
      : model(std::make_shared<SimDevice>(*find_profile(profile), o)), dev(model, "dev") {}
  int set(State s) {
    struct {
      uapi::FeatureHeader h;
      uapi::MigState m;
    } c{{sizeof(c), static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) | uapi::kFeatureSet},
        {static_cast<std::uint32_t>(s), -1}};
    auto r = dev.feature(std::as_writable_bytes(std::span(&c, 1)));
    EXPECT_TRUE(r) << (r ? "" : r.error().describe());
    return c.m.data_fd;
  }
  uapi::PrecopyInfo info(int fd) {
    uapi::PrecopyInfo i{};
    i.argsz = sizeof(i);
    EXPECT_TRUE(dev.precopy_info(fd, i));
    return i;
  }
  // Reads until a temporary end (ENOMSG, or 0) or the end; appends to `out`.
  void drain(int fd, Bytes& out, std::size_t chunk = 4096) {
    Bytes buf(chunk);
    for (;;) {
      auto n = dev.read(fd, buf);
      if (!n && n.error().code == ENOMSG) return;
      ASSERT_TRUE(n) << n.error().describe();
      if (*n == 0) return;
      out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    }
  }
  std::shared_ptr<SimDevice> model;
  DirectDevice dev;
};

SimOptions opts(std::uint64_t size, std::uint64_t seed = 5) {
  SimOptions o;
  o.state_size = size;
  o.seed = seed;
  o.framed_precopy = true;
  return o;
}

TEST(DirtyData, StreamOfAWrittenImageResumesToTheSameImage) {
  for (const Profile& p : all_profiles()) {
    for (std::uint64_t written : {0, 1, 99, 100, 101, 350}) {
      const Image img{7, 100, written};
      const Bytes s = rendered(p, img);
      EXPECT_EQ(s.size(), base_stream_length(p, 100) +
                              dirty_record_length(std::min<std::uint64_t>(written, 100)));
      ResumeValidator v(p);
      ASSERT_EQ(v.feed(s), ResumeValidator::Feed::kOk) << p.name << " " << written;
      EXPECT_TRUE(v.accepted()) << p.name << " " << written;
      EXPECT_EQ(v.image(), img) << p.name << " " << written;
    }
  }
}

TEST(DirtyData, ValidatorRefusesBadRecords) {
  const Profile& p = *find_profile("plain");
  const Image img{7, 100};
  const Bytes base = rendered(p, img);
  auto record = [&](std::uint64_t cursor, std::uint64_t length) {
    Bytes r(dirty_record_length(length));
    render_dirty_record(Image{7, 100, cursor + length}, {cursor, length}, 0, r);
    return r;
  };
  auto feed = [&](std::vector<Bytes> records) {
    ResumeValidator v(p);
    v.feed(base);
    for (auto& r : records) v.feed(r);
    return v;
  };
  EXPECT_TRUE(feed({record(0, 50), record(50, 30)}).accepted());
  EXPECT_EQ(feed({record(0, 50), record(50, 30)}).image(), (Image{7, 100, 80}));
  // A gap the later records do not cover: some bytes would miss their last write.
  EXPECT_FALSE(feed({record(0, 50), record(120, 30)}).accepted());
  EXPECT_TRUE(feed({record(0, 50), record(120, 100)}).accepted());
  // Older than the last body's worth of writes, or longer than the body: framing error.
  EXPECT_TRUE(feed({record(0, 100), record(200, 100), record(50, 10)}).framing_bad());
  EXPECT_TRUE(feed({record(0, 101)}).framing_bad());
  // A record's bytes must be what the guest wrote there.
  Bytes wrong = record(0, 50);
  wrong.back() ^= std::byte{1};
  auto v = feed({wrong});
  EXPECT_FALSE(v.bytes_ok());
  EXPECT_FALSE(v.accepted());
  // Cut inside a record: incomplete.
  Bytes cut = record(0, 50);
  cut.resize(30);
  EXPECT_FALSE(feed({cut}).complete());
}

TEST(DirtyData, APrecopyStreamIsCompleteOnlyWithItsTrailer) {
  // Records dropped at the end would otherwise leave a valid but older image.
  const Profile& p = *find_profile("mlx5");
  Bytes s(kPreambleSize);
  render_preamble(0, s);
  const Bytes base = rendered(p, Image{3, 1000});
  s.insert(s.end(), base.begin(), base.end());
  Bytes rec(dirty_record_length(40));
  render_dirty_record(Image{3, 1000, 40}, {0, 40}, 0, rec);
  auto with_trailer = [&](std::uint64_t cursor) {
    Bytes t(kTrailerSize);
    render_trailer(cursor, 0, t);
    return t;
  };
  ResumeValidator v(p);
  ASSERT_EQ(v.feed(s), ResumeValidator::Feed::kOk);
  ASSERT_EQ(v.feed(rec), ResumeValidator::Feed::kOk);
  EXPECT_FALSE(v.complete());  // no trailer yet
  ResumeValidator short_of_final = v;
  EXPECT_EQ(short_of_final.feed(with_trailer(80)), ResumeValidator::Feed::kOk);
  EXPECT_FALSE(short_of_final.complete());  // the records stop before the final cursor
  ASSERT_EQ(v.feed(with_trailer(40)), ResumeValidator::Feed::kOk);
  EXPECT_TRUE(v.accepted());
  EXPECT_EQ(v.image(), (Image{3, 1000, 40}));
  EXPECT_EQ(v.feed(rec), ResumeValidator::Feed::kOverflow);  // nothing after the trailer
  // Without the preamble a trailer is just excess.
  ResumeValidator plain(p);
  plain.feed(base);
  EXPECT_EQ(plain.feed(with_trailer(0)), ResumeValidator::Feed::kOverflow);
}

// Writes that land while a record is being read are counted once: the rest of the current
// record, plus a record of the new writes (not of the current record's range again).
TEST(DirtyData, DirtyBytesCountTheRecordBeingReadOnce) {
  Dev src("plain", opts(64 << 10));
  const int fd = src.set(State::kPreCopy);
  Bytes stream;
  src.drain(fd, stream);
  ASSERT_TRUE(src.model->guest_write(100));
  Bytes part(10);
  ASSERT_TRUE(src.dev.read(fd, part));
  EXPECT_EQ(src.info(fd).dirty_bytes, dirty_record_length(100) - 10);
  ASSERT_TRUE(src.model->guest_write(50));
  EXPECT_EQ(src.info(fd).dirty_bytes, dirty_record_length(100) - 10 + dirty_record_length(50));
}

TEST(DirtyData, PrecopySendsInitialDataThenWhatWasWrittenSince) {
  // mtty holds everything after its header for STOP_COPY
  // (SimDevicePrecopy.MttyWithGuestWritesSendsEverythingAfterTheHeaderInStopCopy).
  for (auto name : {"plain", "mlx5"}) {
    Dev src(name, opts(64 << 10));
    const Image before = src.model->image();
    const int fd = src.set(State::kPreCopy);
    auto info = src.info(fd);
    EXPECT_EQ(info.initial_bytes, kPreambleSize + src.model->stream_size());
    EXPECT_EQ(info.dirty_bytes, 0u);
    Bytes stream, expected(kPreambleSize);
    render_preamble(0, expected);
    const Bytes base = rendered(src.model->profile(), before);
    expected.insert(expected.end(), base.begin(), base.end());
    src.drain(fd, stream);
    EXPECT_EQ(stream, expected) << name;

    ASSERT_TRUE(src.model->guest_write(40));
    info = src.info(fd);
    EXPECT_EQ(info.initial_bytes, 0u);
    EXPECT_EQ(info.dirty_bytes, dirty_record_length(40)) << name;
    src.drain(fd, stream);
    EXPECT_EQ(src.info(fd).dirty_bytes, 0u);

    ASSERT_TRUE(src.model->guest_write(30));
    src.set(State::kStopCopy);  // the rest goes in stop-copy
    EXPECT_FALSE(src.model->guest_write(1));
    src.drain(fd, stream);
    src.set(State::kStop);
    EXPECT_EQ(src.model->image().written, 70u);

    Dev dst(name, opts(16, 9));
    const int in = dst.set(State::kResuming);
    ASSERT_TRUE(dst.dev.write(in, stream));
    dst.set(State::kStop);
    EXPECT_EQ(dst.model->image(), src.model->image()) << name;
  }
}

TEST(DirtyData, DeterministicWritesPerReadAndALappingWriter) {
  SimOptions o = opts(4096);
  o.dirty_per_read = 10000;  // more than the body per read: the writer laps the reader
  Dev src("plain", o);
  const int fd = src.set(State::kPreCopy);
  Bytes stream, buf(1 << 20);
  // Every read writes 10000 bytes first: pre-copy never runs dry, and each record holds at most
  // one body's worth however far the writer got ahead.
  for (int i = 0; i < 6; ++i) {
    auto n = src.dev.read(fd, buf);
    ASSERT_TRUE(n && *n > 0);
    stream.insert(stream.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  src.set(State::kStopCopy);
  src.drain(fd, stream, 1 << 20);
  src.set(State::kStop);
  EXPECT_GT(src.model->image().written, 10000u);
  EXPECT_LE(stream.size(),
            8 * (4096 + kDirtyPrefixSize) + base_stream_length(src.model->profile(), 4096));
  Dev dst("plain", opts(16, 9));
  const int in = dst.set(State::kResuming);
  ASSERT_TRUE(dst.dev.write(in, stream));
  dst.set(State::kStop);
  EXPECT_EQ(dst.model->image(), src.model->image());
}

TEST(DirtyData, RateWritesAccrueOnlyWhileRunning) {
  SimOptions o = opts(1 << 20);
  o.dirty_rate = 1ull << 30;  // 1 GiB/s: a few ms make a visible difference
  Dev dev("p2p", o);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  dev.set(State::kStop);
  const auto written = dev.model->image().written;
  EXPECT_GT(written, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  dev.set(State::kStop);
  EXPECT_EQ(dev.model->image().written, written);
}

TEST(DirtyData, MutateStillRewritesTheWholeState) {
  Dev dev("plain", opts(100));
  ASSERT_TRUE(dev.model->guest_write(30));
  ASSERT_TRUE(dev.model->mutate());
  EXPECT_EQ(dev.model->image().written, 0u);
}

}  // namespace
}  // namespace vfio::sim
