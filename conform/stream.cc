// conform: The STOP_COPY stream and MIG_DATA_SIZE.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_stop_copy() {
  auto fd = enter(State::kStopCopy);
  if (!fd) {
    saved_error_ = fd.error();
    for (auto id :
         {"stream/stop-copy-eof", "stream/stop-copy-eof-sticky", "stream/session-ends-SC->S"})
      skip(id, kStream, fd.error());
    return skip("data-size/stop-copy-estimate", kDataSize, fd.error());
  }
  const auto estimate = query_stop_copy_size(dev_);
  std::vector<std::byte> stream;
  // Room for the stream the estimate announces (within what is kept), so that it is read in
  // place: growing a vector copies the stream and touches twice its pages, which a big state
  // pays for in page faults.
  if (estimate)
    stream.reserve(std::min<std::uint64_t>(*estimate + kSizeSlack, opt_.max_saved_stream) +
                   opt_.buffer_size);
  bool kept = true;
  const ReadEnd end = read_until_end(fd->get(), &stream, &kept);
  if (end.error) {
    add("stream/stop-copy-eof", kStream, Verdict::kFail,
        fmt::format("read failed with {} after {} bytes", errno_name(end.error->code), end.bytes));
  } else if (end.over_limit) {
    add("stream/stop-copy-eof", kStream, Verdict::kFail,
        fmt::format("no end of stream within {} bytes", end.bytes));
  } else {
    add("stream/stop-copy-eof", kStream, Verdict::kPass,
        fmt::format("{} bytes, then read() returned 0", end.bytes));
  }

  if (!end.zero()) {
    skip("stream/stop-copy-eof-sticky", kStream, Error{EIO, "no end of stream reached"});
  } else {
    std::string problem;
    for (int i = 0; i < 2 && problem.empty(); ++i) {
      auto n = dev_.read(fd->get(), buf_);
      if (!n)
        problem = "read after EOF failed with " + errno_name(n.error().code);
      else if (*n != 0)
        problem = fmt::format("read after EOF returned {} bytes", *n);
    }
    add("stream/stop-copy-eof-sticky", kStream, problem.empty() ? Verdict::kPass : Verdict::kFail,
        problem.empty() ? "read() after EOF returns 0 again (twice)" : problem);
  }

  if (!estimate) {
    add("data-size/stop-copy-estimate", kDataSize, Verdict::kFail,
        "GET MIG_DATA_SIZE in STOP_COPY failed with " + errno_name(estimate.error().code));
  } else if (!end.zero()) {
    skip("data-size/stop-copy-estimate", kDataSize, Error{EIO, "stream length unknown"});
  } else {
    const std::string why = estimate_problem(*estimate, end.bytes);
    add("data-size/stop-copy-estimate", kDataSize, why.empty() ? Verdict::kPass : Verdict::kFail,
        fmt::format("estimate {} bytes, stream {} bytes{}", *estimate, end.bytes, why));
  }

  if (auto r = request_device_state(dev_, State::kStop); !r) {
    skip("stream/session-ends-SC->S", kStream,
         Error{r.error().code, "SET SC->S failed with " + errno_name(r.error().code)});
  } else {
    expect_error("stream/session-ends-SC->S", kStream, status(dev_.read(fd->get(), buf_)),
                 "read on the save fd after SC->S");
  }

  if (!end.zero())
    saved_error_ = Error{EIO, "no complete STOP_COPY stream"};
  else if (!kept)
    saved_error_ = Error{EFBIG, fmt::format("stream of {} bytes exceeds the {} bytes kept",
                                            end.bytes, opt_.max_saved_stream)};
  else
    saved_ = std::move(stream);
}

void Checker::check_data_size() {
  for (State s : reachable_states()) {
    std::string id = "data-size/in-" + name(s);
    auto fd = enter(s);
    if (!fd) {
      skip(std::move(id), kDataSize, fd.error());
      continue;
    }
    auto size = query_stop_copy_size(dev_);
    if (size)
      add(std::move(id), kDataSize, Verdict::kPass, fmt::format("{} bytes", *size));
    else
      add(std::move(id), kDataSize, Verdict::kFail,
          fmt::format("GET MIG_DATA_SIZE in {} failed with {}", name(s),
                      errno_name(size.error().code)));
  }
}

}  // namespace vfio::conform::detail
