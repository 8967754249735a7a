// DMA logging features: argument checks and the report bitmap.
#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "simdev/sim_device.h"

namespace vfio::sim {
namespace {

const SimDevice::FdOpener kOpener = [](SimDevice::SessionId id) -> Result<int> {
  return static_cast<int>(id);
};

template <class Payload>
int call(SimDevice& dev, uapi::Feature f, std::uint32_t dir, const Payload& payload) {
  struct {
    uapi::FeatureHeader h;
    Payload p;
  } c{{sizeof(c), static_cast<std::uint32_t>(f) | dir}, payload};
  auto r = dev.feature(std::as_writable_bytes(std::span(&c, 1)), kOpener);
  return r ? 0 : r.error().code;
}

std::uint64_t ptr(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

int start(SimDevice& dev, std::uint64_t page, const std::vector<uapi::DmaLoggingRange>& r,
          std::uint32_t n = ~0u) {
  uapi::DmaLoggingControl c{page, n == ~0u ? static_cast<std::uint32_t>(r.size()) : n, 0,
                            ptr(r.data())};
  return call(dev, uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet, c);
}

int stop(SimDevice& dev) {
  uapi::FeatureHeader h{
      sizeof(h), static_cast<std::uint32_t>(uapi::Feature::kDmaLoggingStop) | uapi::kFeatureSet};
  auto r = dev.feature(std::as_writable_bytes(std::span(&h, 1)), kOpener);
  return r ? 0 : r.error().code;
}

int report(SimDevice& dev, std::uint64_t iova, std::uint64_t len, std::uint64_t page,
           std::vector<std::uint64_t>& bitmap) {
  uapi::DmaLoggingReport rep{iova, len, page, ptr(bitmap.data())};
  return call(dev, uapi::Feature::kDmaLoggingReport, uapi::kFeatureGet, rep);
}

constexpr std::uint64_t kPage = 4096;

TEST(DmaLogging, StartArgumentChecks) {
  SimDevice dev(*find_profile("mlx5"), {.state_size = 100});
  std::vector<uapi::DmaLoggingRange> one = {{0, 16 * kPage}};
  EXPECT_EQ(start(dev, kPage, one, 0), EINVAL);
  std::vector<uapi::DmaLoggingRange> many(257);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = {i * kPage, kPage};
  EXPECT_EQ(start(dev, kPage, many), E2BIG);
  EXPECT_EQ(start(dev, kPage, {{100, kPage}}), EINVAL);                    // iova unaligned
  EXPECT_EQ(start(dev, kPage, {{0, kPage + 1}}), EINVAL);                  // length unaligned
  EXPECT_EQ(start(dev, kPage, {{0, 2 * kPage}, {kPage, kPage}}), EINVAL);  // overlap
  EXPECT_EQ(start(dev, kPage, {{~0ull - kPage + 1, 2 * kPage}}), EOVERFLOW);
  EXPECT_EQ(start(dev, 3000, one), EINVAL);  // page size not a power of two
  uapi::DmaLoggingControl null_ranges{kPage, 1, 0, 0};
  EXPECT_EQ(call(dev, uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet, null_ranges), EFAULT);

  many.resize(256);
  EXPECT_EQ(start(dev, kPage, many), 0);  // the maximum
  EXPECT_EQ(start(dev, kPage, one), EBUSY);
  EXPECT_EQ(stop(dev), 0);
  EXPECT_EQ(start(dev, kPage, one), 0);
}

TEST(DmaLogging, DirectionsAndSupport) {
  SimDevice dev(*find_profile("mlx5"), {.state_size = 100});
  uapi::DmaLoggingReport rep{};
  EXPECT_EQ(call(dev, uapi::Feature::kDmaLoggingReport, uapi::kFeatureSet, rep), EINVAL);
  uapi::DmaLoggingControl c{};
  EXPECT_EQ(call(dev, uapi::Feature::kDmaLoggingStart, uapi::kFeatureGet, c), EINVAL);
  SimDevice stop_copy_only(*find_profile("stopcopy"), {.state_size = 4096});
  EXPECT_EQ(start(stop_copy_only, kPage, {{0, kPage}}), ENOTTY);
  EXPECT_EQ(stop(stop_copy_only), ENOTTY);
}

TEST(DmaLogging, ReportChecksAndBitmap) {
  SimDevice dev(*find_profile("plain"), {.state_size = 100});
  std::vector<std::uint64_t> bitmap(4, 0);
  EXPECT_EQ(report(dev, 0, 64 * kPage, kPage, bitmap), EINVAL);  // not started
  ASSERT_EQ(start(dev, kPage, {{0, 256 * kPage}}), 0);
  EXPECT_EQ(report(dev, 0, 64 * kPage, 2048, bitmap), EINVAL);
  EXPECT_EQ(report(dev, 0, 64 * kPage, 3 * kPage, bitmap), EINVAL);
  EXPECT_EQ(report(dev, ~0ull, 2, kPage, bitmap), EOVERFLOW);

  dev.mark_dirty(0);
  dev.mark_dirty(5 * kPage + 17);
  dev.mark_dirty(70 * kPage);
  dev.mark_dirty(1000 * kPage);  // outside the logged range: ignored
  ASSERT_EQ(report(dev, 0, 256 * kPage, kPage, bitmap), 0);
  EXPECT_EQ(bitmap[0], (1ull << 0) | (1ull << 5));
  EXPECT_EQ(bitmap[1], 1ull << 6);
  EXPECT_EQ(bitmap[2] | bitmap[3], 0u);
  // Reported pages are cleared.
  std::fill(bitmap.begin(), bitmap.end(), 0);
  ASSERT_EQ(report(dev, 0, 256 * kPage, kPage, bitmap), 0);
  EXPECT_EQ(bitmap[0] | bitmap[1], 0u);
  // Larger report pages and an offset base.
  dev.mark_dirty(9 * kPage);
  dev.mark_dirty(3 * kPage);
  ASSERT_EQ(report(dev, 8 * kPage, 8 * kPage, 2 * kPage, bitmap), 0);
  EXPECT_EQ(bitmap[0], 1ull);  // page 9 is in the first 8 KiB page from iova 8*4K
  std::fill(bitmap.begin(), bitmap.end(), 0);
  ASSERT_EQ(report(dev, 0, 8 * kPage, kPage, bitmap), 0);
  EXPECT_EQ(bitmap[0], 1ull << 3);  // not cleared by the report that did not cover it

  EXPECT_EQ(stop(dev), 0);
  EXPECT_EQ(report(dev, 0, 64 * kPage, kPage, bitmap), EINVAL);
}

TEST(DmaLogging, ResetStopsLogging) {
  SimDevice dev(*find_profile("mlx5"), {.state_size = 100});
  ASSERT_EQ(start(dev, kPage, {{0, kPage}}), 0);
  ASSERT_TRUE(dev.reset());
  std::vector<std::uint64_t> bitmap(1, 0);
  EXPECT_EQ(report(dev, 0, kPage, kPage, bitmap), EINVAL);
  EXPECT_EQ(start(dev, kPage, {{0, kPage}}), 0);
}

}  // namespace
}  // namespace vfio::sim
