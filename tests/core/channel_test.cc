// FdChannel over a pipe and over the local migration's socket pair: a read or write that would
// block ends with ECANCELED once cancelled, pipe writes go in quarter-pipe pieces, and the
// socket pair carries a stream to its end through a 1 MiB send buffer.
#include "core/channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <thread>
#include <vector>

namespace vfio {
namespace {

enum class Kind { kPipe, kSocket };

class FdChannelCancel : public testing::TestWithParam<Kind> {};

TEST_P(FdChannelCancel, BlockedReadAndWriteEndWithEcanceled) {
  auto channel = GetParam() == Kind::kPipe ? make_pipe_channel() : make_socket_channel();
  ASSERT_TRUE(channel);
  auto& [in, out] = *channel;
  int cancel[2];
  ASSERT_EQ(::pipe(cancel), 0);
  in.set_cancel_fd(cancel[0]);
  out.set_cancel_fd(cancel[0]);
  std::byte buf[16];
  std::thread canceller([&] { EXPECT_EQ(::write(cancel[1], "!", 1), 1); });
  auto r = in.read(buf);  // nothing is ever written: only the cancel ends this
  canceller.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
  auto w = out.write(buf);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, ECANCELED);
  ::close(cancel[0]);
  ::close(cancel[1]);
}

INSTANTIATE_TEST_SUITE_P(Over, FdChannelCancel, testing::Values(Kind::kPipe, Kind::kSocket),
                         [](const auto& info) {
                           return std::string(info.param == Kind::kPipe ? "Pipe" : "Socket");
                         });

TEST(PipeChannel, WritesGoInQuarterPipePieces) {
  auto pipe = make_pipe_channel();
  ASSERT_TRUE(pipe);
  auto& [in, out] = *pipe;
  const int size = ::fcntl(out.fd(), F_GETPIPE_SZ);
  ASSERT_GT(size, 0);
  // The whole pipe's worth fits at once; the channel still hands over only a quarter.
  std::vector<std::byte> data(static_cast<std::size_t>(size), std::byte{1});
  auto n = out.write(data);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, static_cast<std::size_t>(size) / 4);
  auto got = in.read(data);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *n);
}

TEST(SocketChannel, CarriesAStreamToItsEnd) {
  auto channel = make_socket_channel();
  ASSERT_TRUE(channel);
  auto& [in, out] = *channel;
  std::vector<std::byte> sent(3 << 20);
  for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<std::byte>(i * 7 + i / 4096);
  std::thread writer([&] {
    for (auto rest = std::span<const std::byte>(sent); !rest.empty();) {
      auto n = out.write(rest);
      ASSERT_TRUE(n) << n.error().describe();
      rest = rest.subspan(*n);
    }
    out.close();  // the end of the stream
  });
  std::vector<std::byte> got, buf(100000);
  for (;;) {
    auto n = in.read(buf);
    ASSERT_TRUE(n) << n.error().describe();
    if (*n == 0) break;
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  writer.join();
  EXPECT_EQ(got, sent);
}

// The default send buffer (208 KiB) holds a fifth of a 1 MiB device read: the two sides of a
// migration would take turns instead of overlapping. The kernel reports twice what was set.
TEST(SocketChannel, SendsThroughA1MiBBuffer) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root may raise it above net.core.wmem_max";
  auto channel = make_socket_channel();
  ASSERT_TRUE(channel);
  int size = 0;
  socklen_t len = sizeof(size);
  ASSERT_EQ(::getsockopt(channel->second.fd(), SOL_SOCKET, SO_SNDBUF, &size, &len), 0);
  EXPECT_GE(size, 2 << 20);
}

// A destination that stopped early closes its end: the source's next write fails with EPIPE.
TEST(SocketChannel, AClosedReaderFailsTheWriterWithEpipe) {
  auto channel = make_socket_channel();
  ASSERT_TRUE(channel);
  auto& [in, out] = *channel;
  in.close();
  auto old = std::signal(SIGPIPE, SIG_IGN);
  std::byte b[8]{};
  auto n = out.write(b);
  std::signal(SIGPIPE, old);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, EPIPE);
}

}  // namespace
}  // namespace vfio
