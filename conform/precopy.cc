// conform: PRE_COPY: PRECOPY_INFO and the end-of-data markers.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_precopy() {
  static constexpr std::array kIds = {"precopy/info-in-PC",
                                      "precopy/initial-bytes-fall",
                                      "precopy/info-short-argsz",
                                      "precopy/temporary-eof",
                                      "precopy/info-in-PCP",
                                      "precopy/info-in-SC-after-precopy",
                                      "precopy/info-on-stop-copy-session",
                                      "precopy/session-ends-PC->R"};
  constexpr std::size_t kSessionChecks = 6;  // kIds[0..5] share one precopy session
  if (!has(uapi::kMigrationPreCopy)) {
    for (auto id : kIds) add(id, kPrecopy, Verdict::kSkip, "device has no PRE_COPY");
    return;
  }
  auto info_call = [&](int fd, std::uint32_t argsz) -> Result<uapi::PrecopyInfo> {
    uapi::PrecopyInfo info{argsz, 0, 0, 0};
    if (auto r = dev_.precopy_info(fd, info); !r) return std::unexpected(r.error());
    return info;
  };

  if (auto fd = enter(State::kPreCopy); !fd) {
    for (std::size_t i = 0; i < kSessionChecks; ++i) skip(kIds[i], kPrecopy, fd.error());
  } else {
    const auto info0 = info_call(fd->get(), sizeof(uapi::PrecopyInfo));
    if (info0)
      add(kIds[0], kPrecopy, Verdict::kPass,
          fmt::format("initial_bytes {}, dirty_bytes {}", info0->initial_bytes,
                      info0->dirty_bytes));
    else
      expect_ok(kIds[0], kPrecopy, status(info0), "PRECOPY_INFO in PRE_COPY");

    // A small first read, so initial_bytes cannot drop to 0 by coincidence of chunk sizes.
    const std::size_t first = std::min<std::size_t>(buf_.size(), kPageSize);
    const auto n = dev_.read(fd->get(), std::span(buf_).first(first));
    const auto info1 = info_call(fd->get(), sizeof(uapi::PrecopyInfo));
    if (!info0 || !info1) {
      skip(kIds[1], kPrecopy, Error{EIO, "PRECOPY_INFO failed"});
    } else if (info0->initial_bytes == 0) {
      add(kIds[1], kPrecopy, Verdict::kSkip, "device reports no initial data");
    } else if (!n || *n == 0) {
      add(kIds[1], kPrecopy, Verdict::kFail,
          fmt::format("initial_bytes {} but the first read gave {}", info0->initial_bytes,
                      n ? "0" : errno_name(n.error().code)));
    } else {
      const bool fell = info1->initial_bytes < info0->initial_bytes;
      add(kIds[1], kPrecopy, fell ? Verdict::kPass : Verdict::kFail,
          fmt::format("initial_bytes {} -> {} after reading {} bytes", info0->initial_bytes,
                      info1->initial_bytes, *n));
    }

    expect_errno(kIds[2], kPrecopy, status(info_call(fd->get(), 16)), EINVAL,
                 "PRECOPY_INFO with argsz 16");

    const ReadEnd end = read_until_end(fd->get());
    const std::uint64_t total = end.bytes + (n ? *n : 0);
    if (end.over_limit)
      add(kIds[3], kPrecopy, Verdict::kFail,
          fmt::format("no end of precopy data within {} bytes", total));
    else if (!end.error)
      add(kIds[3], kPrecopy, Verdict::kDeviation,
          fmt::format("{} bytes, then read() returns 0 instead of ENOMSG, as mtty", total));
    else if (end.error->code == ENOMSG)
      add(kIds[3], kPrecopy, Verdict::kPass, fmt::format("{} bytes, then ENOMSG", total));
    else
      add(kIds[3], kPrecopy, Verdict::kFail,
          fmt::format("{} bytes, then read failed with {}, expected ENOMSG", total,
                      errno_name(end.error->code)));

    bool moved = true;
    if (!has(uapi::kMigrationP2p)) {
      add(kIds[4], kPrecopy, Verdict::kSkip, "device has no P2P");
    } else if (auto r = request_device_state(dev_, State::kPreCopyP2p); !r) {
      moved = false;
      skip(kIds[4], kPrecopy,
           Error{r.error().code, "SET PC->PCP failed with " + errno_name(r.error().code)});
    } else {
      DataFd extra(dev_, *r);  // the arc checks judge it; just do not leak it
      expect_ok(kIds[4], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))),
                "PRECOPY_INFO in PRE_COPY_P2P");
    }

    if (!moved) {
      skip(kIds[5], kPrecopy, Error{EIO, "could not leave PRE_COPY_P2P"});
    } else if (auto r = request_device_state(dev_, State::kStopCopy); !r) {
      skip(kIds[5], kPrecopy,
           Error{r.error().code, "SET to STOP_COPY failed with " + errno_name(r.error().code)});
    } else {
      DataFd extra(dev_, *r);
      expect_errno(kIds[5], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))),
                   EINVAL, "PRECOPY_INFO on the precopy session once in STOP_COPY");
    }
  }

  if (auto fd = enter(State::kStopCopy); !fd) {
    skip(kIds[6], kPrecopy, fd.error());
  } else {
    expect_errno(kIds[6], kPrecopy, status(info_call(fd->get(), sizeof(uapi::PrecopyInfo))), EINVAL,
                 "PRECOPY_INFO on a STOP_COPY session");
  }

  if (auto fd = enter(State::kPreCopy); !fd) {
    skip(kIds[7], kPrecopy, fd.error());
  } else if (auto r = request_device_state(dev_, State::kRunning); !r) {
    skip(kIds[7], kPrecopy,
         Error{r.error().code, "SET PC->R failed with " + errno_name(r.error().code)});
  } else {
    expect_error(kIds[7], kPrecopy, status(dev_.read(fd->get(), buf_)),
                 "read on the precopy fd after PC->R");
  }
}

}  // namespace vfio::conform::detail
