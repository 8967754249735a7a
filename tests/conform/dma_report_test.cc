// The dma-report checks: the simulator passes them, and each catches a device that gets REPORT
// wrong in its own way (decorators rewriting the REPORT call on its way to the simulator).
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <map>

#include "conform/checker.h"
#include "devices/device_spec.h"
#include "tests/forwarding_device.h"

namespace vfio::conform {
namespace {

constexpr std::uint32_t kReportGet =
    static_cast<std::uint32_t>(uapi::Feature::kDmaLoggingReport) | uapi::kFeatureGet;
constexpr std::uint32_t kStartSet =
    static_cast<std::uint32_t>(uapi::Feature::kDmaLoggingStart) | uapi::kFeatureSet;

struct Sim {
  std::unique_ptr<Device> device;
  std::shared_ptr<sim::SimDevice> model;
};

Sim open_mlx5() {
  auto arg = devices::parse_device_arg("sim:mlx5,size=64K,transport=direct");
  EXPECT_TRUE(arg);
  auto opened = devices::open_device(*arg, 0);
  EXPECT_TRUE(opened);
  return {std::move(opened->device), opened->model};
}

// The options `vfio-mig conform` gives a simulated device.
Report run_checks(Device& dev, const std::shared_ptr<sim::SimDevice>& model) {
  Options options;
  options.strict_resume_validation = true;
  options.send_hanging_arcs = true;
  options.report_huge_pages = true;
  options.dma_write = [model](std::uint64_t iova) { model->mark_dirty(iova); };
  auto report = check_device(dev, options);
  EXPECT_TRUE(report) << report.error().describe();
  return report ? *report : Report{};
}

// The ids that did not pass, each with its verdict.
std::map<std::string, Verdict> not_passed(const Report& r) {
  std::map<std::string, Verdict> out;
  for (const auto& c : r.checks)
    if (c.verdict != Verdict::kPass && c.verdict != Verdict::kSkip) out[c.id] = c.verdict;
  return out;
}

// Forwards everything; a REPORT GET goes through report() instead, which subclasses bend.
class ReportDecorator : public testing::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;

  Result<> feature(std::span<std::byte> arg) override {
    uapi::FeatureHeader h;
    std::memcpy(&h, arg.data(), sizeof(h));
    if (h.flags == kStartSet && h.argsz >= sizeof(h) + sizeof(uapi::DmaLoggingControl)) {
      uapi::DmaLoggingControl ctl;
      std::memcpy(&ctl, arg.data() + sizeof(h), sizeof(ctl));
      if (ctl.num_ranges == 1 && ctl.ranges)
        std::memcpy(&logged_, reinterpret_cast<const void*>(ctl.ranges), sizeof(logged_));
    }
    if (h.flags != kReportGet || h.argsz < sizeof(h) + sizeof(uapi::DmaLoggingReport))
      return inner_->feature(arg);
    uapi::DmaLoggingReport rep;
    std::memcpy(&rep, arg.data() + sizeof(h), sizeof(rep));
    return report(rep);
  }

 protected:
  virtual Result<> report(const uapi::DmaLoggingReport& rep) { return forward(rep); }
  Result<> forward(const uapi::DmaLoggingReport& rep) {
    struct {
      uapi::FeatureHeader h;
      uapi::DmaLoggingReport rep;
    } call{{sizeof(call), kReportGet}, rep};
    return inner_->feature(std::as_writable_bytes(std::span(&call, 1)));
  }
  static std::byte* bitmap_of(const uapi::DmaLoggingReport& rep) {
    return reinterpret_cast<std::byte*>(static_cast<std::uintptr_t>(rep.bitmap));
  }
  static std::size_t bitmap_bytes(const uapi::DmaLoggingReport& rep) {
    return ((rep.length - 1) / rep.page_size + 1 + 63) / 64 * 8;
  }
  uapi::DmaLoggingRange logged_{};
};

// Broken: after a report, sets the byte just past the bitmap (a last word rounded up). Only in
// the dma-report group's bitmaps (logged from 4 GiB up), which have room after them: the other
// groups' have none, and this would corrupt the test's own memory.
class WritesPastBitmap : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    auto r = forward(rep);
    if (r && rep.iova >= (1ULL << 32)) bitmap_of(rep)[bitmap_bytes(rep)] = std::byte{0xff};
    return r;
  }
};

// Broken: a REPORT of part of the log clears all of it, so a later window misses its bits.
class ClearsWholeLog : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    auto r = forward(rep);
    if (!r || (rep.iova == logged_.iova && rep.length == logged_.length)) return r;
    std::vector<std::byte> scratch(logged_.length / 4096 / 8 + 8);
    (void)forward(
        {logged_.iova, logged_.length, 4096, reinterpret_cast<std::uintptr_t>(scratch.data())});
    return r;
  }
};

// Broken: rounds the bitmap address down to 8 bytes, writing its bits in the wrong place.
class AlignsBitmapDown : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    auto aligned = rep;
    aligned.bitmap &= ~std::uint64_t{7};
    return forward(aligned);
  }
};

// Allowed: refuses a bitmap address that is not 8-byte aligned.
class RefusesUnalignedBitmap : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    if (rep.bitmap % 8) return fail(EINVAL, "unaligned bitmap");
    return forward(rep);
  }
};

// Broken: counts bits from a page-size boundary instead of the report's own iova.
class CountsFromAlignedIova : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    auto wide = rep;
    wide.iova -= rep.iova % rep.page_size;
    wide.length += rep.iova - wide.iova;
    return forward(wide);
  }
};

// Broken: keeps the page size in 32 bits, so 2^32 and up are refused.
class PageSizeInU32 : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    if (rep.page_size > 0xffffffffu) return fail(EINVAL, "page size does not fit");
    return forward(rep);
  }
};

// Broken: rounds a page size that is not a power of two down to one instead of refusing it.
class RoundsPageSize : public ReportDecorator {
  using ReportDecorator::ReportDecorator;
  Result<> report(const uapi::DmaLoggingReport& rep) override {
    auto rounded = rep;
    rounded.page_size = std::bit_floor(rep.page_size);
    return forward(rounded);
  }
};

template <class Broken>
std::map<std::string, Verdict> broken_verdicts() {
  auto sim = open_mlx5();
  Broken dev(std::move(sim.device));
  const auto report = run_checks(dev, sim.model);
  return not_passed(report);
}

TEST(DmaReport, SimulatorPassesEveryCheck) {
  auto sim = open_mlx5();
  const auto report = run_checks(*sim.device, sim.model);
  std::size_t n = 0;
  for (const auto& c : report.checks) {
    if (c.group != "dma-report") continue;
    ++n;
    EXPECT_EQ(c.verdict, Verdict::kPass) << c.id << ": " << c.detail;
  }
  EXPECT_EQ(n, 18u);
  // The device really was made to write: the bits come back set.
  const Check* windows = report.find("dma-report/windows");
  ASSERT_NE(windows, nullptr);
  EXPECT_NE(windows->detail.find("9 of 1024 bits set"), std::string::npos) << windows->detail;
}

TEST(DmaReport, WithoutADmaSourceAnIdleDeviceReportsNothing) {
  auto sim = open_mlx5();
  Options options;
  options.report_huge_pages = true;
  const auto report = check_device(*sim.device, options);
  ASSERT_TRUE(report);
  for (const auto& c : report->checks) {
    if (c.group != "dma-report") continue;
    EXPECT_EQ(c.verdict, Verdict::kPass) << c.id << ": " << c.detail;
  }
  const Check* c = report->find("dma-report/page-size-2^12");
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->detail.find("0 of 1024 bits set"), std::string::npos) << c->detail;
  EXPECT_NE(c->detail.find("idle device"), std::string::npos) << c->detail;
}

// On a real host a page size of 2^61 or more could divide by zero in the kernel: not sent.
TEST(DmaReport, HugePageSizesAreSkippedUnlessAsked) {
  auto sim = open_mlx5();
  const auto report = check_device(*sim.device, Options{});
  ASSERT_TRUE(report);
  for (auto id : {"dma-report/page-size-2^62", "dma-report/page-size-2^63"}) {
    const Check* c = report->find(id);
    ASSERT_NE(c, nullptr) << id;
    EXPECT_EQ(c->verdict, Verdict::kSkip) << id;
  }
  EXPECT_EQ(report->find("dma-report/page-size-2^48")->verdict, Verdict::kPass);
}

TEST(DmaReport, WritingPastTheBitmapFailsTheCanary) {
  EXPECT_EQ(broken_verdicts<WritesPastBitmap>(),
            (std::map<std::string, Verdict>{{"dma-report/canary", Verdict::kFail}}));
}

TEST(DmaReport, AWindowClearingTheWholeLogFailsWindows) {
  EXPECT_EQ(broken_verdicts<ClearsWholeLog>(),
            (std::map<std::string, Verdict>{{"dma-report/windows", Verdict::kFail}}));
}

TEST(DmaReport, AMisplacedUnalignedBitmapFails) {
  EXPECT_EQ(broken_verdicts<AlignsBitmapDown>(),
            (std::map<std::string, Verdict>{{"dma-report/bitmap-unaligned", Verdict::kFail},
                                            {"dma-report/bitmap-page-straddle", Verdict::kFail}}));
}

TEST(DmaReport, RefusingAnUnalignedBitmapIsADeviation) {
  EXPECT_EQ(
      broken_verdicts<RefusesUnalignedBitmap>(),
      (std::map<std::string, Verdict>{{"dma-report/bitmap-unaligned", Verdict::kDeviation},
                                      {"dma-report/bitmap-page-straddle", Verdict::kDeviation}}));
}

TEST(DmaReport, BitsCountedFromAPageBoundaryFailRangesInsideLargePages) {
  EXPECT_EQ(
      broken_verdicts<CountsFromAlignedIova>(),
      (std::map<std::string, Verdict>{{"dma-report/range-inside-large-page", Verdict::kFail},
                                      {"dma-report/range-inside-huge-page", Verdict::kFail}}));
}

TEST(DmaReport, ARefusedHugePageSizeFails) {
  EXPECT_EQ(broken_verdicts<PageSizeInU32>(),
            (std::map<std::string, Verdict>{{"dma-report/page-size-2^32", Verdict::kFail},
                                            {"dma-report/page-size-2^40", Verdict::kFail},
                                            {"dma-report/page-size-2^48", Verdict::kFail},
                                            {"dma-report/page-size-2^62", Verdict::kFail},
                                            {"dma-report/page-size-2^63", Verdict::kFail}}));
}

TEST(DmaReport, APageSizeNotAPowerOfTwoAcceptedFails) {
  EXPECT_EQ(broken_verdicts<RoundsPageSize>(),
            (std::map<std::string, Verdict>{
                {"dma-report/page-size-not-power-of-2", Verdict::kFail},
                {"dma-report/page-size-not-power-of-2-huge", Verdict::kFail}}));
}

}  // namespace
}  // namespace vfio::conform
