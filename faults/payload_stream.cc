#include "faults/payload_stream.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/container.h"
#include "core/payload.h"

namespace vfio::faults {

using container::SectionType;

Result<SavedPayload> read_payload_stream(std::span<const std::byte> stream) {
  MemoryChannel channel(std::vector<std::byte>(stream.begin(), stream.end()));
  StreamReader in(channel);
  auto header = container::read_header(in);
  if (!header) return std::unexpected(header.error());
  if (header->device_ids.size() != 1)
    return fail(EINVAL, fmt::format("the stream carries {} devices; fuzz-resume takes one",
                                    header->device_ids.size()));
  SavedPayload out;
  out.device_id = header->device_ids[0];
  // The stream's own length bounds every chunk: sizes are checked against what is there.
  const DataHandler keep = [&](StreamReader& r, std::uint64_t size, std::uint64_t) -> Result<> {
    if (size > stream.size()) return fail(EINVAL, "a DATA chunk longer than the stream");
    const std::size_t at = out.data.size();
    out.data.resize(at + size);
    r.get_buffer(std::span(out.data).subspan(at));
    return r.status();
  };
  for (;;) {
    auto section = container::read_section_start(in, 1);
    if (!section) return std::unexpected(section.error());
    if (section->type == SectionType::kEnd) break;
    auto payload = read_payload(in, section->type, keep);
    if (!payload) return std::unexpected(payload.error());
    if (section->type == SectionType::kConfig) out.config = std::move(payload->config);
    if (auto c = container::verify_section_end(in); !c) return std::unexpected(c.error());
  }
  if (auto c = container::verify_section_end(in); !c) return std::unexpected(c.error());
  if (auto e = container::verify_stream_end(in); !e) return std::unexpected(e.error());
  return out;
}

std::vector<std::byte> write_payload_stream(const SavedPayload& p, std::size_t chunk) {
  MemoryChannel channel;
  {
    StreamWriter out(channel);
    begin_one_device_stream(out, p.device_id);
    container::begin_section(out, SectionType::kComplete, 0);
    for (std::size_t at = 0; at < p.data.size(); at += chunk) {
      const std::size_t n = std::min(chunk, p.data.size() - at);
      out.put_be64(tag::kDataState);
      out.put_be64(n);
      out.put_buffer(std::span(p.data).subspan(at, n));
    }
    out.put_be64(tag::kEndOfState);
    container::end_section(out);
    end_one_device_stream(out, p.config);
    (void)out.flush();  // memory: cannot fail
  }
  return std::move(channel.data());
}

}  // namespace vfio::faults
