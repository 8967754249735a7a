// conform: DMA logging REPORT: the bitmap it fills, in one call or in windows, at any page size,
// at any bitmap address, and never a byte past it (the bug classes of the kernel's iova_bitmap,
// fixed 2022-2025, and of drivers rounding a range to their own pages).
#include <fmt/format.h>

#include <bit>

#include "conform/checker_context.h"
#include "core/aligned_buffer.h"

namespace vfio::conform::detail {
namespace {

// Logging runs over [kBase, kBase + kSpan) at 4 KiB; every REPORT stays inside it.
constexpr std::uint64_t kBase = 1ULL << 32;
constexpr std::uint64_t kSpan = 4ULL << 20;
// Offsets of the pages the device is made to write: the first and last, both sides of 64 KiB and
// 2 MiB boundaries (where windows and large pages split), and pages inside a 2 MiB page.
constexpr std::array<std::uint64_t, 9> kWritten = {0,
                                                   5 * kPageSize,
                                                   15 * kPageSize,
                                                   16 * kPageSize,
                                                   19 * kPageSize,
                                                   (2 << 20) - kPageSize,
                                                   (2 << 20) + 2 * kPageSize,
                                                   (2 << 20) + 3 * kPageSize,
                                                   kSpan - kPageSize};
// Bytes after every bitmap: room for a device writing past it, and the canary's extent.
constexpr std::size_t kSlack = 64;
constexpr std::byte kCanary{0xa5};
// Page sizes from here up divide by zero in the kernel's iova_bitmap before "iommufd: Don't
// overflow during division for dirty tracking" (October 2025).
constexpr int kFirstCrashingShift = 61;

struct Window {
  std::uint64_t iova, length, page_size;
  std::uint64_t bits() const { return (length - 1) / page_size + 1; }
  std::size_t bytes() const { return (bits() + 63) / 64 * 8; }
};

using Bits = std::vector<std::uint64_t>;  // the uAPI's bitmap: u64 words, bit i of word i / 64

void set_bit(Bits& b, std::uint64_t i) {
  if (i / 64 >= b.size()) b.resize(i / 64 + 1);
  b[i / 64] |= 1ULL << (i % 64);
}

// What REPORT must answer for `w` after the device wrote `pages` (4 KiB each): bit i set when a
// written page meets [iova + i * page_size, iova + (i + 1) * page_size), clipped to the range at
// both ends, as the kernel's iova_bitmap counts from the report's own iova.
Bits expected(const Window& w, std::span<const std::uint64_t> pages) {
  Bits out(w.bytes() / 8);
  const std::uint64_t last = w.iova + (w.length - 1);
  for (std::uint64_t p : pages) {
    const std::uint64_t lo = std::max(p, w.iova);
    const std::uint64_t hi = std::min(p + (kPageSize - 1), last);
    if (lo > hi) continue;
    for (std::uint64_t i = (lo - w.iova) / w.page_size; i <= (hi - w.iova) / w.page_size; ++i)
      set_bit(out, i);
  }
  return out;
}

// One REPORT of `w` into `bitmap` (which the caller zeroed).
Result<> report(Device& dev, const Window& w, std::byte* bitmap) {
  uapi::DmaLoggingReport rep{w.iova, w.length, w.page_size,
                             reinterpret_cast<std::uintptr_t>(bitmap)};
  return FeatureCall(flags_of(uapi::Feature::kDmaLoggingReport, uapi::kFeatureGet), rep).run(dev);
}

Bits read_bits(const std::byte* bitmap, const Window& w) {
  Bits out(w.bytes() / 8);
  std::memcpy(out.data(), bitmap, w.bytes());
  return out;
}

// A page-aligned buffer holding a bitmap for `w` at byte `offset`, slack on both sides.
struct BitmapBuffer {
  BitmapBuffer(const Window& w, std::size_t offset)
      : buf(offset + w.bytes() + kSlack), at(buf.data() + offset), size(w.bytes()) {
    std::fill_n(buf.data(), buf.size(), kCanary);
    std::fill_n(at, size, std::byte{0});
  }
  AlignedBuffer buf;
  std::byte* at;
  std::size_t size;
};

// Bits `got` has that `want` has not, and the other way round, as page iovas of `w`.
std::string bit_difference(const Window& w, const Bits& got, const Bits& want, bool* missing) {
  std::string missed, extra;
  const std::size_t n = std::max(got.size(), want.size());
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint64_t g = k < got.size() ? got[k] : 0, e = k < want.size() ? want[k] : 0;
    for (std::uint64_t d = g ^ e; d; d &= d - 1) {
      const std::uint64_t bit = k * 64 + std::countr_zero(d);
      auto& out = (e >> (bit % 64)) & 1 ? missed : extra;
      if (out.size() < 120)
        out += fmt::format("{}bit {} ({:#x})", out.empty() ? "" : ", ", bit,
                           w.iova + bit * w.page_size);
    }
  }
  *missing = !missed.empty();
  std::string out;
  if (!missed.empty()) out += "written pages not reported: " + missed;
  if (!extra.empty()) out += (out.empty() ? "" : "; ") + ("pages reported unwritten: " + extra);
  return out;
}

std::size_t set_count(const Bits& b) {
  std::size_t n = 0;
  for (std::uint64_t word : b) n += std::popcount(word);
  return n;
}

std::string page_size_name(std::uint64_t page_size) {
  return fmt::format("2^{}", std::countr_zero(page_size));
}

}  // namespace

void Checker::check_dma_report() {
  using uapi::Feature;
  constexpr std::array kPageSizes = {1ULL << 12, 1ULL << 16, 1ULL << 21, 1ULL << 30, 1ULL << 32,
                                     1ULL << 40, 1ULL << 48, 1ULL << 62, 1ULL << 63};
  auto skip_all = [&](const std::string& why, bool page_size_checks) {
    std::vector<std::string> ids = {"dma-report/windows",
                                    "dma-report/canary",
                                    "dma-report/bitmap-unaligned",
                                    "dma-report/bitmap-page-straddle",
                                    "dma-report/range-inside-large-page",
                                    "dma-report/range-inside-huge-page"};
    for (std::uint64_t ps : kPageSizes) ids.push_back("dma-report/page-size-" + page_size_name(ps));
    if (page_size_checks)
      ids.insert(ids.end(), {"dma-report/page-size-below-4k", "dma-report/page-size-not-power-of-2",
                             "dma-report/page-size-not-power-of-2-huge"});
    for (auto& id : ids) add(id, kDmaReport, Verdict::kSkip, why);
  };
  if (!probe_feature(dev_, Feature::kDmaLoggingReport, uapi::kFeatureGet))
    return skip_all("DMA logging not advertised", true);

  // The pages the device was made to write; none when conform has no way to make it DMA.
  std::vector<std::uint64_t> written;
  auto write_pages = [&] {
    if (!opt_.dma_write) return;
    written.clear();
    for (std::uint64_t off : kWritten) {
      opt_.dma_write(kBase + off);
      written.push_back(kBase + off);
    }
  };
  const std::string idle =
      opt_.dma_write ? "" : " (no way to make this device DMA: an idle device, all clear)";
  // Logging afresh over the span, and the device writes its pages.
  auto begin = [&]() -> Result<> {
    (void)FeatureCall(flags_of(Feature::kDmaLoggingStop, uapi::kFeatureSet)).run(dev_);
    if (auto r = dev_.reset(); !r)
      return fail(r.error().code, "reset failed with " + errno_name(r.error().code));
    uapi::DmaLoggingRange range{kBase, kSpan};
    uapi::DmaLoggingControl ctl{kPageSize, 1, 0, reinterpret_cast<std::uintptr_t>(&range)};
    if (auto r = FeatureCall(flags_of(Feature::kDmaLoggingStart, uapi::kFeatureSet), ctl).run(dev_);
        !r)
      return fail(r.error().code, "START failed with " + errno_name(r.error().code));
    write_pages();
    return {};
  };
  auto end = [&] {
    (void)FeatureCall(flags_of(Feature::kDmaLoggingStop, uapi::kFeatureSet)).run(dev_);
  };
  // Missing bits lose guest memory: a failure. Extra ones only cost a resend, but conform made
  // the only writes of a simulated device; a real one may DMA by itself.
  auto judge = [&](std::string id, const Window& w, const Bits& got, std::string_view what) {
    bool missing = false;
    const std::string diff = bit_difference(w, got, expected(w, written), &missing);
    if (diff.empty())
      return add(
          std::move(id), kDmaReport, Verdict::kPass,
          fmt::format("{}: {} of {} bits set, as written{}", what, set_count(got), w.bits(), idle));
    add(std::move(id), kDmaReport, missing || opt_.dma_write ? Verdict::kFail : Verdict::kDeviation,
        fmt::format("{}: {}", what, diff));
  };
  // One REPORT of `w` into a bitmap `offset` bytes into a page, judged bit by bit.
  auto exact = [&](std::string id, const Window& w, std::size_t offset, std::string_view what) {
    if (auto r = begin(); !r) return skip(std::move(id), kDmaReport, r.error());
    BitmapBuffer b(w, offset);
    const auto r = report(dev_, w, b.at);
    end();
    if (!r && offset % 8 && r.error().code == EINVAL)
      return add(std::move(id), kDmaReport, Verdict::kDeviation,
                 fmt::format("{}: refused with EINVAL; the uAPI asks no alignment of the bitmap "
                             "and Linux's iova_bitmap takes any address",
                             what));
    if (!r)
      return add(std::move(id), kDmaReport, Verdict::kFail,
                 fmt::format("{}: failed with {}", what, errno_name(r.error().code)));
    judge(std::move(id), w, read_bits(b.at, w), what);
  };

  // Whether REPORT works at all: Debian's 6.12 has no CONFIG_IOMMUFD_DRIVER, and every REPORT
  // fails with EOPNOTSUPP there, after the vfio core has checked the page size.
  if (auto r = begin(); !r) return skip_all("setup: " + r.error().message, true);
  const Window whole{kBase, kSpan, kPageSize};
  std::optional<Error> unusable;
  {
    BitmapBuffer b(whole, 0);
    if (auto r = report(dev_, whole, b.at); !r) unusable = r.error();
  }
  for (auto [id, ps] : {std::pair{"dma-report/page-size-below-4k", 1ULL << 11},
                        std::pair{"dma-report/page-size-not-power-of-2", 3ULL << 12},
                        std::pair{"dma-report/page-size-not-power-of-2-huge", 3ULL << 61}}) {
    const Window w{kBase, kSpan, ps};
    BitmapBuffer b(whole, 0);  // big enough for whatever a wrong device writes
    expect_errno(id, kDmaReport, report(dev_, w, b.at), EINVAL,
                 fmt::format("REPORT with page_size {:#x}", ps));
  }
  end();
  if (unusable && unusable->code == EOPNOTSUPP)
    return skip_all(
        "REPORT fails with EOPNOTSUPP: this kernel cannot read dirty bits (no "
        "CONFIG_IOMMUFD_DRIVER, as Debian's 6.12)",
        false);
  if (unusable) return skip_all("setup: REPORT failed with " + errno_name(unusable->code), false);

  // One call and four windows (page-aligned, uneven) after the same writes: the same bits.
  if (auto r = begin(); !r) {
    skip("dma-report/windows", kDmaReport, r.error());
  } else {
    BitmapBuffer one(whole, 0);
    auto first = report(dev_, whole, one.at);
    write_pages();
    Bits joined(whole.bytes() / 8);
    std::optional<Error> failed = first ? std::nullopt : std::optional(first.error());
    constexpr std::array<std::uint64_t, 5> kCuts = {0, 13, 16, 512 + 3, kSpan / kPageSize};
    for (std::size_t k = 0; k + 1 < kCuts.size() && !failed; ++k) {
      const Window w{kBase + kCuts[k] * kPageSize, (kCuts[k + 1] - kCuts[k]) * kPageSize,
                     kPageSize};
      BitmapBuffer b(w, 0);
      if (auto r = report(dev_, w, b.at); !r) failed = r.error();
      const Bits part = read_bits(b.at, w);
      for (std::uint64_t i = 0; i < w.bits(); ++i)
        if ((part[i / 64] >> (i % 64)) & 1) set_bit(joined, kCuts[k] + i);
    }
    end();
    if (failed) {
      add("dma-report/windows", kDmaReport, Verdict::kFail,
          "a REPORT failed with " + errno_name(failed->code));
    } else {
      bool missing = false;
      const std::string diff = bit_difference(whole, joined, read_bits(one.at, whole), &missing);
      if (!diff.empty())
        add("dma-report/windows", kDmaReport, Verdict::kFail,
            "four windows vs one call after the same writes: " + diff);
      else
        judge("dma-report/windows", whole, joined, "one call and four windows agree");
    }
  }

  // Nothing written past the bitmap: the canary after its last word stays.
  if (auto r = begin(); !r) {
    skip("dma-report/canary", kDmaReport, r.error());
  } else {
    BitmapBuffer b(whole, 0);
    const auto rep = report(dev_, whole, b.at);
    end();
    const auto* after = b.at + b.size;
    const auto touched =
        std::find_if(after, after + kSlack, [](std::byte x) { return x != kCanary; });
    if (!rep)
      add("dma-report/canary", kDmaReport, Verdict::kFail,
          "REPORT failed with " + errno_name(rep.error().code));
    else if (touched != after + kSlack)
      add("dma-report/canary", kDmaReport, Verdict::kFail,
          fmt::format("byte {} after the {}-byte bitmap was written ({:#04x})", touched - after,
                      b.size, static_cast<unsigned>(*touched)));
    else
      add("dma-report/canary", kDmaReport, Verdict::kPass,
          fmt::format("{} bytes after the {}-byte bitmap untouched", kSlack, b.size));
  }

  exact("dma-report/bitmap-unaligned", whole, 3, "bitmap at a page offset of 3");
  exact("dma-report/bitmap-page-straddle", whole, kPageSize - 13,
        "bitmap at a page offset of 4083, across a page boundary");
  // Bits count from the report's own iova, not from a page-size boundary.
  exact("dma-report/range-inside-large-page",
        Window{kBase + 12 * kPageSize, kSpan - 17 * kPageSize, 1 << 16}, 0,
        "64 KiB pages from 48 KiB into the span to 20 KiB before its end");
  exact("dma-report/range-inside-huge-page",
        Window{kBase + (1 << 20) + 3 * kPageSize, 5 << 19, 2 << 20}, 0,
        "2 MiB pages over 2.5 MiB from 1 MiB + 12 KiB into the span");
  for (std::uint64_t ps : kPageSizes) {
    auto id = "dma-report/page-size-" + page_size_name(ps);
    if (std::countr_zero(ps) >= kFirstCrashingShift && !opt_.report_huge_pages)
      add(std::move(id), kDmaReport, Verdict::kSkip,
          "not sent: Linux's iova_bitmap divided by zero at page sizes of 2^61 and more until "
          "October 2025; --unsafe-arcs sends it");
    else
      exact(std::move(id), Window{kBase, kSpan, ps}, 0,
            fmt::format("4 MiB in pages of {}", page_size_name(ps)));
  }
}

}  // namespace vfio::conform::detail
