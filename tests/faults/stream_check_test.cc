// The stream checker sees a stream as it passes: the verdict must not depend on how the bytes
// were cut into feeds, and no stream size may cost memory.
#include "faults/stream_check.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include "core/session.h"
#include "tests/core/sim_pair.h"

namespace vfio::faults {
namespace {

std::vector<std::byte> saved_stream(std::uint64_t size) {
  auto sim = testing::make_sim("plain", size, 3);
  MemoryChannel file;
  Session session;
  session.add_device(*sim.device, "plain");
  EXPECT_TRUE(session.save(file));
  return file.data();
}

StreamCheck fed_in_pieces(std::span<const std::byte> bytes, std::size_t piece) {
  StreamChecker checker;
  for (std::size_t at = 0; at < bytes.size(); at += piece)
    checker.feed(bytes.subspan(at, std::min(piece, bytes.size() - at)));
  return checker.finish();
}

TEST(StreamCheck, SameVerdictWhateverTheFeeds) {
  const auto stream = saved_stream(300 * 1024);
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, stream.size()}) {
    auto c = fed_in_pieces(stream, piece);
    EXPECT_TRUE(c.complete) << piece << ": " << c.problem;
    EXPECT_TRUE(c.well_formed) << piece << ": " << c.problem;
  }
}

TEST(StreamCheck, CutMalformedAndTrailingStreams) {
  auto stream = saved_stream(64 * 1024);
  auto cut = fed_in_pieces(std::span(stream).first(stream.size() / 2), 1000);
  EXPECT_FALSE(cut.complete);
  EXPECT_TRUE(cut.well_formed) << cut.problem;
  EXPECT_EQ(cut.problem, fmt::format("cut after {} bytes", stream.size() / 2));

  auto trailing = stream;
  trailing.resize(stream.size() + 3);
  auto t = fed_in_pieces(trailing, 5000);
  EXPECT_TRUE(t.complete);
  EXPECT_FALSE(t.well_formed);
  EXPECT_EQ(t.problem, "3 bytes after the end section");

  auto damaged = stream;
  damaged[0] ^= std::byte{1};  // the magic
  auto d = fed_in_pieces(damaged, 5000);
  EXPECT_FALSE(d.well_formed);
  EXPECT_NE(d.problem.find("not a vfio-mig stream"), std::string::npos) << d.problem;

  StreamChecker never_fed;
  EXPECT_FALSE(never_fed.finish().complete);
}

// Discards what is written: the stream exists only as it passes through.
class Sink final : public Channel {
 public:
  Result<std::size_t> write(std::span<const std::byte> data) override { return data.size(); }
  Result<std::size_t> read(std::span<std::byte>) override { return 0; }
  const std::string& name() const override { return name_; }

 private:
  std::string name_ = "sink";
};

TEST(StreamCheck, KeepsNoCopyOfTheStream) {
  constexpr std::uint64_t kSize = 256ULL << 20;
  auto sim = testing::make_sim("plain", kSize, 5);
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  Sink sink;
  StreamChecker checker;
  CheckedChannel checked(sink, checker);
  Session session;
  session.add_device(*sim.device, "plain");
  ASSERT_TRUE(session.save(checked));
  auto c = checker.finish();
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_TRUE(c.complete && c.well_formed) << c.problem;
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB more at the peak";
}

}  // namespace
}  // namespace vfio::faults
