// conform: whole-stream saves, resumes and reopens, shared by the reopen, chunked-io and
// overflow groups.
#include <fmt/format.h>

#include <cstring>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

Result<> Checker::reopen() {
  if (!opt_.reopen || !current_)
    return fail(ENOTSUP, "the device cannot be reopened here (no reopen given)");
  current_->replace(nullptr);
  auto dev = opt_.reopen();
  if (!dev) return fail(dev.error().code, "reopening the device failed: " + dev.error().describe());
  current_->replace(*dev);
  return {};
}

Result<SavedStream> Checker::read_stream(int fd, std::size_t chunk, std::uint64_t cap,
                                         bool precopy) {
  SavedStream out;
  auto complete = append_stream(fd, chunk, cap, out.bytes, precopy);
  if (!complete) return std::unexpected(complete.error());
  out.complete = *complete;
  return out;
}

Result<bool> Checker::reads_as(int fd, std::span<const std::byte> want, std::uint64_t& bytes) {
  bool same = true;
  for (bytes = 0; bytes <= want.size();) {
    auto n = dev_.read(fd, buf_);
    if (!n)
      return fail(n.error().code, fmt::format("read of {} bytes failed with {} after {} bytes",
                                              buf_.size(), errno_name(n.error().code), bytes));
    if (*n == 0) return same && bytes == want.size();
    same =
        same && bytes + *n <= want.size() && std::memcmp(buf_.data(), want.data() + bytes, *n) == 0;
    bytes += *n;
  }
  return false;  // more than `want`
}

Result<> Checker::resume_stream(std::span<const std::byte> stream,
                                std::span<const std::size_t> chunks) {
  auto fd = enter(State::kResuming);
  if (!fd) return std::unexpected(fd.error());
  std::size_t done = 0;
  for (std::size_t i = 0; done < stream.size(); ++i) {
    const std::size_t want = std::min(chunks[i % chunks.size()], stream.size() - done);
    auto n = dev_.write(fd->get(), stream.subspan(done, want));
    if (!n)
      return fail(n.error().code,
                  fmt::format("write of {} bytes failed with {} after {} of {}", want,
                              errno_name(n.error().code), done, stream.size()));
    if (*n == 0) return fail(EIO, fmt::format("write() returned 0 after {} bytes", done));
    done += *n;
  }
  if (auto r = request_device_state(dev_, State::kStop); !r)
    return fail(r.error().code, fmt::format("RS->S after the whole {}-byte stream failed with {}",
                                            stream.size(), errno_name(r.error().code)));
  auto now = query_device_state(dev_);
  if (!now || *now != State::kStop)
    return fail(EIO, "GET after RS->S: " + (now ? name(*now) : outcome(now)));
  return {};
}

}  // namespace vfio::conform::detail
