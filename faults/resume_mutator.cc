#include "faults/resume_mutator.h"

#include <fmt/format.h>

#include <algorithm>

#include "simdev/profile.h"

namespace vfio::faults {
namespace {

std::uint64_t get_le(std::span<const std::byte> b, std::size_t offset, std::size_t size) {
  std::uint64_t v = 0;
  for (std::size_t i = size; i-- > 0;) v = (v << 8) | std::to_integer<std::uint64_t>(b[offset + i]);
  return v;
}

void put_le(std::span<std::byte> b, std::size_t offset, std::size_t size, std::uint64_t v) {
  for (std::size_t i = 0; i < size; ++i) b[offset + i] = static_cast<std::byte>(v >> (8 * i));
}

bool is_integer(const PayloadField& f) {
  return f.size == 1 || f.size == 2 || f.size == 4 || f.size == 8;
}

// The kernel's samples/vfio-mdev/mtty.c, struct mtty_data: a 24-byte header, then nr_ports
// struct serial_port of 36 bytes each.
constexpr std::size_t kMttyHeader = 24;
constexpr std::size_t kMttyPort = 36;
constexpr std::uint32_t kMttyMajor = 1;

void add(PayloadLayout& l, std::string name, std::size_t offset, std::size_t size) {
  l.fields.push_back({std::move(name), offset, size});
}

void add_mtty_port(PayloadLayout& l, std::size_t port) {
  const std::size_t at = kMttyHeader + port * kMttyPort;
  const auto name = [&](std::string_view f) { return fmt::format("port{}.{}", port, f); };
  for (std::size_t r = 0; r < 8; ++r) add(l, name(fmt::format("uart_reg[{}]", r)), at + r, 1);
  add(l, name("fifo"), at + 8, 16);
  add(l, name("head"), at + 24, 1);
  add(l, name("tail"), at + 25, 1);
  add(l, name("count"), at + 26, 1);
  add(l, name("dlab"), at + 27, 1);
  add(l, name("overrun"), at + 28, 1);
  add(l, name("divisor"), at + 30, 2);
  add(l, name("fcr"), at + 32, 1);
  add(l, name("max_fifo_size"), at + 33, 1);
  add(l, name("intr_trigger_level"), at + 34, 1);
}

}  // namespace

PayloadLayout recognize_payload(std::span<const std::byte> p) {
  const auto le = [&](std::size_t offset, std::size_t size) {
    return p.size() >= offset + size ? get_le(p, offset, size) : ~0ULL;
  };
  PayloadLayout l;
  const std::uint64_t ports = le(16, 4);
  if (le(0, 8) == sim::kMttyMagic && le(8, 4) == kMttyMajor && le(20, 4) == 0 && ports <= 64 &&
      p.size() == kMttyHeader + ports * kMttyPort) {
    l.name = "mtty";
    add(l, "magic", 0, 8);
    add(l, "major_ver", 8, 4);
    add(l, "minor_ver", 12, 4);
    add(l, "nr_ports", 16, 4);
    add(l, "flags", 20, 4);
    for (std::size_t i = 0; i < ports; ++i) add_mtty_port(l, i);
    return l;
  }
  // The simulator's framings; dirty records after the base stream stay byte-level.
  const auto body = [&](std::size_t header, std::uint64_t size) {
    if (size > 0 && p.size() >= header + size) add(l, "body", header, size);
  };
  if (le(0, 8) == sim::kMttyMagic && le(16, 8) <= p.size() - std::min<std::size_t>(p.size(), 24)) {
    l.name = "sim:mtty";
    add(l, "magic", 0, 8);
    add(l, "seed", 8, 8);
    add(l, "size", 16, 8);
    body(24, le(16, 8));
  } else if (le(0, 8) == sim::kPlainMagic && p.size() >= 32) {
    l.name = "sim:plain";
    add(l, "magic", 0, 8);
    add(l, "profile_tag", 8, 8);
    add(l, "seed", 16, 8);
    add(l, "size", 24, 8);
    body(32, std::min<std::uint64_t>(le(24, 8), p.size() - 32));
  } else if (le(16, 8) == sim::kRecordsMagic && p.size() >= 48) {
    l.name = "sim:mlx5";
    add(l, "header.record_size", 0, 8);
    add(l, "header.record_flags", 8, 4);
    add(l, "header.record_tag", 12, 4);
    add(l, "magic", 16, 8);
    add(l, "profile_tag", 24, 8);
    add(l, "seed", 32, 8);
    add(l, "size", 40, 8);
    if (p.size() >= 64) {
      add(l, "record0.size", 48, 8);
      add(l, "record0.flags", 56, 4);
      add(l, "record0.tag", 60, 4);
    }
  } else {
    l.name = "bytes";
  }
  return l;
}

std::uint64_t ResumeMutator::next() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t ResumeMutator::below(std::uint64_t n) {
  return next() % n;
}

std::string ResumeMutator::mutate_field(std::vector<std::byte>& b, const PayloadField& f) {
  if (!is_integer(f)) {
    const std::size_t at = f.offset + below(f.size);
    const auto v = static_cast<std::byte>(next());
    b[at] = v;
    return fmt::format("{}[{}] = {:#04x}", f.name, at - f.offset, std::to_integer<int>(v));
  }
  const std::uint64_t max = f.size == 8 ? ~0ULL : (1ULL << (8 * f.size)) - 1;
  const std::uint64_t old = get_le(b, f.offset, f.size);
  std::uint64_t v = 0;
  switch (below(8)) {
    case 0:
      v = 0;
      break;
    case 1:
      v = max;
      break;
    case 2:
      v = max >> 1;
      break;
    case 3:
      v = (max >> 1) + 1;
      break;
    case 4:
      v = old + 1 + below(16);
      break;
    case 5:
      v = old - 1 - below(16);
      break;
    case 6:
      v = old ^ (1ULL << below(8 * f.size));
      break;
    default:
      v = next();
      break;
  }
  v &= max;
  if (v == old) v = old ^ 1;
  put_le(b, f.offset, f.size, v);
  return fmt::format("{} {:#x} -> {:#x}", f.name, old, v);
}

std::string ResumeMutator::mutate_bytes(std::vector<std::byte>& b, std::span<const std::byte> other,
                                        std::size_t limit) {
  const std::size_t n = b.size();
  const std::size_t room = limit > n ? limit - n : 0;
  const std::uint64_t op = n == 0 ? 4 : below(10);
  switch (op) {
    case 0: {
      const std::size_t at = below(n), bit = below(8);
      b[at] ^= static_cast<std::byte>(1u << bit);
      return fmt::format("bit {} of byte {} flipped", bit, at);
    }
    case 1: {
      const std::size_t at = below(n);
      b[at] = static_cast<std::byte>(next());
      return fmt::format("byte {} = {:#04x}", at, std::to_integer<int>(b[at]));
    }
    case 2: {
      static constexpr std::uint8_t kInteresting[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
      const std::size_t at = below(n);
      b[at] = static_cast<std::byte>(kInteresting[below(std::size(kInteresting))]);
      return fmt::format("byte {} = {:#04x}", at, std::to_integer<int>(b[at]));
    }
    case 3: {
      const std::size_t to = below(n);
      b.resize(to);
      return fmt::format("truncated to {} bytes", to);
    }
    case 4: {
      if (room == 0) break;
      const std::size_t add = 1 + below(std::min<std::size_t>(room, 64));
      for (std::size_t i = 0; i < add; ++i) b.push_back(static_cast<std::byte>(next()));
      return fmt::format("{} random bytes appended", add);
    }
    case 5: {
      const std::size_t at = below(n), len = 1 + below(std::min<std::size_t>(n - at, 64));
      b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
              b.begin() + static_cast<std::ptrdiff_t>(at + len));
      return fmt::format("{} bytes deleted at {}", len, at);
    }
    case 6: {
      if (room == 0) break;
      const std::size_t at = below(n);
      const std::size_t len = 1 + below(std::min({n - at, room, std::size_t{64}}));
      const std::size_t to = below(n + 1);
      std::vector<std::byte> copy(b.begin() + static_cast<std::ptrdiff_t>(at),
                                  b.begin() + static_cast<std::ptrdiff_t>(at + len));
      b.insert(b.begin() + static_cast<std::ptrdiff_t>(to), copy.begin(), copy.end());
      return fmt::format("{} bytes from {} inserted at {}", len, at, to);
    }
    case 7: {
      const std::size_t at = below(n), len = 1 + below(std::min<std::size_t>(n - at, 16));
      for (std::size_t i = 0; i < len; ++i) b[at + i] = static_cast<std::byte>(next());
      return fmt::format("{} random bytes at {}", len, at);
    }
    case 8: {
      if (other.empty()) break;
      const std::size_t at = below(n), from = below(other.size());
      const std::size_t len = std::min(other.size() - from, limit - at);
      b.resize(at);
      b.insert(b.end(), other.begin() + static_cast<std::ptrdiff_t>(from),
               other.begin() + static_cast<std::ptrdiff_t>(from + len));
      return fmt::format("spliced at {} with another seed's bytes from {}", at, from);
    }
    default: {
      const std::size_t width = below(2) ? 8 : 4;
      if (n < width) break;
      const std::size_t at = below(n - width + 1);
      PayloadField f{fmt::format("le{} at {}", width * 8, at), at, width};
      return mutate_field(b, f);
    }
  }
  const std::size_t at = n == 0 ? 0 : below(n);
  if (n == 0) {
    b.push_back(static_cast<std::byte>(next()));
    return "one random byte";
  }
  b[at] ^= std::byte{0xff};
  return fmt::format("byte {} inverted", at);
}

ResumeMutator::Mutant ResumeMutator::mutate(std::span<const std::byte> base,
                                            const PayloadLayout& layout,
                                            std::span<const std::byte> other) {
  const std::size_t limit = 2 * base.size() + 4096;
  Mutant m;
  m.bytes.assign(base.begin(), base.end());
  const std::uint64_t count = 1 + below(3);
  for (std::uint64_t i = 0; i < count || std::ranges::equal(m.bytes, base); ++i) {
    std::string how;
    if (!layout.fields.empty() && below(2) == 0) {
      const PayloadField& f = layout.fields[below(layout.fields.size())];
      if (f.offset + f.size <= m.bytes.size()) how = mutate_field(m.bytes, f);
    }
    if (how.empty()) how = mutate_bytes(m.bytes, other, limit);
    m.how += (m.how.empty() ? "" : "; ") + how;
  }
  return m;
}

}  // namespace vfio::faults
