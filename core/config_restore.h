// How a CONFIG section goes back into a device. The simulator models config space as plain
// memory and takes the saved bytes as they are; a real device is restored as a VMM restores it:
// only the registers a guest programs, only those that differ, each read back
// (docs/deviations.md, row 10).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/device.h"

namespace vfio {

enum class ConfigRestore {
  kExact,      // every saved byte, in order (short writes resumed)
  kRegisters,  // the restored registers below that differ from the device's, read back
};

struct ConfigRegister {
  std::uint16_t offset;
  std::uint8_t width;  // bytes; written in one access at `offset`, as a driver would
  std::string_view name;
  bool type0_only;  // a type 0 (endpoint) header register; other header types skip it
};

// The registers kRegisters restores: command, cache line size, latency timer, interrupt line,
// and on a type 0 header BAR0-5 and the expansion ROM BAR.
std::span<const ConfigRegister> restored_config_registers();

// Whether `dst` holds what restoring `src` under `mode` puts there (kExact: every byte; the
// header type is `dst`'s). What `--verify` compares.
bool config_restored_equal(std::span<const std::byte> src, std::span<const std::byte> dst,
                           ConfigRestore mode);

// Writes `saved` into `dev` under `mode`. kRegisters: returns the number of registers written;
// a register that reads back different from what was written fails, naming it and both values.
Result<std::size_t> restore_config(Device& dev, std::span<const std::byte> saved,
                                   ConfigRestore mode);

}  // namespace vfio
