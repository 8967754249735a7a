#include "faults/transfer.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace vfio::faults {

void corrupt_bytes(std::span<std::byte> bytes, std::uint64_t n) {
  if (bytes.empty()) return;
  n = std::min<std::uint64_t>(n, bytes.size());
  for (std::uint64_t i = 0; i < n; ++i) bytes[i * bytes.size() / n] ^= std::byte{0xa5};
}

Result<std::size_t> faulty_read(const Effects& e, std::span<std::byte> buf, const ReadFn& inner) {
  std::size_t ask = buf.size();
  if (e.short_len) ask = std::min<std::uint64_t>(ask, *e.short_len);
  std::size_t dup = 0;
  if (e.dup && ask > 1) {
    dup = static_cast<std::size_t>(std::min<std::uint64_t>(e.dup, ask / 2));
    ask -= dup;
  }
  auto r = inner(buf.first(ask));
  if (!r || *r == 0) return r;
  std::size_t n = *r;
  if (dup) {
    dup = std::min(dup, n);
    std::memmove(buf.data() + n, buf.data(), dup);
    n += dup;
  }
  if (e.drop) {
    std::size_t drop = static_cast<std::size_t>(std::min<std::uint64_t>(e.drop, n - 1));
    std::size_t at = (n - drop) / 2;  // from the middle: framing around it stays plausible
    std::memmove(buf.data() + at, buf.data() + at + drop, n - at - drop);
    n -= drop;
  }
  if (e.corrupt) corrupt_bytes(buf.first(n), e.corrupt);
  return n;
}

Result<std::size_t> faulty_write(const Effects& e, std::span<const std::byte> buf,
                                 const WriteFn& inner) {
  if (e.short_len) buf = buf.first(std::min<std::uint64_t>(buf.size(), *e.short_len));
  if (e.drop && !buf.empty()) {
    std::size_t drop = static_cast<std::size_t>(std::min<std::uint64_t>(e.drop, buf.size()));
    std::size_t keep = buf.size() - drop;
    if (keep > 0) {
      auto r = inner(buf.first(keep));
      if (!r || *r < keep) return r;
    }
    return buf.size();
  }
  std::vector<std::byte> copy;
  if (e.corrupt) {
    copy.assign(buf.begin(), buf.end());
    corrupt_bytes(copy, e.corrupt);
    buf = copy;
  }
  auto r = inner(buf);
  if (!r || !e.dup || *r == 0) return r;
  auto again = buf.first(std::min<std::size_t>(*r, e.dup));
  while (!again.empty()) {
    auto d = inner(again);
    if (!d) return d;
    if (*d == 0) break;
    again = again.subspan(*d);
  }
  return r;
}

}  // namespace vfio::faults
