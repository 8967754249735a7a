// The device payload inside a section (docs/stream-format.md, "Device payload"): the
// reference's tags, and the one reader that holds a payload to what its section type admits.
// The loader writes what it reads into a device; a checker that only walks a stream can pass
// a handler that skips the data.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/container.h"
#include "core/stream.h"

namespace vfio {

// Stream delimiters of a device section (the reference's VFIO_MIG_FLAG_*).
namespace tag {
constexpr std::uint64_t kEndOfState = 0xffffffffef100001ULL;
constexpr std::uint64_t kConfigState = 0xffffffffef100002ULL;
constexpr std::uint64_t kSetupState = 0xffffffffef100003ULL;
constexpr std::uint64_t kDataState = 0xffffffffef100004ULL;
// Ends an iterate section instead of END_OF_STATE once the device's initial pre-copy data was
// all sent (switchover-ack).
constexpr std::uint64_t kInitDataSent = 0xffffffffef100005ULL;
}  // namespace tag

// Largest config-space blob a stream may carry; longer claims are refused unread.
constexpr std::uint64_t kMaxConfigBlob = 4096;

// "DEV_DATA_STATE", or "unknown tag 0x..." for anything else.
std::string tag_name(std::uint64_t tag);

// Takes one DATA chunk: exactly `size` (at least 1) bytes follow in `in`; the chunk's tag sat
// at stream offset `offset`.
using DataHandler =
    std::function<Result<>(StreamReader& in, std::uint64_t size, std::uint64_t offset)>;

struct Payload {
  // The iterate section ended with DEV_INIT_DATA_SENT (switchover-ack) instead of END_OF_STATE,
  // at stream offset `end_offset`.
  bool init_data_sent = false;
  std::uint64_t end_offset = 0;
  std::vector<std::byte> config;  // a config section's blob (at most kMaxConfigBlob bytes)
};

// Reads one section's payload, exactly as `type` admits it:
//   setup     DEV_SETUP_STATE END_OF_STATE
//   iterate   (DEV_DATA_STATE size bytes)? (END_OF_STATE | DEV_INIT_DATA_SENT)
//   complete  (DEV_DATA_STATE size bytes)* END_OF_STATE
//   config    DEV_CONFIG_STATE length bytes END_OF_STATE    (length <= kMaxConfigBlob)
// with size >= 1. Anything else is refused with its stream offset. `type` is not kEnd.
Result<Payload> read_payload(StreamReader& in, container::SectionType type,
                             const DataHandler& data);

// A one-device stream built from device data saved elsewhere (a payload file, a QEMU stream):
// begin writes its header and its setup section, which carries no setup data; end writes its
// config section with `config` and the end section. The caller writes the iterate and complete
// sections in between.
void begin_one_device_stream(StreamWriter& out, const std::string& device_id);
void end_one_device_stream(StreamWriter& out, std::span<const std::byte> config);

}  // namespace vfio
