#include "core/container.h"

#include <cerrno>
#include <utility>

#include <fmt/format.h>

namespace vfio::container {
namespace {

// Header checksum and section checksums are both the running CRC since the last reset.
void put_checksum(StreamWriter& out) {
  out.put_be32(out.checksum());
}

Result<> check_checksum(StreamReader& in, std::string_view what) {
  std::uint32_t computed = in.checksum();
  std::uint32_t stored = in.get_be32();
  if (auto s = in.status(); !s) return s;
  if (stored != computed) {
    return fail(EBADMSG, fmt::format("{}: checksum mismatch (stored {:#010x}, computed {:#010x})"
                                     " at stream offset {}",
                                     what, stored, computed, in.bytes_read()));
  }
  return {};
}

bool known_section(std::uint32_t type) {
  switch (static_cast<SectionType>(type)) {
    case SectionType::kSetup:
    case SectionType::kComplete:
    case SectionType::kConfig:
    case SectionType::kIterate:
    case SectionType::kEnd:
      return true;
  }
  return false;
}

}  // namespace

std::string_view section_name(SectionType type) {
  switch (type) {
    case SectionType::kSetup:
      return "setup";
    case SectionType::kComplete:
      return "complete";
    case SectionType::kConfig:
      return "config";
    case SectionType::kIterate:
      return "iterate";
    case SectionType::kEnd:
      return "end";
  }
  return "unknown";
}

void write_header(StreamWriter& out, const Header& header) {
  out.reset_checksum();
  out.put_be64(kMagic);
  out.put_be32(kVersion);
  out.put_be32(static_cast<std::uint32_t>(header.device_ids.size()));
  for (const auto& id : header.device_ids) {
    out.put_be32(static_cast<std::uint32_t>(id.size()));
    out.put_buffer(std::as_bytes(std::span(id)));
  }
  put_checksum(out);
}

Result<Header> read_header(StreamReader& in) {
  Header header;
  if (auto r = read_header(in, header); !r) return std::unexpected(std::move(r).error());
  return header;
}

Result<> read_header(StreamReader& in, Header& header) {
  in.reset_checksum();
  std::uint64_t magic = in.get_be64();
  if (auto s = in.status(); !s) return s;
  if (magic != kMagic) {
    return fail(EINVAL, fmt::format("not a vfio-mig stream (magic {:#018x} at stream offset 0, "
                                    "expected {:#018x})",
                                    magic, kMagic));
  }
  std::uint32_t version = in.get_be32();
  std::uint32_t count = in.get_be32();
  if (auto s = in.status(); !s) return s;
  if (version != kVersion) {
    return fail(EPROTONOSUPPORT,
                fmt::format("stream format version {} is not supported (stream offset 8; this "
                            "build reads {})",
                            version, kVersion));
  }
  if (count == 0 || count > kMaxDevices) {
    return fail(EINVAL, fmt::format("stream header claims {} devices (stream offset 12; 1 to {} "
                                    "allowed)",
                                    count, kMaxDevices));
  }
  header.device_ids.resize(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t offset = in.bytes_read();
    std::uint32_t length = in.get_be32();
    if (auto s = in.status(); !s) return s;
    if (length > kMaxIdLength) {
      return fail(EINVAL, fmt::format("device {} id of {} bytes at stream offset {} exceeds the "
                                      "{}-byte limit",
                                      i, length, offset, kMaxIdLength));
    }
    std::string& id = header.device_ids[i];
    id.resize(length);
    in.get_buffer(std::as_writable_bytes(std::span(id)));
  }
  if (auto s = in.status(); !s) return s;
  return check_checksum(in, "stream header");
}

void begin_section(StreamWriter& out, SectionType type, std::uint32_t device) {
  out.reset_checksum();
  out.put_be32(static_cast<std::uint32_t>(type));
  out.put_be32(device);
}

void end_section(StreamWriter& out) {
  put_checksum(out);
}

Result<SectionStart> read_section_start(StreamReader& in, std::size_t device_count) {
  in.reset_checksum();
  std::uint64_t offset = in.bytes_read();
  std::uint32_t type = in.get_be32();
  std::uint32_t device = in.get_be32();
  if (auto s = in.status(); !s) return std::unexpected(std::move(s).error());
  if (!known_section(type)) {
    return fail(EINVAL,
                fmt::format("unknown section type {:#x} at stream offset {}", type, offset));
  }
  auto section = static_cast<SectionType>(type);
  bool device_ok = section == SectionType::kEnd ? device == kNoDevice : device < device_count;
  if (!device_ok) {
    return fail(EINVAL, fmt::format("{} section at stream offset {} names device {:#x} "
                                    "(the stream has {} devices)",
                                    section_name(section), offset, device, device_count));
  }
  return SectionStart{section, device, offset};
}

Result<> verify_section_end(StreamReader& in) {
  return check_checksum(in, "section");
}

Result<> verify_stream_end(StreamReader& in) {
  const std::uint64_t offset = in.bytes_read();
  if (in.at_end()) return {};
  if (auto s = in.status(); !s) return s;
  return fail(EINVAL, fmt::format("bytes follow the end section, from stream offset {}: a stream "
                                  "ends at its end section",
                                  offset));
}

}  // namespace vfio::container
