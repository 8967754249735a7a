// conform: Chunked I/O equivalence. The save stream read in odd sizes is the stream read whole,
// and a resume written in odd sizes loads the same state: a driver must honour the file offset
// on every read and write (hisi_acc ignored it on chunked reads until a 2024 fix).
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {
namespace {

constexpr std::array<std::size_t, 5> kChunks = {1, 3, 4095, 4097, (1 << 20) + 1};
// Bounds the cost on big devices: each chunk size reads at most this many times, and this much.
constexpr std::uint64_t kReadsPerChunk = 8192;
constexpr std::uint64_t kBytesPerChunk = 4 << 20;

// Where `got` first differs from `want`, or nothing when it is a prefix of it.
std::optional<std::size_t> first_difference(std::span<const std::byte> got,
                                            std::span<const std::byte> want) {
  const auto n = std::min(got.size(), want.size());
  const auto at = std::mismatch(got.begin(), got.begin() + n, want.begin()).first - got.begin();
  if (static_cast<std::size_t>(at) < n) return at;
  return std::nullopt;
}

}  // namespace

void Checker::check_chunked() {
  // The reference: the stream's first bytes (the whole of a small one) read buffer_size bytes
  // per read().
  auto whole = [&]() -> Result<SavedStream> {
    auto fd = enter(State::kStopCopy);
    if (!fd) return std::unexpected(fd.error());
    return read_stream(fd->get(), opt_.buffer_size, kBytesPerChunk + 1);
  }();
  if (!whole) {
    for (std::size_t c : kChunks)
      skip(fmt::format("chunked-io/read-{}", c), kChunked, whole.error());
  } else {
    check_chunked_reads(*whole);
  }
  check_chunked_precopy();
  check_chunked_resume();
}

void Checker::check_chunked_reads(const SavedStream& whole) {
  const std::vector<std::byte>& ref = whole.bytes;
  const std::string ref_text =
      whole.complete ? fmt::format("the stream read {} bytes per read() ({} bytes)",
                                   opt_.buffer_size, ref.size())
                     : fmt::format("the stream's first {} bytes read {} bytes per read()",
                                   ref.size(), opt_.buffer_size);
  for (std::size_t c : kChunks) {
    std::string id = fmt::format("chunked-io/read-{}", c);
    // One byte past a whole reference, so that the reads also see the end of the stream.
    const std::uint64_t cap = std::min<std::uint64_t>(whole.complete ? ref.size() + 1 : ref.size(),
                                                      std::min(c * kReadsPerChunk, kBytesPerChunk));
    auto fd = enter(State::kStopCopy);
    if (!fd) {
      skip(std::move(id), kChunked, fd.error());
      continue;
    }
    auto got = read_stream(fd->get(), c, cap);
    if (!got) {
      add(std::move(id), kChunked, Verdict::kFail, got.error().message);
      continue;
    }
    const auto& bytes = got->bytes;
    const std::string scope = cap > ref.size()
                                  ? "the whole stream"
                                  : fmt::format("the first {} bytes (at most {} reads, {} MiB)",
                                                bytes.size(), kReadsPerChunk, kBytesPerChunk >> 20);
    if (auto at = first_difference(bytes, ref))
      add(std::move(id), kChunked, Verdict::kFail,
          fmt::format("{}-byte reads differ from {} at byte {}", c, ref_text, *at));
    else if (bytes.size() > ref.size())
      add(std::move(id), kChunked, Verdict::kFail,
          fmt::format("{}-byte reads gave {} bytes, more than {}", c, bytes.size(), ref_text));
    else if (got->complete && bytes.size() < ref.size())
      add(std::move(id), kChunked, Verdict::kFail,
          fmt::format("{}-byte reads ended after {} bytes, short of {}", c, bytes.size(),
                      ref_text));
    else
      add(std::move(id), kChunked, Verdict::kPass,
          fmt::format("{}-byte reads: {} identical to {}", c, scope, ref_text));
  }
}

void Checker::check_chunked_resume() {
  if (!saved_) return skip("chunked-io/resume-odd-writes", kChunked, saved_error_);
  const std::vector<std::byte>& ref = *saved_;
  // Every chunk size in turn, so each lands on a different offset of the stream.
  if (auto r = resume_stream(ref, kChunks); !r)
    return add("chunked-io/resume-odd-writes", kChunked, Verdict::kFail,
               "resume written in chunks of 1, 3, 4095, 4097, 1 MiB+1 bytes: " + r.error().message);
  // Read back from STOP, without a reset, which could clear what was loaded; compared with the
  // original as it comes, never kept.
  auto back = [&](std::uint64_t& bytes) -> Result<bool> {
    auto fd = request_device_state(dev_, State::kStopCopy);
    if (!fd) return fail(fd.error().code, "S->SC failed with " + errno_name(fd.error().code));
    DataFd held(dev_, *fd);
    return reads_as(held.get(), ref, bytes);
  };
  std::uint64_t chunked_bytes = 0;
  auto chunked = back(chunked_bytes);
  if (!chunked) return skip("chunked-io/resume-odd-writes", kChunked, chunked.error());
  if (*chunked)
    return add("chunked-io/resume-odd-writes", kChunked, Verdict::kPass,
               fmt::format("resumed in chunks of 1, 3, 4095, 4097, 1 MiB+1 bytes: the state read "
                           "back is the original {}-byte stream",
                           ref.size()));
  // The control: the same stream resumed whole. If that does not read back the same either, the
  // device's stream is not reproducible (sequence numbers, timestamps) and nothing can be told.
  auto control = resume_stream(ref, std::array{opt_.buffer_size});
  std::uint64_t whole_bytes = 0;
  auto whole_back = control ? back(whole_bytes) : Result<bool>(std::unexpected(control.error()));
  if (whole_back && *whole_back)
    add("chunked-io/resume-odd-writes", kChunked, Verdict::kFail,
        fmt::format("resumed in odd chunks, the state read back ({} bytes) differs from the "
                    "original {}-byte stream; resumed whole, it is the same",
                    chunked_bytes, ref.size()));
  else
    add("chunked-io/resume-odd-writes", kChunked, Verdict::kDeviation,
        "the state read back after a resume is not the stream resumed, written in chunks or "
        "whole: the stream is not reproducible, so the chunked resume cannot be judged");
}

}  // namespace vfio::conform::detail

namespace vfio::conform::detail {

// The same in PRE_COPY: the pre-copy data read in odd sizes is the pre-copy data read whole (a
// driver's pre-copy read path keeps its own offset, apart from STOP_COPY's).
void Checker::check_chunked_precopy() {
  auto id_of = [](std::size_t c) { return fmt::format("chunked-io/precopy-read-{}", c); };
  if (!has(uapi::kMigrationPreCopy)) {
    for (std::size_t c : kChunks) add(id_of(c), kChunked, Verdict::kSkip, "device has no PRE_COPY");
    return;
  }
  auto session = [&](std::size_t chunk, std::uint64_t cap) -> Result<SavedStream> {
    auto fd = enter(State::kPreCopy);
    if (!fd) return std::unexpected(fd.error());
    return read_stream(fd->get(), chunk, cap, /*precopy=*/true);
  };
  auto whole = session(opt_.buffer_size, kBytesPerChunk + 1);
  if (!whole) {
    for (std::size_t c : kChunks) skip(id_of(c), kChunked, whole.error());
    return;
  }
  const std::vector<std::byte>& ref = whole->bytes;
  for (std::size_t c : kChunks) {
    const std::string id = id_of(c);
    const std::uint64_t cap = std::min<std::uint64_t>(whole->complete ? ref.size() + 1 : ref.size(),
                                                      std::min(c * kReadsPerChunk, kBytesPerChunk));
    auto got = session(c, cap);
    if (!got) {
      add(id, kChunked, Verdict::kFail, got.error().message);
      continue;
    }
    const auto& bytes = got->bytes;
    const std::string scope = cap > ref.size() ? fmt::format("all {} bytes", ref.size())
                                               : fmt::format("the first {} bytes", bytes.size());
    const auto at = first_difference(bytes, ref);
    const bool longer = bytes.size() > ref.size();
    const bool shorter = got->complete && bytes.size() < ref.size();
    if (!at && !longer && !shorter) {
      add(id, kChunked, Verdict::kPass,
          fmt::format("{}-byte reads: {} of the pre-copy data identical to {}-byte reads", c, scope,
                      opt_.buffer_size));
      continue;
    }
    const std::string what =
        at ? fmt::format("{}-byte reads differ at byte {}", c, *at)
           : fmt::format("{}-byte reads gave {} bytes to its temporary end, {}-byte reads {}", c,
                         bytes.size(), opt_.buffer_size, ref.size());
    // The control: a second whole read. Pre-copy data that differs between two plain sessions
    // comes from a device whose state moves on its own.
    auto again = session(opt_.buffer_size, kBytesPerChunk + 1);
    if (again && again->bytes == ref && again->complete == whole->complete)
      add(id, kChunked, Verdict::kFail,
          what + fmt::format(" from the pre-copy data read {} bytes per read()", opt_.buffer_size));
    else
      add(id, kChunked, Verdict::kDeviation,
          what +
              ", and two sessions read whole differ too: the pre-copy data moves on its own, "
              "not judged");
  }
}

}  // namespace vfio::conform::detail
