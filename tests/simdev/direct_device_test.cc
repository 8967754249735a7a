// DirectDevice: the Device seam over the model, with local fd numbers.
#include "simdev/direct_device.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "core/feature.h"

namespace vfio::sim {
namespace {

using uapi::State;

std::shared_ptr<SimDevice> make(const char* profile, std::uint64_t seed) {
  return std::make_shared<SimDevice>(*find_profile(profile),
                                     SimOptions{.state_size = 100000, .seed = seed});
}

// Real mtty keeps its migration state when the device is closed (mtty_close_device never
// resets it); the vfio-pci drivers return to RUNNING. keep_state overrides either way. Only the
// last user's close counts.
TEST(DirectDevice, LastCloseResetsUnlessTheDeviceKeepsItsState) {
  struct Case {
    const char* profile;
    std::optional<bool> keep;
    State after;
  };
  for (const auto& [profile, keep, after] :
       {Case{"mtty", std::nullopt, State::kStop}, Case{"mlx5", std::nullopt, State::kRunning},
        Case{"mtty", false, State::kRunning}, Case{"mlx5", true, State::kStop}}) {
    SCOPED_TRACE(::testing::Message() << profile << " keep-state " << keep.value_or(-1));
    auto model = std::make_shared<SimDevice>(
        *find_profile(profile), SimOptions{.state_size = 3000, .seed = 1, .keep_state = keep});
    auto first = std::make_unique<DirectDevice>(model, "first");
    auto second = std::make_unique<DirectDevice>(model, "second");
    ASSERT_TRUE(request_device_state(*first, State::kStop));
    first.reset();
    EXPECT_EQ(model->state(), State::kStop);  // still open through `second`
    second.reset();
    EXPECT_EQ(model->state(), after);
    EXPECT_EQ(query_device_state(*std::make_unique<DirectDevice>(model, "again")), after);
  }
}

TEST(DirectDevice, UnknownFdIsEbadf) {
  DirectDevice dev(make("plain", 1), "sim:plain#0");
  std::vector<std::byte> buf(8);
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  EXPECT_EQ(dev.read(7, buf).error().code, EBADF);
  EXPECT_EQ(dev.write(7, buf).error().code, EBADF);
  EXPECT_EQ(dev.precopy_info(7, info).error().code, EBADF);
  EXPECT_EQ(dev.close(7).error().code, EBADF);
  EXPECT_NE(dev.read(7, buf).error().message.find("sim:plain#0"), std::string::npos);
}

TEST(DirectDevice, FdsStartAt1000AndAreNeverReused) {
  DirectDevice dev(make("p2p", 1), "sim:p2p#0");
  auto a = request_device_state(dev, State::kStopCopy);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 1000);
  ASSERT_TRUE(dev.close(*a));
  EXPECT_EQ(dev.close(*a).error().code, EBADF);
  ASSERT_TRUE(request_device_state(dev, State::kStop));
  auto b = request_device_state(dev, State::kStopCopy);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 1001);
  ASSERT_TRUE(request_device_state(dev, State::kStop));
  std::vector<std::byte> buf(8);
  auto stale = dev.read(*b, buf);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ENODEV);
  EXPECT_NE(stale.error().message.find("sim:p2p#0: read data fd 1001"), std::string::npos)
      << stale.error().message;
}

TEST(DirectDevice, MigratesThroughTheDeviceSeam) {
  auto src_sim = make("mlx5", 1), dst_sim = make("mlx5", 2);
  DirectDevice src(src_sim, "src"), dst(dst_sim, "dst");
  ASSERT_EQ(*query_migration_flags(src), 7u);
  EXPECT_TRUE(probe_feature(src, uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet));
  EXPECT_FALSE(probe_feature(src, uapi::Feature::kDmaLoggingStart, uapi::kFeatureGet));
  const std::uint64_t size = *query_stop_copy_size(src);
  EXPECT_EQ(size, src_sim->stream_size());

  auto out = request_device_state(src, State::kPreCopy);
  ASSERT_TRUE(out);
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  ASSERT_TRUE(src.precopy_info(*out, info));
  EXPECT_EQ(info.initial_bytes, size);
  auto in = request_device_state(dst, State::kResuming);
  ASSERT_TRUE(in);
  ASSERT_GE(*in, 1000);
  auto again = request_device_state(dst, State::kResuming);  // already there: no new fd
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, -1);
  auto refused = request_device_state(dst, State::kStop);  // nothing written yet
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EINVAL);

  // Precopy, then STOP_COPY for the rest, copied through in odd-sized chunks.
  std::vector<std::byte> buf(4099);
  auto pump = [&](bool precopy) {
    for (;;) {
      auto n = src.read(*out, buf);
      if (precopy && !n) {
        EXPECT_EQ(n.error().code, ENOMSG);
        return;
      }
      ASSERT_TRUE(n) << n.error().describe();
      if (*n == 0) return;
      auto w = dst.write(*in, std::span(buf).first(*n));
      ASSERT_TRUE(w) << w.error().describe();
      ASSERT_EQ(*w, *n);
    }
  };
  pump(true);
  ASSERT_TRUE(request_device_state(src, State::kStopCopy));
  pump(false);
  ASSERT_TRUE(request_device_state(dst, State::kRunning));
  EXPECT_EQ(dst_sim->image(), src_sim->image());
  EXPECT_EQ(*query_device_state(dst), State::kRunning);
  ASSERT_TRUE(src.close(*out));
  ASSERT_TRUE(dst.close(*in));
  ASSERT_TRUE(src.reset());
  EXPECT_EQ(*query_device_state(src), State::kRunning);
}

}  // namespace
}  // namespace vfio::sim
