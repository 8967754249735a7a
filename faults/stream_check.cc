#include "faults/stream_check.h"

#include <vector>

#include <fmt/format.h>

#include "core/container.h"
#include "core/migration.h"

namespace vfio::faults {
namespace {

using container::SectionType;

// The payload of one device section, tag by tag, without a device to write into.
Result<> skip_payload(StreamReader& in, SectionType type) {
  std::vector<std::byte> sink(64 * 1024);
  auto skip = [&](std::uint64_t n) {
    while (n > 0 && in.status()) {
      auto chunk = std::min<std::uint64_t>(n, sink.size());
      in.get_buffer(std::span(sink).first(static_cast<std::size_t>(chunk)));
      n -= chunk;
    }
  };
  std::uint64_t t = in.get_be64();
  if (auto s = in.status(); !s) return s;
  if (type == SectionType::kSetup) {
    if (t != tag::kSetupState) return fail(EINVAL, fmt::format("setup section tag {:#x}", t));
    t = in.get_be64();
  } else if (type == SectionType::kConfig) {
    if (t != tag::kConfigState) return fail(EINVAL, fmt::format("config section tag {:#x}", t));
    std::uint64_t length = in.get_be64();
    if (auto s = in.status(); !s) return s;
    if (length > kMaxConfigBlob) return fail(EINVAL, fmt::format("config length {}", length));
    skip(length);
    t = in.get_be64();
  } else {
    while (t == tag::kDataState && in.status()) {
      skip(in.get_be64());
      t = in.get_be64();
    }
  }
  if (auto s = in.status(); !s) return s;
  // An iterate section may end with INIT_DATA_SENT instead (switchover-ack).
  if (type == SectionType::kIterate && t == tag::kInitDataSent) return {};
  if (t != tag::kEndOfState)
    return fail(EINVAL,
                fmt::format("{} section: unexpected tag {:#x}", container::section_name(type), t));
  return {};
}

Result<bool> walk(StreamReader& in) {
  auto header = container::read_header(in);
  if (!header) return std::unexpected(header.error());
  for (;;) {
    auto section = container::read_section_start(in, header->device_ids.size());
    if (!section) return std::unexpected(section.error());
    if (section->type != SectionType::kEnd) {
      if (auto p = skip_payload(in, section->type); !p) return std::unexpected(p.error());
    }
    if (auto c = container::verify_section_end(in); !c) return std::unexpected(c.error());
    if (section->type == SectionType::kEnd) return true;
  }
}

}  // namespace

StreamCheck check_stream(std::span<const std::byte> bytes) {
  MemoryChannel channel(std::vector<std::byte>(bytes.begin(), bytes.end()));
  StreamReader in(channel, 64 * 1024);
  StreamCheck out;
  auto r = walk(in);
  if (r) {
    out.complete = true;
    if (!in.at_end()) {
      out.well_formed = false;
      out.problem = fmt::format("{} bytes after the end section", bytes.size() - in.bytes_read());
    }
    return out;
  }
  // Ran out of bytes while everything read so far made sense: a truncated tail.
  if (in.bytes_read() == bytes.size() && in.error()) {
    out.problem = fmt::format("cut after {} bytes", bytes.size());
    return out;
  }
  out.well_formed = false;
  out.problem = r.error().describe();
  return out;
}

}  // namespace vfio::faults
