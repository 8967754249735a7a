// One VFIO device's state from a QEMU migration stream as a vfio-mig stream, for `vfio-mig load
// --from-qemu`: the engine's loader then takes it as it takes its own stream (the device's state
// learnt first, the section grammar, watchdogs, messages), and the device is written exactly
// the DATA chunks QEMU's destination would write, in order (docs/qemu.md, "Loading").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "qemu/qemu_stream.h"

namespace vfio::qemu {

// The config space's standard header: what `load --from-qemu` restores of QEMU's config. QEMU's
// own load writes the command register and the BARs from it into the device (the rest stays in
// its emulation or goes through interrupt ioctls), and every register vfio-mig's restore writes
// lies in it (core/config_restore.h); any device's config region holds it.
constexpr std::size_t kPciHeaderSize = 64;

// The config space at the start of vfio-pci's vmstate (DEV_CONFIG_STATE's bytes): QEMU's
// VMSTATE_PCI_DEVICE, a be32 version (1 or 2), then the config space as QEMU's guest sees it
// (256 bytes, or 4096), of which the first `bytes` are returned. Refused, saying why, for
// anything shorter or another version.
Result<std::span<const std::byte>> pci_config_space(std::span<const std::byte> vmstate,
                                                    std::size_t bytes = kPciHeaderSize);

struct Import {
  std::vector<std::byte> stream;   // a one-device vfio-mig stream
  bool config = false;             // it carries a config space; else an empty config section
  std::vector<std::string> notes;  // what of QEMU's state is not loaded, and why
  // Each DEV_DATA_STATE tag's offset in `stream` and in QEMU's input, in order: the loader's
  // messages name offsets in `stream`.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> data_tags;
};

// "stream offsets above are the translation's: its DEV_DATA_STATE at 68 is QEMU's at 290, ...".
std::string translation_offsets(const Import& import);

// `state` (read from `input`) as the stream vfio-mig's loader takes: the setup section, each
// pre-copy chunk in an iterate section of its own, the stop-copy chunks in one complete section,
// the config section (the config space's standard header when `with_config` and vfio-pci's
// vmstate yields one),
// the end. DEV_INIT_DATA_SENT is QEMU's switchover-ack signal, not device data: left out with a
// note. Refused: a device whose stop-copy section is missing (QEMU did not finish saving it, or
// the stream is cut) and DATA in a setup section (QEMU 10 sends none there).
Result<Import> import_vfio_state(std::span<const std::byte> input, const VfioState& state,
                                 bool with_config);

}  // namespace vfio::qemu
