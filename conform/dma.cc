// conform: DMA dirty logging: START, REPORT and STOP.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_dma() {
  using uapi::Feature;
  if (auto r = dev_.reset(); !r) {
    for (auto id : {"dma/start", "dma/report", "dma/stop"})
      skip(id, kDma, Error{r.error().code, "reset failed with " + errno_name(r.error().code)});
    return;
  }
  std::vector<uapi::DmaLoggingRange> ranges;
  std::array<std::uint64_t, kLogLength / kPageSize / 64> bitmap{};
  auto start = [&](std::uint32_t count) {
    uapi::DmaLoggingControl ctl{kPageSize, count, 0,
                                reinterpret_cast<std::uintptr_t>(ranges.data())};
    return FeatureCall(flags_of(Feature::kDmaLoggingStart, uapi::kFeatureSet), ctl).run(dev_);
  };
  auto report = [&](std::uint64_t page_size) {
    uapi::DmaLoggingReport rep{0, kLogLength, page_size,
                               reinterpret_cast<std::uintptr_t>(bitmap.data())};
    return FeatureCall(flags_of(Feature::kDmaLoggingReport, uapi::kFeatureGet), rep).run(dev_);
  };
  auto stop = [&] {
    return FeatureCall(flags_of(Feature::kDmaLoggingStop, uapi::kFeatureSet)).run(dev_);
  };

  if (!probe_feature(dev_, Feature::kDmaLoggingStart, uapi::kFeatureSet)) {
    ranges = {{0, kLogLength}};
    expect_errno("dma/unsupported-start", kDma, start(1), ENOTTY,
                 "DMA_LOGGING_START, not advertised");
    expect_errno("dma/unsupported-report", kDma, report(kPageSize), ENOTTY,
                 "DMA_LOGGING_REPORT, not advertised");
    expect_errno("dma/unsupported-stop", kDma, stop(), ENOTTY, "DMA_LOGGING_STOP, not advertised");
    return;
  }

  // A START that must fail; if it did not, logging is stopped again before the next check.
  auto bad_start = [&](std::string id, std::vector<uapi::DmaLoggingRange> rs, std::uint32_t count,
                       int want, std::string_view what) {
    (void)dev_.reset();
    ranges = std::move(rs);
    auto r = start(count);
    if (r) (void)stop();
    expect_errno(std::move(id), kDma, r, want, what);
  };
  bad_start("dma/start-zero-ranges", {{0, kLogLength}}, 0, EINVAL, "START with 0 ranges");
  bad_start("dma/start-unaligned", {{kPageSize, kPageSize / 2}}, 1, EINVAL,
            "START with a range of half a page");
  bad_start("dma/start-overlap", {{0, 2 * kPageSize}, {kPageSize, 2 * kPageSize}}, 2, EINVAL,
            "START with overlapping ranges");
  std::vector<uapi::DmaLoggingRange> many(kMaxLogRanges + 1);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = {2 * i * kPageSize, kPageSize};
  bad_start("dma/start-too-many", std::move(many), kMaxLogRanges + 1, E2BIG,
            fmt::format("START with {} ranges", kMaxLogRanges + 1));
  bad_start("dma/start-overflow", {{~std::uint64_t{0} - kPageSize + 1, 2 * kPageSize}}, 1,
            EOVERFLOW, "START with iova + length past 2^64");

  (void)dev_.reset();
  // The contract says only that it fails; no errno is pinned.
  expect_error("dma/report-without-start", kDma, report(kPageSize), "REPORT before START");

  (void)dev_.reset();
  ranges = {{0, kLogLength}};
  const auto started = start(1);
  expect_ok("dma/start", kDma, started, fmt::format("START [0, {:#x}) in 4 KiB pages", kLogLength));
  if (!started) {
    for (auto id : {"dma/start-twice", "dma/report", "dma/report-bad-page-size", "dma/stop",
                    "dma/report-after-stop"})
      skip(id, kDma, Error{EIO, "START failed"});
    return;
  }
  // One START at a time; the errno is not pinned either.
  if (auto again = start(1); again) {
    add("dma/start-twice", kDma, Verdict::kDeviation,
        "a second START while logging succeeded (the contract allows one at a time)");
  } else {
    expect_error("dma/start-twice", kDma, again, "a second START while logging");
  }
  if (auto rep = report(kPageSize); !rep && rep.error().code == EOPNOTSUPP) {
    add("dma/report", kDma, Verdict::kDeviation,
        "REPORT failed with EOPNOTSUPP: the kernel cannot read dirty bits for this device "
        "(built without IOMMUFD_DRIVER?)");
  } else {
    expect_ok("dma/report", kDma, rep, "REPORT with 4 KiB pages");
  }
  expect_errno("dma/report-bad-page-size", kDma, report(1000), EINVAL,
               "REPORT with page_size 1000");
  expect_ok("dma/stop", kDma, stop(), "STOP");
  expect_error("dma/report-after-stop", kDma, report(kPageSize), "REPORT after STOP");
}

}  // namespace vfio::conform::detail
