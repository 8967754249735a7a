// conform: whether a save session's first bytes survived a call that must not touch them (a
// refused write, a stale fd closed), shared by the stale-fd and fd-direction groups.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::judge_intact(std::string id, std::string_view group, State s, int fd,
                           std::span<const std::byte> reference, std::string_view after) {
  std::vector<std::byte> got;
  std::optional<Error> error;
  while (got.size() < reference.size()) {
    auto n =
        dev_.read(fd, std::span(buf_).first(std::min(buf_.size(), reference.size() - got.size())));
    if (!n) {
      // The temporary end of pre-copy data ends it as session_prefix does.
      if (s != State::kStopCopy && n.error().code == ENOMSG) break;
      error = n.error();
      break;
    }
    if (*n == 0) break;
    got.insert(got.end(), buf_.begin(), buf_.begin() + *n);
  }
  if (error)
    return add(std::move(id), group, Verdict::kFail,
               fmt::format("{}, the {} session's read failed with {} after {} bytes", after,
                           name(s), errno_name(error->code), got.size()));
  if (std::ranges::equal(got, reference))
    return add(std::move(id), group, Verdict::kPass,
               fmt::format("{}, the {} session still gives its first {} bytes", after, name(s),
                           got.size()));
  const auto mismatch = std::ranges::mismatch(got, reference).in1 - got.begin();
  const std::string differs =
      fmt::format("{}, the {} session gave {} bytes differing from a session before at byte {}",
                  after, name(s), got.size(), mismatch);
  auto control = session_prefix(s, reference.size());
  if (control && !std::ranges::equal(*control, reference))
    return add(std::move(id), group, Verdict::kDeviation,
               differs +
                   ", but a plain session differs too: the device's state moves by itself, "
                   "not judged");
  add(std::move(id), group, Verdict::kFail,
      differs + (control ? " (a plain session after it gives the reference again)" : ""));
}

}  // namespace vfio::conform::detail
