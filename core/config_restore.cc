#include "core/config_restore.h"

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "core/retry.h"

namespace vfio {
namespace {

constexpr std::size_t kHeaderSize = 0x40;
constexpr std::size_t kHeaderType = 0x0e;

// The standard header's guest-programmed registers, as QEMU's PCI core leaves them writable and
// the kernel's vfio-pci virtualizes them. Not restored: IDs, revision, class, header type,
// subsystem IDs, capability pointer, interrupt pin (read-only); status (write-1-to-clear: writing
// the saved value back would clear the destination's error bits); BIST (a write starts a
// self-test); the capability area (QEMU re-enables MSI/MSI-X through VFIO_DEVICE_SET_IRQS, and
// keeps the rest in its own emulated copy).
constexpr std::array<ConfigRegister, 11> kRegisters{{
    {0x04, 2, "command", false},
    {0x0c, 1, "cache line size", false},
    {0x0d, 1, "latency timer", false},
    {0x10, 4, "BAR0", true},
    {0x14, 4, "BAR1", true},
    {0x18, 4, "BAR2", true},
    {0x1c, 4, "BAR3", true},
    {0x20, 4, "BAR4", true},
    {0x24, 4, "BAR5", true},
    {0x30, 4, "expansion ROM BAR", true},
    {0x3c, 1, "interrupt line", false},
}};

// Reads on until `buf` is full or the region ends; the bytes read.
Result<std::size_t> read_fully(Device& dev, std::uint64_t offset, std::span<std::byte> buf) {
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = retry_transient([&] { return dev.config_read(offset + got, buf.subspan(got)); });
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    got += *n;
  }
  return got;
}

// Short writes are resumed; a write that accepts nothing would otherwise lose the rest.
Result<> write_fully(Device& dev, std::uint64_t offset, std::span<const std::byte> bytes) {
  for (std::size_t done = 0; done < bytes.size();) {
    auto w = retry_transient([&] { return dev.config_write(offset + done, bytes.subspan(done)); });
    if (!w) return std::unexpected(w.error());
    if (*w == 0)
      return fail(EIO, fmt::format("config write at offset {} accepted no bytes", offset + done));
    done += *w;
  }
  return {};
}

std::uint32_t value_of(std::span<const std::byte> bytes) {
  std::uint32_t v = 0;
  for (std::size_t i = bytes.size(); i-- > 0;)
    v = v << 8 | std::to_integer<std::uint32_t>(bytes[i]);
  return v;
}

bool is_type0(std::span<const std::byte> header) {
  return header.size() > kHeaderType && (std::to_integer<int>(header[kHeaderType]) & 0x7f) == 0;
}

// Whether register `r` is restored between a saved space and a device's current one.
bool restored(const ConfigRegister& r, std::span<const std::byte> saved,
              std::span<const std::byte> current) {
  return (!r.type0_only || is_type0(current)) &&
         r.offset + r.width <= std::min(saved.size(), current.size());
}

Result<std::size_t> restore_registers(Device& dev, std::span<const std::byte> saved) {
  std::array<std::byte, kHeaderSize> current{};
  auto got = read_fully(dev, 0, current);
  if (!got) return std::unexpected(got.error());
  const auto header = std::span(current).first(*got);
  std::size_t written = 0;
  for (const auto& r : kRegisters) {
    if (!restored(r, saved, header)) continue;
    auto want = saved.subspan(r.offset, r.width);
    if (std::memcmp(want.data(), current.data() + r.offset, r.width) == 0) continue;
    if (auto w = write_fully(dev, r.offset, want); !w) return std::unexpected(w.error());
    ++written;
    std::array<std::byte, 4> back{};
    auto n = read_fully(dev, r.offset, std::span(back).first(r.width));
    if (!n) return std::unexpected(n.error());
    if (*n != r.width || std::memcmp(back.data(), want.data(), r.width) != 0) {
      return fail(EIO, fmt::format("{} (config offset {:#04x}) was written {:#0{}x} but reads back "
                                   "{:#0{}x}: the device did not take the saved value",
                                   r.name, r.offset, value_of(want), 2 + 2 * r.width,
                                   value_of(std::span(back).first(*n)), 2 + 2 * r.width));
    }
  }
  return written;
}

}  // namespace

std::span<const ConfigRegister> restored_config_registers() {
  return kRegisters;
}

bool config_restored_equal(std::span<const std::byte> src, std::span<const std::byte> dst,
                           ConfigRestore mode) {
  if (mode == ConfigRestore::kExact)
    return src.size() == dst.size() && std::memcmp(src.data(), dst.data(), src.size()) == 0;
  for (const auto& r : kRegisters)
    if (restored(r, src, dst) && std::memcmp(src.data() + r.offset, dst.data() + r.offset, r.width))
      return false;
  return true;
}

Result<std::size_t> restore_config(Device& dev, std::span<const std::byte> saved,
                                   ConfigRestore mode) {
  if (mode == ConfigRestore::kRegisters) return restore_registers(dev, saved);
  if (auto w = write_fully(dev, 0, saved); !w) return std::unexpected(w.error());
  return saved.size();
}

}  // namespace vfio
