// The container format that frames device sections in a migration stream (docs/stream-format.md):
// a header naming the devices, then sections {type, device index, handler payload, CRC-32C}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/stream.h"

namespace vfio::container {

constexpr std::uint64_t kMagic = 0x5646494f2d4d4947ULL;  // "VFIO-MIG"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kMaxDevices = 64;
constexpr std::uint32_t kMaxIdLength = 256;

enum class SectionType : std::uint32_t {
  kSetup = 1,       // save_setup's output
  kComplete = 2,    // save_complete_precopy's output: the device data
  kConfig = 3,      // save_state's output: config space
  kIterate = 5,     // save_iterate's output: one pre-copy block (4 stays unassigned)
  kEnd = 0x454e44,  // "END": no payload, the stream is complete
};
constexpr std::uint32_t kNoDevice = 0xffffffff;

struct Header {
  std::vector<std::string> device_ids;
};

void write_header(StreamWriter& out, const Header& header);
Result<Header> read_header(StreamReader& in);
// The same into `header`, reusing its storage (a Session reads one header per load); its
// contents are unspecified after a failure.
Result<> read_header(StreamReader& in, Header& header);

// A section: begin, the handler writes its payload, end appends the checksum.
void begin_section(StreamWriter& out, SectionType type, std::uint32_t device);
void end_section(StreamWriter& out);

struct SectionStart {
  SectionType type;
  std::uint32_t device;
  std::uint64_t offset;  // where the section begins in the stream
};
// Validates the type and that `device` < device_count (kNoDevice for kEnd).
Result<SectionStart> read_section_start(StreamReader& in, std::size_t device_count);
// Reads the stored checksum and compares it with what was read since the section began.
Result<> verify_section_end(StreamReader& in);
// After the end section: the stream must end too (no trailing bytes, no second stream).
Result<> verify_stream_end(StreamReader& in);

std::string_view section_name(SectionType type);

}  // namespace vfio::container
