// inspect: the structure of a migration stream file, ours (docs/stream-format.md, read with
// the loader's own parsers) or QEMU's (qemu/qemu_stream.h). Reads only; writes nothing.
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "cli/commands.h"
#include "cli/mapped_file.h"
#include "core/channel.h"
#include "core/container.h"
#include "core/json_text.h"
#include "core/payload.h"
#include "core/stream.h"
#include "core/untrusted_text.h"
#include "qemu/qemu_stream.h"

namespace vfio::cli {
namespace {

constexpr std::string_view kCommand = "inspect";

struct TagLine {
  std::string name;
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> size;  // DATA and CONFIG
};

std::string tag_json(const TagLine& t) {
  return fmt::format("{{\"tag\": {}, \"offset\": {}{}}}", json_quote(t.name), t.offset,
                     t.size ? fmt::format(", \"size\": {}", *t.size) : "");
}

std::string tag_text(const TagLine& t) {
  return fmt::format("{:26}@{:<10} {}{}\n", "", t.offset, t.name,
                     t.size ? fmt::format(" {} bytes", *t.size) : "");
}

template <class T, class F>
std::string json_list(const std::vector<T>& items, F&& one) {
  std::string out = "[";
  for (const T& item : items) {
    if (out.size() > 1) out += ", ";
    out += one(item);
  }
  return out + "]";
}

// --- vfio-mig streams ------------------------------------------------------------------------

struct OurSection {
  std::string type;
  std::uint64_t offset = 0, length = 0;
  std::optional<std::uint32_t> device;
  bool crc_ok = false;
  std::vector<TagLine> tags;
};

struct OurListing {
  std::vector<std::string> devices;
  std::uint64_t header_length = 0;
  std::vector<OurSection> sections;
  std::optional<Error> error;  // the first damage; a checksum mismatch does not stop the walk
};

// The payload's tags, from what read_payload saw: its DATA chunks and where it ended.
std::vector<TagLine> payload_tags(container::SectionType type, std::uint64_t section_offset,
                                  const Payload& p, std::vector<TagLine> data) {
  const std::uint64_t first = section_offset + 8;
  std::vector<TagLine> tags;
  if (type == container::SectionType::kSetup)
    tags.push_back({tag_name(tag::kSetupState), first, std::nullopt});
  if (type == container::SectionType::kConfig)
    tags.push_back({tag_name(tag::kConfigState), first, p.config.size()});
  for (TagLine& d : data) tags.push_back(std::move(d));
  tags.push_back({tag_name(p.init_data_sent ? tag::kInitDataSent : tag::kEndOfState), p.end_offset,
                  std::nullopt});
  return tags;
}

OurListing walk_ours(Channel& channel) {
  OurListing out;
  StreamReader in(channel);
  auto header = container::read_header(in);
  if (!header) {
    out.error = header.error();
    return out;
  }
  out.devices = header->device_ids;
  out.header_length = in.bytes_read();
  std::vector<std::byte> sink(64 * 1024);
  while (true) {
    auto start = container::read_section_start(in, out.devices.size());
    if (!start) {
      if (!out.error) out.error = start.error();
      return out;
    }
    OurSection s;
    s.type = container::section_name(start->type);
    s.offset = start->offset;
    if (start->type != container::SectionType::kEnd) s.device = start->device;
    std::vector<TagLine> data;
    auto skip = [&](StreamReader& r, std::uint64_t size, std::uint64_t at) -> Result<> {
      data.push_back({tag_name(tag::kDataState), at, size});
      for (std::uint64_t left = size; left > 0 && r.status();) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, sink.size()));
        r.get_buffer(std::span(sink).first(n));
        left -= n;
      }
      return r.status();
    };
    if (start->type != container::SectionType::kEnd) {
      auto payload = read_payload(in, start->type, skip);
      if (!payload) {
        s.length = in.bytes_read() - s.offset;
        s.tags = std::move(data);
        out.sections.push_back(std::move(s));
        if (!out.error) out.error = payload.error();
        return out;
      }
      s.tags = payload_tags(start->type, s.offset, *payload, std::move(data));
    }
    auto crc = container::verify_section_end(in);
    s.crc_ok = bool(crc);
    s.length = in.bytes_read() - s.offset;
    out.sections.push_back(std::move(s));
    if (!crc) {
      if (!out.error) out.error = crc.error();
      if (!in.status()) return out;  // cut off: nothing more to read
    }
    if (start->type == container::SectionType::kEnd) {
      if (auto e = container::verify_stream_end(in); !e && !out.error) out.error = e.error();
      return out;
    }
  }
}

void print_ours(const std::string& path, const OurListing& l) {
  fmt::print("vfio-mig stream {}: format version {}, {} device(s)\n", printable(path),
             container::kVersion, l.devices.size());
  for (std::size_t i = 0; i < l.devices.size(); ++i)
    fmt::print("  device {}: '{}'\n", i, printable(l.devices[i]));
  if (l.header_length == 0) return;
  fmt::print("  {:>10}  {:>10}  {:<9} {:<7} {}\n", "offset", "length", "section", "device", "crc");
  fmt::print("  {:>10}  {:>10}  {:<9} {:<7} {}\n", 0, l.header_length, "header", "", "ok");
  for (const OurSection& s : l.sections) {
    fmt::print("  {:>10}  {:>10}  {:<9} {:<7} {}\n", s.offset, s.length, s.type,
               s.device ? std::to_string(*s.device) : "", s.crc_ok ? "ok" : "BAD");
    for (const TagLine& t : s.tags) fmt::print("{}", tag_text(t));
  }
}

std::string ours_json(const std::string& path, const OurListing& l) {
  const std::string sections = json_list(l.sections, [](const OurSection& s) {
    return fmt::format(
        "{{\"type\": {}, \"offset\": {}, \"length\": {}, \"device\": {}, \"crc_ok\": {}, "
        "\"tags\": {}}}",
        json_quote(s.type), s.offset, s.length, s.device ? std::to_string(*s.device) : "null",
        s.crc_ok, json_list(s.tags, tag_json));
  });
  return fmt::format(
      "{{\"command\": \"inspect\", \"file\": {}, \"format\": \"vfio-mig\", \"ok\": {}, "
      "\"error\": {}, \"version\": {}, \"devices\": {}, \"header_length\": {}, \"sections\": "
      "{}}}\n",
      json_quote(path), !l.error, l.error ? json_quote(l.error->message) : "null",
      container::kVersion, json_list(l.devices, json_quote), l.header_length, sections);
}

int inspect_ours(const std::string& path, bool json) {
  auto channel = FdChannel::open_for_read(path);
  if (!channel) {
    print_error(kCommand, channel.error().describe());
    return kExitFailed;
  }
  const OurListing l = walk_ours(*channel);
  if (json) {
    fmt::print("{}", ours_json(path, l));
  } else {
    print_ours(path, l);
  }
  if (l.error) print_error(kCommand, l.error->message);  // it names the file
  return l.error ? kExitFailed : kExitOk;
}

// --- QEMU streams ----------------------------------------------------------------------------

std::vector<TagLine> vfio_tags(const qemu::Section& s) {
  std::vector<TagLine> out;
  for (const qemu::VfioTag& t : s.vfio) {
    const bool sized = t.tag == tag::kDataState || t.tag == tag::kConfigState;
    out.push_back(
        {tag_name(t.tag), t.offset, sized ? std::optional<std::uint64_t>(t.size) : std::nullopt});
  }
  return out;
}

std::string ram_text(const qemu::RamSummary& r) {
  std::vector<std::string> parts;
  if (r.blocks)
    parts.push_back(fmt::format("MEM_SIZE {} bytes in {} blocks", r.total_ram, r.blocks));
  if (r.zero_pages) parts.push_back(fmt::format("{} zero pages", r.zero_pages));
  if (r.normal_pages) parts.push_back(fmt::format("{} normal pages", r.normal_pages));
  if (r.xbzrle_pages) parts.push_back(fmt::format("{} XBZRLE pages", r.xbzrle_pages));
  if (r.page_bytes) parts.push_back(fmt::format("{} bytes of page data", r.page_bytes));
  if (r.multifd_flushes) parts.push_back(fmt::format("{} multifd flushes", r.multifd_flushes));
  if (parts.empty()) return "RAM: no pages";
  std::string out = "RAM: " + parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) out += ", " + parts[i];
  return out;
}

std::string ram_json(const qemu::RamSummary& r) {
  return fmt::format(
      "{{\"total_ram\": {}, \"blocks\": {}, \"zero_pages\": {}, \"normal_pages\": {}, "
      "\"xbzrle_pages\": {}, \"page_bytes\": {}, \"multifd_flushes\": {}}}",
      r.total_ram, r.blocks, r.zero_pages, r.normal_pages, r.xbzrle_pages, r.page_bytes,
      r.multifd_flushes);
}

bool has_header(qemu::SectionKind k) {
  using K = qemu::SectionKind;
  return k == K::kStart || k == K::kPart || k == K::kEnd || k == K::kFull;
}

std::string device_text(const qemu::VfioState& st) {
  std::string chunks;
  for (const qemu::DataChunk& c : st.data) {
    chunks += fmt::format("{}{} {} @{}", chunks.empty() ? "" : ", ", qemu::phase_name(c.phase),
                          c.bytes.size, c.bytes.offset);
  }
  return fmt::format(
      "VFIO device '{}' instance {}: {} bytes of data in {} chunks ({}), config {}, "
      "INIT_DATA_SENT {}, {}\n",
      printable(st.idstr), st.instance_id, st.data_bytes(), st.data.size(),
      chunks.empty() ? "none" : chunks,
      st.config ? fmt::format("{} bytes @{}", st.config->size, st.config->offset) : "none",
      st.init_data_sent ? "yes" : "no", st.complete ? "complete" : "NO END SECTION");
}

std::string device_json(const qemu::VfioState& st) {
  const std::string chunks = json_list(st.data, [](const qemu::DataChunk& c) {
    return fmt::format("{{\"phase\": {}, \"offset\": {}, \"size\": {}}}",
                       json_quote(qemu::phase_name(c.phase)), c.bytes.offset, c.bytes.size);
  });
  return fmt::format(
      "{{\"idstr\": {}, \"instance_id\": {}, \"data_bytes\": {}, \"data\": {}, \"config\": {}, "
      "\"init_data_sent\": {}, \"complete\": {}}}",
      json_quote(st.idstr), st.instance_id, st.data_bytes(), chunks,
      st.config
          ? fmt::format("{{\"offset\": {}, \"size\": {}}}", st.config->offset, st.config->size)
          : "null",
      st.init_data_sent, st.complete);
}

void print_qemu(const std::string& path, const qemu::Walk& w,
                const std::vector<qemu::VfioState>& devices) {
  const qemu::Stream& s = w.stream;
  fmt::print("QEMU migration stream {}: file version {}, target page size {}{}\n", printable(path),
             s.version, s.page_size, s.page_size_assumed ? " (assumed: no VM description)" : "");
  if (s.sections.empty()) return;
  fmt::print("  {:>10}  {:>10}  {:<13} {:>5}  {:<24} {:>4} {:>4}  {}\n", "offset", "length",
             "section", "id", "idstr", "inst", "ver", "footer");
  for (const qemu::Section& sec : s.sections) {
    const std::string kind(qemu::kind_name(sec.kind));
    if (has_header(sec.kind)) {
      fmt::print("  {:>10}  {:>10}  {:<13} {:>5}  {:<24} {:>4} {:>4}  {}\n", sec.bytes.offset,
                 sec.bytes.size, kind, sec.section_id, printable_prefix(sec.idstr, 64),
                 sec.instance_id, sec.version_id, sec.footer_ok ? "ok" : "BAD");
    } else {
      std::string note;
      if (sec.kind == qemu::SectionKind::kConfiguration)
        note = fmt::format("machine '{}'", printable_prefix(sec.machine, 64));
      if (sec.kind == qemu::SectionKind::kCommand)
        note = fmt::format("MIG_CMD_{} ({})", qemu::command_name(sec.command), sec.command);
      if (sec.kind == qemu::SectionKind::kVmDescription)
        note = fmt::format("{} bytes of JSON", sec.payload.size);
      fmt::print("  {:>10}  {:>10}  {}\n", sec.bytes.offset, sec.bytes.size,
                 note.empty() ? kind : fmt::format("{:<13} {}", kind, note));
    }
    if (sec.ram) fmt::print("{:26}{}\n", "", ram_text(*sec.ram));
    for (const TagLine& t : vfio_tags(sec)) fmt::print("{}", tag_text(t));
  }
  for (const qemu::VfioState& st : devices) fmt::print("{}", device_text(st));
}

std::string qemu_json(const std::string& path, const qemu::Walk& w,
                      const std::vector<qemu::VfioState>& devices) {
  const std::string sections = json_list(w.stream.sections, [](const qemu::Section& s) {
    std::string out =
        fmt::format("{{\"kind\": {}, \"offset\": {}, \"length\": {}",
                    json_quote(qemu::kind_name(s.kind)), s.bytes.offset, s.bytes.size);
    if (has_header(s.kind)) {
      out += fmt::format(
          ", \"section_id\": {}, \"idstr\": {}, \"instance_id\": {}, \"version_id\": {}, "
          "\"footer_ok\": {}",
          s.section_id, json_quote(s.idstr), s.instance_id, s.version_id, s.footer_ok);
    }
    if (s.kind == qemu::SectionKind::kConfiguration)
      out += fmt::format(", \"machine\": {}", json_quote(s.machine));
    if (s.kind == qemu::SectionKind::kCommand) out += fmt::format(", \"command\": {}", s.command);
    if (s.ram) out += fmt::format(", \"ram\": {}", ram_json(*s.ram));
    if (s.is_vfio()) out += fmt::format(", \"vfio\": {}", json_list(vfio_tags(s), tag_json));
    return out + "}";
  });
  return fmt::format(
      "{{\"command\": \"inspect\", \"file\": {}, \"format\": \"qemu\", \"ok\": {}, \"error\": {}, "
      "\"error_offset\": {}, \"version\": {}, \"page_size\": {}, \"page_size_assumed\": {}, "
      "\"sections\": {}, "
      "\"vfio_devices\": {}}}\n",
      json_quote(path), !w.error, w.error ? json_quote(w.error->message) : "null",
      w.error ? std::to_string(w.error_offset) : "null", w.stream.version, w.stream.page_size,
      w.stream.page_size_assumed, sections, json_list(devices, device_json));
}

int inspect_qemu(const std::string& path, std::span<const std::byte> bytes, bool json) {
  const qemu::Walk w = qemu::walk(bytes);
  std::vector<qemu::VfioState> devices;
  for (const std::string& id : qemu::vfio_devices(w.stream)) {
    if (auto st = qemu::vfio_state(w.stream, id)) devices.push_back(std::move(*st));
  }
  if (json) {
    fmt::print("{}", qemu_json(path, w, devices));
  } else {
    print_qemu(path, w, devices);
  }
  if (w.error) print_error(kCommand, fmt::format("{}: {}", path, w.error->message));
  return w.error ? kExitFailed : kExitOk;
}

}  // namespace

int run_inspect(const ParsedArgs& args) {
  const std::string& path = args.positionals[0];
  const bool json = args.has("json");
  auto file = MappedFile::open(path);
  if (!file) {
    print_error(kCommand, file.error().describe());
    return kExitFailed;
  }
  const auto bytes = file->bytes();
  if (qemu::has_magic(bytes)) return inspect_qemu(path, bytes, json);
  const std::string_view ours = "VFIO-MIG";  // container::kMagic, big-endian
  if (bytes.size() < ours.size() || std::memcmp(bytes.data(), ours.data(), ours.size()) != 0) {
    print_error(kCommand, fmt::format("{}: not a migration stream: it starts with neither "
                                      "vfio-mig's magic (VFIO-MIG) nor QEMU's (QEVM)",
                                      path));
    return kExitFailed;
  }
  return inspect_ours(path, json);
}

}  // namespace vfio::cli
