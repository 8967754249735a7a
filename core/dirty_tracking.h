// Device dirty-page tracking (VFIO_DEVICE_FEATURE_DMA_LOGGING_*): what the reference's
// vfio_devices_dma_logging_start/stop and vfio_device_dma_logging_report do for one device.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/device.h"

namespace vfio {

// Starts logging the device's DMA writes into `ranges` at `page_size` granularity.
Result<> dma_logging_start(Device& dev, std::uint64_t page_size,
                           std::span<const uapi::DmaLoggingRange> ranges);
// The pages of [iova, iova + length) written since the last report (or start): a bitmap of
// 64-bit words, bit i for page iova + i * page_size. The device clears what it reports.
Result<std::vector<std::uint64_t>> dma_logging_report(Device& dev, std::uint64_t iova,
                                                      std::uint64_t length,
                                                      std::uint64_t page_size);
Result<> dma_logging_stop(Device& dev);

// The iovas of the set bits, in order.
std::vector<std::uint64_t> dirty_pages(std::span<const std::uint64_t> bitmap, std::uint64_t iova,
                                       std::uint64_t page_size);

}  // namespace vfio
