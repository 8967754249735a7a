// conform: fd-direction: a save fd is read-only and a resume fd write-only. The kernel's drivers
// make their files O_RDONLY and O_WRONLY (the VFS then refuses the other direction with EBADF,
// and the resume file has no ioctl); a driver sharing one file type, or one buffer, for both
// directions lets a write land in the stream being saved or a read leak a resume buffer.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

constexpr std::size_t kProbe = 4096;

}  // namespace

void Checker::check_fd_direction() {
  // A write on a save fd: refused, and the session's stream unchanged by it.
  auto save_refuses_write = [&](std::string id, State s) {
    auto reference = session_prefix(s, kProbe);
    if (!reference) return skip(std::move(id), kFdDirection, reference.error());
    auto fd = enter(s);
    if (!fd) return skip(std::move(id), kFdDirection, fd.error());
    const std::vector<std::byte> junk(16, std::byte{0xff});
    const std::string what = fmt::format("write of {} bytes on a {} save fd", junk.size(), name(s));
    if (auto n = dev_.write(fd->get(), junk); n)
      return add(std::move(id), kFdDirection, Verdict::kFail,
                 fmt::format("{}: expected an error, {} bytes taken", what, *n));
    else
      judge_intact(std::move(id), kFdDirection, s, fd->get(), *reference,
                   fmt::format("{} refused with {}", what, errno_name(n.error().code)));
  };
  save_refuses_write("fd-direction/write-SC-fd", State::kStopCopy);
  if (has(uapi::kMigrationPreCopy))
    save_refuses_write("fd-direction/write-PC-fd", State::kPreCopy);
  else
    add("fd-direction/write-PC-fd", kFdDirection, Verdict::kSkip, "device has no PRE_COPY");

  if (auto fd = enter(State::kResuming); !fd) {
    for (auto id : {"fd-direction/read-RS-fd", "fd-direction/info-RS-fd"})
      skip(id, kFdDirection, fd.error());
  } else {
    expect_refused("fd-direction/read-RS-fd", kFdDirection,
                   dev_.read(fd->get(), std::span(buf_).first(std::min(buf_.size(), kProbe))),
                   "read on a fresh resume fd");
    expect_refused("fd-direction/info-RS-fd", kFdDirection, precopy_info_of(fd->get()),
                   "PRECOPY_INFO on a resume fd");
  }
}

}  // namespace vfio::conform::detail
