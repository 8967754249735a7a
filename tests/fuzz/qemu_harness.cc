#include "tests/fuzz/qemu_harness.h"

#include <fmt/format.h>

#include "core/payload.h"
#include "qemu/qemu_stream.h"

namespace vfio::fuzz {
namespace {

bool inside(qemu::ByteRange inner, qemu::ByteRange outer) {
  return inner.offset >= outer.offset && inner.size <= outer.size &&
         inner.offset - outer.offset <= outer.size - inner.size;
}

std::string check_sections(const qemu::Walk& w, std::uint64_t size) {
  const qemu::ByteRange all{0, size};
  std::uint64_t next = 8;
  for (const qemu::Section& s : w.stream.sections) {
    const std::string at = fmt::format("section at {}", s.bytes.offset);
    if (!inside(s.bytes, all)) return at + " lies outside the input";
    if (s.bytes.offset < next) return at + " overlaps the one before";
    if (!w.error && s.bytes.offset != next) return at + " leaves a gap before it";
    next = s.bytes.offset + s.bytes.size;
    if (s.payload.size > 0 && !inside(s.payload, s.bytes)) return at + ": payload outside it";
    for (const qemu::VfioTag& t : s.vfio) {
      if (!inside({t.offset, 8}, s.bytes)) return at + ": a VFIO tag outside it";
      if (t.tag == tag::kDataState && !inside({t.offset + 16, t.size}, s.bytes))
        return at + ": a DATA chunk outside it";
    }
  }
  if (!w.error) {
    if (next != size) return fmt::format("accepted, but the sections end at {} of {}", next, size);
    if (w.stream.sections.empty() ||
        w.stream.sections.back().kind != qemu::SectionKind::kVmDescription)
      return "accepted without a VM description";
  }
  return "";
}

}  // namespace

Outcome run_qemu(std::span<const std::uint8_t> input) {
  const auto bytes = std::as_bytes(input);
  const qemu::Walk w = qemu::walk(bytes);
  Outcome out;
  out.accepted = !w.error;
  if (w.error) {
    out.error = w.error->message;
    if (out.error.empty()) out.violation = "a refusal without a message";
    if (w.error_offset > input.size())
      out.violation = fmt::format("refused at offset {}, past the input's {} bytes", w.error_offset,
                                  input.size());
  }
  if (out.violation.empty()) out.violation = check_sections(w, input.size());
  for (const std::string& id : qemu::vfio_devices(w.stream)) {
    if (!out.violation.empty()) break;
    auto st = qemu::vfio_state(w.stream, id);
    if (!st) {
      // The one refusal a listed device may get: its idstr under two instance ids.
      if (st.error().message.find("appears with instances") == std::string::npos)
        out.violation = "vfio_state refused a device vfio_devices listed: " + st.error().message;
      continue;
    }
    for (const qemu::DataChunk& c : st->data) {
      if (!inside(c.bytes, {0, input.size()}) || c.section >= w.stream.sections.size())
        out.violation = "a DATA chunk outside the input";
    }
    if (st->config && !inside(*st->config, {0, input.size()}))
      out.violation = "the config outside the input";
  }
  return out;
}

}  // namespace vfio::fuzz
