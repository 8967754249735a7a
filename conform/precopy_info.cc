// conform: precopy-info: VFIO_MIG_GET_PRECOPY_INFO against a reader on another thread, and in
// PRE_COPY_P2P as in PRE_COPY. A VMM asks from its migration thread while the save fd is read;
// a driver computing the figures outside the lock its read path takes reports a chunk in flight
// twice or not at all. PRE_COPY_P2P has its own arcs in every driver's step function (mlx5
// suspends the device's initiator there), where accounting can be left behind or re-armed.
#include <fmt/format.h>

#include <atomic>
#include <latch>
#include <thread>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

constexpr std::size_t kReads = 64;  // reads while the other thread asks, at most

}  // namespace

void Checker::check_precopy_info() {
  static constexpr std::array kIds = {"precopy-info/during-reads", "precopy-info/falls-in-PCP",
                                      "precopy-info/kept-across-PC->PCP"};
  if (!has(uapi::kMigrationPreCopy)) {
    for (auto id : kIds) add(id, kPrecopyInfo, Verdict::kSkip, "device has no PRE_COPY");
    return;
  }
  auto info_failed = [](const Error& e, std::string_view where) {
    return Error{e.code, fmt::format("PRECOPY_INFO {} failed with {}", where, errno_name(e.code))};
  };

  // Another thread asks PRECOPY_INFO without pause while this one reads the save fd in small
  // reads (reads stay on the checks' thread, as a VMM's migration thread reads while its monitor
  // asks): initial_bytes never grows however the calls interleave.
  if (auto fd = enter(State::kPreCopy); !fd) {
    skip(kIds[0], kPrecopyInfo, fd.error());
  } else if (auto first = precopy_info_of(fd->get()); !first) {
    skip(kIds[0], kPrecopyInfo, info_failed(first.error(), "in PRE_COPY"));
  } else {
    const std::size_t chunk = std::clamp<std::uint64_t>(first->initial_bytes / 32, 1, kPageSize);
    std::latch asking(1);  // the asker's first call is back: the reads may begin
    std::atomic<bool> done = false, failed = false;
    // The asker's findings, read after it is joined: judged on the fly, as it asks without limit.
    struct {
      std::uint64_t calls = 0, last = 0;
      std::optional<std::pair<std::uint64_t, std::uint64_t>> grew;  // from, to
      std::uint64_t grew_at = 0;
      std::optional<Error> error;
    } asked;
    asked.last = first->initial_bytes;
    std::thread asker([&, fd = fd->get()] {
      for (bool first_call = true;; first_call = false) {
        const bool last = done;  // one more call after the reads ended
        auto info = precopy_info_of(fd);
        if (!info) {
          asked.error = info.error();
          failed = true;
        } else {
          ++asked.calls;
          if (!asked.grew && info->initial_bytes > asked.last) {
            asked.grew = std::pair{asked.last, info->initial_bytes};
            asked.grew_at = asked.calls;
          }
          asked.last = info->initial_bytes;
        }
        if (first_call) asking.count_down();
        if (!info || last) break;
      }
    });
    asking.wait();
    std::uint64_t read_total = 0;
    for (std::size_t i = 0; i < kReads && !failed; ++i) {
      auto n = dev_.read(fd->get(), std::span(buf_).first(std::min(buf_.size(), chunk)));
      if (!n || *n == 0) break;  // the temporary end of data
      read_total += *n;
    }
    done = true;
    asker.join();
    // How many calls overlapped depends on scheduling: only a failure's detail says it.
    const std::string reads =
        fmt::format("another thread asking while this one read {} bytes in reads of up to {}",
                    read_total, chunk);
    if (asked.error)
      add(kIds[0], kPrecopyInfo, Verdict::kFail,
          fmt::format("PRECOPY_INFO failed with {} at call {}, {}", errno_name(asked.error->code),
                      asked.calls + 1, reads));
    else if (asked.grew)
      add(kIds[0], kPrecopyInfo, Verdict::kFail,
          fmt::format("initial_bytes grew from {} to {} at call {} of {}, {}", asked.grew->first,
                      asked.grew->second, asked.grew_at, asked.calls, reads));
    else
      add(kIds[0], kPrecopyInfo, Verdict::kPass,
          fmt::format("initial_bytes {} -> {}, never growing, {}", first->initial_bytes, asked.last,
                      reads));
  }

  if (!has(uapi::kMigrationP2p)) {
    for (std::size_t i = 1; i < kIds.size(); ++i)
      add(kIds[i], kPrecopyInfo, Verdict::kSkip, "device has no PRE_COPY_P2P (no P2P)");
    return;
  }
  // Reads up to half the initial data (at most a page): initial_bytes cannot reach 0 by chance.
  auto read_some = [&](int fd, const uapi::PrecopyInfo& info) {
    const auto k = std::clamp<std::uint64_t>(info.initial_bytes / 2, 1, kPageSize);
    return dev_.read(fd, std::span(buf_).first(std::min<std::size_t>(k, buf_.size())));
  };

  // A session begun in PRE_COPY_P2P (R->RP->PCP): a read lowers initial_bytes.
  if (auto fd = enter(State::kPreCopyP2p); !fd) {
    skip(kIds[1], kPrecopyInfo, fd.error());
  } else if (auto before = precopy_info_of(fd->get()); !before) {
    add(kIds[1], kPrecopyInfo, Verdict::kFail,
        "PRECOPY_INFO in PRE_COPY_P2P failed with " + errno_name(before.error().code));
  } else if (before->initial_bytes == 0) {
    add(kIds[1], kPrecopyInfo, Verdict::kSkip, "device reports no initial data in PRE_COPY_P2P");
  } else if (auto n = read_some(fd->get(), *before); !n || *n == 0) {
    add(kIds[1], kPrecopyInfo, Verdict::kFail,
        fmt::format("initial_bytes {} but the first read gave {}", before->initial_bytes,
                    n ? "0" : errno_name(n.error().code)));
  } else if (auto after = precopy_info_of(fd->get()); !after) {
    add(kIds[1], kPrecopyInfo, Verdict::kFail,
        fmt::format("PRECOPY_INFO after a {}-byte read in PRE_COPY_P2P failed with {}", *n,
                    errno_name(after.error().code)));
  } else {
    add(kIds[1], kPrecopyInfo,
        after->initial_bytes < before->initial_bytes ? Verdict::kPass : Verdict::kFail,
        fmt::format("initial_bytes {} -> {} after reading {} bytes in PRE_COPY_P2P",
                    before->initial_bytes, after->initial_bytes, *n));
  }

  // PC->PCP continues the session: what was read stays read, and the data goes on.
  if (auto fd = enter(State::kPreCopy); !fd) {
    skip(kIds[2], kPrecopyInfo, fd.error());
  } else if (auto before = precopy_info_of(fd->get()); !before) {
    skip(kIds[2], kPrecopyInfo, info_failed(before.error(), "in PRE_COPY"));
  } else if (before->initial_bytes < 2) {
    add(kIds[2], kPrecopyInfo, Verdict::kSkip,
        fmt::format("device reports {} bytes of initial data: nothing left after a read",
                    before->initial_bytes));
  } else if (auto n = read_some(fd->get(), *before); !n || *n == 0) {
    skip(kIds[2], kPrecopyInfo,
         Error{EIO, fmt::format("initial_bytes {} but the first read gave {} (precopy/"
                                "initial-bytes-fall judges it)",
                                before->initial_bytes, n ? "0" : errno_name(n.error().code))});
  } else if (auto read = precopy_info_of(fd->get()); !read) {
    skip(kIds[2], kPrecopyInfo, info_failed(read.error(), "after a read in PRE_COPY"));
  } else if (auto arc = request_device_state(dev_, State::kPreCopyP2p); !arc) {
    skip(kIds[2], kPrecopyInfo,
         Error{arc.error().code, "SET PC->PCP failed with " + errno_name(arc.error().code)});
  } else {
    DataFd extra(dev_, *arc);  // the arc checks judge it; just do not leak it
    const auto moved = precopy_info_of(fd->get());
    const auto next = moved && moved->initial_bytes > 0
                          ? std::optional(read_some(fd->get(), *moved))
                          : std::nullopt;
    const std::string what =
        fmt::format("initial_bytes {} at the start, {} after a {}-byte read in PRE_COPY",
                    before->initial_bytes, read->initial_bytes, *n);
    if (!moved)
      add(kIds[2], kPrecopyInfo, Verdict::kFail,
          fmt::format("{}; PRECOPY_INFO after PC->PCP failed with {}", what,
                      errno_name(moved.error().code)));
    else if (moved->initial_bytes > read->initial_bytes)
      add(kIds[2], kPrecopyInfo, Verdict::kFail,
          fmt::format("{}; {} after PC->PCP: the arc re-armed initial data already read", what,
                      moved->initial_bytes));
    else if (next && (!*next || **next == 0))
      add(kIds[2], kPrecopyInfo, Verdict::kFail,
          fmt::format("{}; after PC->PCP a read gave {} with {} initial bytes left: the session "
                      "did not go on",
                      what, *next ? "0" : errno_name(next->error().code), moved->initial_bytes));
    else
      add(kIds[2], kPrecopyInfo, Verdict::kPass,
          fmt::format("{}; {} after PC->PCP, and the data goes on", what, moved->initial_bytes));
  }
}

}  // namespace vfio::conform::detail
