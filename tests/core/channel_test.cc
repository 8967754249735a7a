// FdChannel over the migration's pipe: a read or write that would block ends with ECANCELED
// once cancelled, and writes go in quarter-pipe pieces.
#include "core/channel.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace vfio {
namespace {

TEST(FdChannelCancel, BlockedReadAndWriteEndWithEcanceled) {
  auto pipe = make_pipe_channel();
  ASSERT_TRUE(pipe);
  auto& [in, out] = *pipe;
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

}  // namespace
}  // namespace vfio
