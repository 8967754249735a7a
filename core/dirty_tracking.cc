#include "core/dirty_tracking.h"

#include <bit>
#include <cerrno>

#include <fmt/format.h>

#include "core/retry.h"

namespace vfio {
namespace {

template <class Payload>
struct FeatureCall {
  uapi::FeatureHeader header;
  Payload payload;
};

std::uint32_t set_flags(uapi::Feature f, std::uint32_t direction) {
  return static_cast<std::uint32_t>(f) | direction;
}

std::uint64_t user_pointer(const void* p) {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p));
}

Error named(Error e, const Device& dev, std::string_view what) {
  e.message = fmt::format("{}: {}: {}", dev.name(), what, e.message);
  return e;
}

}  // namespace

Result<> dma_logging_start(Device& dev, std::uint64_t page_size,
                           std::span<const uapi::DmaLoggingRange> ranges) {
  FeatureCall<uapi::DmaLoggingControl> call{
      {sizeof(call), set_flags(uapi::Feature::kDmaLoggingStart, uapi::kFeatureSet)},
      {page_size, static_cast<std::uint32_t>(ranges.size()), 0, user_pointer(ranges.data())}};
  if (auto r =
          retry_transient([&] { return dev.feature(std::as_writable_bytes(std::span(&call, 1))); });
      !r)
    return std::unexpected(named(r.error(), dev, "DMA logging start"));
  return {};
}

Result<std::vector<std::uint64_t>> dma_logging_report(Device& dev, std::uint64_t iova,
                                                      std::uint64_t length,
                                                      std::uint64_t page_size) {
  if (page_size == 0 || length % page_size)
    return fail(EINVAL, fmt::format("{}: DMA logging report of {} bytes in {}-byte pages",
                                    dev.name(), length, page_size));
  const std::uint64_t pages = length / page_size;
  std::vector<std::uint64_t> bitmap((pages + 63) / 64);
  FeatureCall<uapi::DmaLoggingReport> call{
      {sizeof(call), set_flags(uapi::Feature::kDmaLoggingReport, uapi::kFeatureGet)},
      {iova, length, page_size, user_pointer(bitmap.data())}};
  if (auto r =
          retry_transient([&] { return dev.feature(std::as_writable_bytes(std::span(&call, 1))); });
      !r)
    return std::unexpected(named(r.error(), dev, "DMA logging report"));
  return bitmap;
}

Result<> dma_logging_stop(Device& dev) {
  uapi::FeatureHeader header{sizeof(header),
                             set_flags(uapi::Feature::kDmaLoggingStop, uapi::kFeatureSet)};
  if (auto r = retry_transient(
          [&] { return dev.feature(std::as_writable_bytes(std::span(&header, 1))); });
      !r)
    return std::unexpected(named(r.error(), dev, "DMA logging stop"));
  return {};
}

std::vector<std::uint64_t> dirty_pages(std::span<const std::uint64_t> bitmap, std::uint64_t iova,
                                       std::uint64_t page_size) {
  std::vector<std::uint64_t> out;
  for (std::size_t w = 0; w < bitmap.size(); ++w) {
    for (std::uint64_t bits = bitmap[w]; bits; bits &= bits - 1)
      out.push_back(iova +
                    (w * 64 + static_cast<std::uint64_t>(std::countr_zero(bits))) * page_size);
  }
  return out;
}

}  // namespace vfio
