// Reading QEMU migration streams (file magic QEVM, version 3) as QEMU 10 writes them to a
// file: every section in stream order, RAM sections summarised, VFIO device sections decoded
// tag by tag, and one VFIO device's state gathered for a loader. The input is untrusted: every
// length is checked against the input before use, nothing is allocated from one, and what the
// reader does not support is refused with its offset (docs/qemu.md, "Reading QEMU streams").
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vfio::qemu {

constexpr std::uint32_t kMagic = 0x5145564d;  // "QEVM"
constexpr std::uint32_t kVersion = 3;

// True when `input` starts with QEMU's file magic (whatever follows).
bool has_magic(std::span<const std::byte> input);

enum class SectionKind {
  kConfiguration,  // QEMU_VM_CONFIGURATION: the machine type
  kStart,          // QEMU_VM_SECTION_START: a live (iterative) section's setup
  kPart,           // QEMU_VM_SECTION_PART: one iteration
  kEnd,            // QEMU_VM_SECTION_END: the stop-copy (complete) pass
  kFull,           // QEMU_VM_SECTION_FULL: a device's whole state (the vmstate pass)
  kCommand,        // QEMU_VM_COMMAND
  kEof,            // QEMU_VM_EOF
  kVmDescription,  // QEMU_VM_VMDESCRIPTION: the JSON after the end of the stream
};
// "start", "part", "end", "full", "configuration", "command", "eof", "vmdescription".
std::string_view kind_name(SectionKind kind);

// MIG_CMD_* without the prefix: "SWITCHOVER_START" for 11, "UNKNOWN" past the known ones.
std::string_view command_name(std::uint16_t cmd);

// Bytes of the input: [offset, offset + size).
struct ByteRange {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  bool operator==(const ByteRange&) const = default;
};

// A RAM section's records (migration/ram.c's flags), counted.
struct RamSummary {
  std::uint64_t zero_pages = 0;    // RAM_SAVE_FLAG_ZERO: one fill byte each
  std::uint64_t normal_pages = 0;  // RAM_SAVE_FLAG_PAGE: a whole page each
  std::uint64_t xbzrle_pages = 0;  // RAM_SAVE_FLAG_XBZRLE: an encoded delta each
  std::uint64_t page_bytes = 0;    // page contents carried (normal pages and XBZRLE deltas)
  std::uint64_t total_ram = 0;     // RAM_SAVE_FLAG_MEM_SIZE (the start section): the total
  std::uint64_t blocks = 0;        //   and the RAM blocks it listed
  std::uint64_t multifd_flushes = 0;
};

// One tag of a VFIO device section (the reference's VFIO_MIG_FLAG_*; names: core/payload.h's
// tag_name).
struct VfioTag {
  std::uint64_t tag = 0;
  std::uint64_t offset = 0;  // the tag's first byte in the input
  std::uint64_t size = 0;    // DEV_DATA_STATE: the chunk's size; DEV_CONFIG_STATE: the config
                             // bytes up to the closing END_OF_STATE; 0 otherwise
};

struct Section {
  SectionKind kind = SectionKind::kEof;
  ByteRange bytes;    // the whole section, type byte to footer
  ByteRange payload;  // between the header and the footer
  // START, PART, END, FULL: the section id and, for PART and END from their START section,
  // the device's idstr, instance and version.
  std::uint32_t section_id = 0;
  std::string idstr;
  std::uint32_t instance_id = 0;
  std::uint32_t version_id = 0;
  bool footer_ok = false;         // QEMU_VM_SECTION_FOOTER with this section id followed
  std::uint16_t command = 0;      // kCommand: MIG_CMD_* (command_name)
  std::string machine;            // kConfiguration: the machine type ("pc-i440fx-10.0")
  std::optional<RamSummary> ram;  // the "ram" live sections
  std::vector<VfioTag> vfio;      // VFIO device sections, tag by tag

  bool is_vfio() const;
};

struct Stream {
  std::uint32_t version = 0;
  std::uint64_t page_size = 0;     // the target page size, from the VM description
  bool page_size_assumed = false;  // no VM description: 4096 taken for RAM sections
  std::vector<Section> sections;
};

// A walk over a stream: everything read, and where and why it stopped early, if it did.
struct Walk {
  Stream stream;
  std::optional<Error> error;
  std::uint64_t error_offset = 0;
};

// Reads `input` section by section up to the end of the VM description (the end of the file).
// On damage or an unsupported construct it stops, keeping the sections read before (the one it
// stopped in too, cut at the error, footer_ok false).
Walk walk(std::span<const std::byte> input);

// The whole stream, or the walk's error.
Result<Stream> read_stream(std::span<const std::byte> input);

// Where a VFIO device's DATA chunk came from: the live section's kind.
enum class Phase { kSetup, kIterate, kComplete };
std::string_view phase_name(Phase phase);  // "setup", "iterate", "complete"

struct DataChunk {
  ByteRange bytes;      // the chunk's data (after its tag and size)
  std::size_t section;  // index into Stream::sections
  Phase phase;
};

// One VFIO device's state as the stream carries it.
struct VfioState {
  std::string idstr;
  std::uint32_t instance_id = 0;
  std::vector<DataChunk> data;      // in stream order
  std::optional<ByteRange> config;  // DEV_CONFIG_STATE's bytes (vfio-pci's vmstate)
  bool init_data_sent = false;      // a DEV_INIT_DATA_SENT appeared (switchover-ack)
  bool complete = false;            // an END (stop-copy) section for the device was read whole

  std::uint64_t data_bytes() const;
};

// The idstrs of the stream's VFIO devices, in the order of their first section.
std::vector<std::string> vfio_devices(const Stream& stream);

// The state of the VFIO device named `idstr`, or of the only one when `idstr` is empty. Refused
// naming the candidates when there is none, several, or no such device.
Result<VfioState> vfio_state(const Stream& stream, std::string_view idstr = {});

}  // namespace vfio::qemu
