#include "qemu/qemu_import.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "core/container.h"
#include "core/payload.h"
#include "core/untrusted_text.h"

namespace vfio::qemu {

using container::SectionType;

namespace {

// vmstate_pci_device's version_id field (hw/pci/pci.c): positive, at most the vmstate's version.
constexpr std::uint32_t kPciDeviceVmstateVersion = 2;
constexpr std::size_t kPciVersionSize = 4;
constexpr std::size_t kPciConfigSpace = 256;  // conventional; PCI Express has 4096

std::span<const std::byte> bytes_of(std::span<const std::byte> input, const ByteRange& r) {
  return input.subspan(r.offset, r.size);
}

}  // namespace

Result<std::span<const std::byte>> pci_config_space(std::span<const std::byte> vmstate,
                                                    std::size_t bytes) {
  if (vmstate.size() < kPciVersionSize + kPciConfigSpace) {
    return fail(EINVAL, fmt::format("vfio-pci's vmstate is {} bytes, too short for a PCI "
                                    "device's version and config space ({} bytes)",
                                    vmstate.size(), kPciVersionSize + kPciConfigSpace));
  }
  std::uint32_t version = 0;
  for (std::size_t i = 0; i < kPciVersionSize; ++i)
    version = version << 8 | std::to_integer<std::uint8_t>(vmstate[i]);
  if (version == 0 || version > kPciDeviceVmstateVersion) {
    return fail(EINVAL, fmt::format("vfio-pci's vmstate begins with PCI device version {}, not "
                                    "1 or 2: not a layout this reader knows",
                                    version));
  }
  return vmstate.subspan(kPciVersionSize, std::min(bytes, kPciConfigSpace));
}

Result<Import> import_vfio_state(std::span<const std::byte> input, const VfioState& state,
                                 bool with_config) {
  const std::string who = printable_prefix(state.idstr, kListedIdBytes);
  if (!state.complete) {
    return fail(EINVAL, fmt::format("QEMU device '{}' has no stop-copy (end) section: QEMU did "
                                    "not finish saving it, or the stream is cut",
                                    who));
  }
  for (const DataChunk& c : state.data) {
    if (c.phase == Phase::kSetup) {
      return fail(EINVAL, fmt::format("QEMU device '{}' has DEV_DATA_STATE in its setup section "
                                      "(at offset {}): not a stream QEMU 10 writes",
                                      who, c.bytes.offset));
    }
  }
  Import out;
  std::span<const std::byte> config;
  if (!with_config) {
    out.notes.push_back("config space not loaded (--no-config)");
  } else if (!state.config) {
    out.notes.push_back(
        "config space not loaded: the stream has no DEV_CONFIG_STATE for the "
        "device");
  } else if (auto space = pci_config_space(bytes_of(input, *state.config)); !space) {
    out.notes.push_back("config space not loaded: " + space.error().message);
  } else {
    config = *space;
    out.config = true;
    out.notes.push_back(fmt::format(
        "config: the config space's {}-byte standard header from vfio-pci's {}-byte vmstate, "
        "restored as this device takes a config section; the rest (capabilities, extended "
        "config space, interrupt pins, MSI/MSI-X state) not loaded",
        config.size(), state.config->size));
  }
  if (state.init_data_sent) {
    out.notes.push_back(
        "DEV_INIT_DATA_SENT (QEMU's switchover-ack signal) is not device data: "
        "not loaded");
  }

  MemoryChannel channel;
  StreamWriter w(channel);
  begin_one_device_stream(w, state.idstr);
  auto put_data = [&](const DataChunk& c) {
    // QEMU's tag and size come right before the chunk's bytes.
    out.data_tags.emplace_back(w.bytes_written(), c.bytes.offset - 2 * sizeof(std::uint64_t));
    w.put_be64(tag::kDataState);
    w.put_be64(c.bytes.size);
    w.put_buffer(bytes_of(input, c.bytes));
  };
  for (const DataChunk& c : state.data) {
    if (c.phase != Phase::kIterate) continue;
    container::begin_section(w, SectionType::kIterate, 0);
    put_data(c);
    w.put_be64(tag::kEndOfState);
    container::end_section(w);
  }
  container::begin_section(w, SectionType::kComplete, 0);
  for (const DataChunk& c : state.data)
    if (c.phase == Phase::kComplete) put_data(c);
  w.put_be64(tag::kEndOfState);
  container::end_section(w);
  end_one_device_stream(w, config);
  if (auto f = w.flush(); !f) return std::unexpected(f.error());
  out.stream = std::move(channel.data());
  return out;
}

std::string translation_offsets(const Import& import) {
  std::string out = "stream offsets above are those of the translation of QEMU's stream";
  for (std::size_t i = 0; i < import.data_tags.size(); ++i) {
    const auto& [ours, theirs] = import.data_tags[i];
    out += fmt::format("{} its DEV_DATA_STATE at {} is QEMU's at {}", i == 0 ? ":" : ";", ours,
                       theirs);
  }
  return out;
}

}  // namespace vfio::qemu
