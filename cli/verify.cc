#include "cli/verify.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/feature.h"

namespace vfio::cli {
namespace {

using uapi::State;

// Fills `buf` from the data fd until full or at end of stream; returns the bytes read.
Result<std::size_t> read_full(Device& dev, int fd, std::span<std::byte> buf) {
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = dev.read(fd, buf.subspan(got));
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    got += *n;
  }
  return got;
}

// Opens a stop-copy session on `dev`, remembering the state to return to.
struct SaveSession {
  Device& dev;
  State was;
  int fd = -1;
  ~SaveSession() {
    if (fd != -1) (void)dev.close(fd);
    (void)request_device_state(dev, was);
  }
};

Result<int> start_stop_copy(SaveSession& s) {
  auto state = query_device_state(s.dev);
  if (!state) return std::unexpected(state.error());
  s.was = *state;
  auto fd = request_device_state(s.dev, State::kStopCopy);
  if (!fd) return std::unexpected(fd.error());
  s.fd = *fd;
  return *fd;
}

}  // namespace

Result<Comparison> compare_device_states(Device& a, Device& b, std::uint32_t config_size,
                                         ConfigRestore restore) {
  Comparison result;
  std::vector<std::byte> ca(config_size), cb(config_size);
  auto na = a.config_read(0, ca);
  auto nb = b.config_read(0, cb);
  result.config_equal =
      na && nb && *na == *nb &&
      config_restored_equal(std::span(ca).first(*na), std::span(cb).first(*nb), restore);

  SaveSession sa{a, State::kRunning}, sb{b, State::kRunning};
  if (auto r = start_stop_copy(sa); !r) return std::unexpected(r.error());
  if (auto r = start_stop_copy(sb); !r) return std::unexpected(r.error());
  constexpr std::size_t kChunk = 1 << 20;
  std::vector<std::byte> ba(kChunk), bb(kChunk);
  for (;;) {
    auto ga = read_full(a, sa.fd, ba);
    if (!ga) return std::unexpected(ga.error());
    auto gb = read_full(b, sb.fd, bb);
    if (!gb) return std::unexpected(gb.error());
    std::size_t common = std::min(*ga, *gb);
    auto [ia, ib] =
        std::mismatch(ba.begin(), ba.begin() + static_cast<std::ptrdiff_t>(common), bb.begin());
    auto same = static_cast<std::uint64_t>(ia - ba.begin());
    if (same < common || *ga != *gb) {
      result.first_difference = result.bytes_compared + same;
      result.bytes_compared += same;
      return result;
    }
    result.bytes_compared += common;
    if (*ga == 0) break;
  }
  result.equal = true;
  return result;
}

}  // namespace vfio::cli
