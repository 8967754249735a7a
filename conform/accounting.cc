// conform: Pre-copy accounting: PRECOPY_INFO's initial_bytes and dirty_bytes against the data
// the save fd really gives. A device may keep dirtying while it is read (the guest runs in
// PRE_COPY): only what new dirt cannot explain is judged, and a device that ever reports dirty
// bytes is not judged on data beyond its report.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

// One read and the PRECOPY_INFO right after it (for the first step: no read, n = 0).
struct Step {
  std::uint64_t n = 0;
  uapi::PrecopyInfo info{};
  std::uint64_t pending() const { return info.initial_bytes + info.dirty_bytes; }
};

}  // namespace

void Checker::check_accounting() {
  static constexpr std::array kIds = {"precopy-accounting/initial-never-grows",
                                      "precopy-accounting/follows-reads",
                                      "precopy-accounting/covers-readable"};
  if (!has(uapi::kMigrationPreCopy)) {
    for (auto id : kIds) add(id, kAccounting, Verdict::kSkip, "device has no PRE_COPY");
    return;
  }
  auto info_of = [&](int fd) -> Result<uapi::PrecopyInfo> {
    uapi::PrecopyInfo info{sizeof(uapi::PrecopyInfo), 0, 0, 0};
    if (auto r = dev_.precopy_info(fd, info); !r) return std::unexpected(r.error());
    return info;
  };

  // Whether the device ever reported dirty data: then data beyond a report may be new dirt.
  bool dirties = false;

  // Small reads with PRECOPY_INFO after each, until the temporary end of data, or until new
  // dirt has kept the device producing twice what it first reported.
  if (auto fd = enter(State::kPreCopy); !fd) {
    skip(kIds[0], kAccounting, fd.error());
    skip(kIds[1], kAccounting, fd.error());
  } else {
    std::vector<Step> steps;
    std::optional<Error> failed;
    if (auto first = info_of(fd->get()); first)
      steps.push_back({0, *first});
    else
      failed = first.error();
    const std::uint64_t p0 = steps.empty() ? 0 : steps[0].pending();
    const std::size_t chunk = std::clamp<std::uint64_t>(p0 / 32, 1, buf_.size());
    std::uint64_t total = 0;
    constexpr std::size_t kMaxSteps = 512;
    while (!failed && steps.size() < kMaxSteps && total <= 2 * p0 + kSizeSlack) {
      auto n = dev_.read(fd->get(), std::span(buf_).first(chunk));
      if (!n || *n == 0) break;  // ENOMSG, 0 or a failure: precopy/temporary-eof judges which
      total += *n;
      if (auto info = info_of(fd->get()); info)
        steps.push_back({*n, *info});
      else
        failed = info.error();
    }
    if (failed) {
      const Error why{failed->code, "PRECOPY_INFO failed with " + errno_name(failed->code)};
      skip(kIds[0], kAccounting, why);
      skip(kIds[1], kAccounting, why);
    } else {
      const std::string walk = fmt::format("{} reads of up to {} bytes", steps.size() - 1, chunk);
      std::size_t grew = 0, lost = 0;
      for (const Step& step : steps) dirties |= step.info.dirty_bytes > 0;
      for (std::size_t k = 1; k < steps.size(); ++k) {
        if (!grew && steps[k].info.initial_bytes > steps[k - 1].info.initial_bytes) grew = k;
        if (!lost && steps[k].pending() + steps[k].n < steps[k - 1].pending()) lost = k;
      }
      if (grew)
        add(kIds[0], kAccounting, Verdict::kFail,
            fmt::format("initial_bytes grew from {} to {} at read {} of {}",
                        steps[grew - 1].info.initial_bytes, steps[grew].info.initial_bytes, grew,
                        walk));
      else
        add(kIds[0], kAccounting, Verdict::kPass,
            fmt::format("initial_bytes {} -> {} over {}", steps.front().info.initial_bytes,
                        steps.back().info.initial_bytes, walk));
      if (lost)
        add(kIds[1], kAccounting, Verdict::kFail,
            fmt::format("initial + dirty fell from {} to {} across a read of {} bytes: {} bytes "
                        "dropped from the report unread (read {})",
                        steps[lost - 1].pending(), steps[lost].pending(), steps[lost].n,
                        steps[lost - 1].pending() - steps[lost].pending() - steps[lost].n, lost));
      else
        add(kIds[1], kAccounting, Verdict::kPass,
            fmt::format("initial + dirty {} -> {}, never falling by more than was read, over {}",
                        steps.front().pending(), steps.back().pending(), walk));
    }
  }

  // One PRECOPY_INFO, then everything readable right now.
  if (auto fd = enter(State::kPreCopy); !fd) {
    skip(kIds[2], kAccounting, fd.error());
  } else if (auto info = info_of(fd->get()); !info) {
    skip(kIds[2], kAccounting,
         Error{info.error().code, "PRECOPY_INFO failed with " + errno_name(info.error().code)});
  } else {
    const std::uint64_t reported = info->initial_bytes + info->dirty_bytes;
    std::uint64_t total = 0;
    bool ended = false;
    while (total <= 2 * reported + kSizeSlack) {
      auto n = dev_.read(fd->get(), buf_);
      if (!n || *n == 0) {
        ended = true;
        break;
      }
      total += *n;
    }
    const auto after = info_of(fd->get());
    dirties |= info->dirty_bytes > 0 || (after && after->initial_bytes + after->dirty_bytes > 0);
    const std::string what =
        fmt::format("initial {} + dirty {} reported, {} bytes read{}", info->initial_bytes,
                    info->dirty_bytes, total, ended ? " to the temporary end" : "");
    if (total <= reported)
      add(kIds[2], kAccounting, Verdict::kPass, what);
    else if (!ended || dirties)
      add(kIds[2], kAccounting, Verdict::kDeviation,
          what + fmt::format(", and the device {}: data dirtied while reading, not judged",
                             ended ? "reports dirty data" : "still produces"));
    else
      add(kIds[2], kAccounting, Verdict::kFail,
          what + ": the device under-reports what it has to send");
  }
}

}  // namespace vfio::conform::detail
