// Writes the fuzzers' seed corpora and dictionary (run through scripts/gen-corpus):
//   <out>/stream/   whole streams, as Session::save writes them for every simulator profile and a
//                   range of state sizes, plus hand-made edge cases built with the stream model
//   <out>/section/  one profile byte + device section payloads (see run_section)
//   <out>/vfio_stream.dict  the stream's tags, magics and section types for libFuzzer -dict
// Deterministic: the same build writes the same bytes, so a regenerated corpus diffs cleanly.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/container.h"
#include "core/migration.h"
#include "core/payload.h"
#include "qemu/qemu_stream.h"
#include "simdev/profile.h"
#include "tests/fuzz/harness.h"
#include "tests/fuzz/stream_model.h"
#include "tests/qemu/stream_builder.h"

namespace vfio::fuzz {
namespace {

namespace fs = std::filesystem;
using container::SectionType;

constexpr std::uint32_t kSetup = static_cast<std::uint32_t>(SectionType::kSetup);
constexpr std::uint32_t kComplete = static_cast<std::uint32_t>(SectionType::kComplete);
constexpr std::uint32_t kConfig = static_cast<std::uint32_t>(SectionType::kConfig);
constexpr std::uint32_t kIterate = static_cast<std::uint32_t>(SectionType::kIterate);

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "gen_corpus: %s\n", what.c_str());
  std::exit(1);
}

class Writer {
 public:
  explicit Writer(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }
  void put(const std::string& name, const Bytes& data) {
    std::ofstream f(dir_ / (name + ".bin"), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (!f) die("cannot write " + (dir_ / name).string());
    ++files_;
    bytes_ += data.size();
  }
  std::size_t files() const { return files_; }
  std::size_t bytes() const { return bytes_; }

 private:
  fs::path dir_;
  std::size_t files_ = 0, bytes_ = 0;
};

Stream parsed(const Bytes& data) {
  auto s = parse_stream(data);
  if (!s || !s->tail.empty()) die("a saved stream does not parse");
  return *s;
}

std::uint8_t profile_index(std::string_view name) {
  auto all = sim::all_profiles();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].name == name) return static_cast<std::uint8_t>(i);
  }
  die(fmt::format("no profile {}", name));
}

Bytes section_input(std::uint8_t profile, const std::vector<const Section*>& sections) {
  SectionInput in{profile, {}, {}};
  for (const auto* s : sections) in.sections.push_back(*s);
  return write_section_input(in);
}

Bytes section_input(std::uint8_t profile, std::uint32_t type, const std::vector<Item>& items) {
  return write_section_input({profile, {section(type, 0, items)}, {}});
}

const Section& find(const Stream& s, std::uint32_t type) {
  for (const auto& sec : s.sections) {
    if (sec.type == type) return sec;
  }
  die("section missing");
}

Item end_tag() {
  return tag_item(tag::kEndOfState);
}

// Several devices in one stream: each device's sections in turn, as the source interleaves
// (or, `by_device`, one device after the other, which the loader refuses).
Bytes multi_device(const std::vector<Stream>& singles, bool by_device = false) {
  Stream s = singles.at(0);
  s.ids.clear();
  s.sections.clear();
  for (const auto& one : singles) s.ids.push_back(one.ids.at(0));
  s.count = static_cast<std::uint32_t>(s.ids.size());
  for (std::uint32_t type : {kSetup, kComplete, kConfig}) {
    for (std::uint32_t dev = 0; dev < singles.size(); ++dev) {
      Section sec = find(singles[dev], type);
      sec.device = dev;
      s.sections.push_back(std::move(sec));
    }
  }
  if (by_device) {
    std::stable_sort(s.sections.begin(), s.sections.end(),
                     [](const Section& a, const Section& b) { return a.device < b.device; });
  }
  s.sections.push_back(end_section());
  return write_stream(s);
}

void stream_seeds(Writer& w) {
  // Real streams: every profile, empty to 4 KiB (a buffer's worth: the harness reads through a
  // 4 KiB stream buffer). Larger ones only cost time: every execution of a seed or of a mutant
  // copies, checksums and validates all of its bytes, and seeds of up to 256 KiB made most of the
  // corpus's bytes without reaching a single edge more.
  for (const auto& p : sim::all_profiles()) {
    for (std::uint64_t size : {0, 1, 100, 4096})
      w.put(fmt::format("{}-{}", p.name, size), saved_stream(p.name, size, 7));
    MigrationOptions small_buffer;
    small_buffer.data_buffer_size = 64;  // ten DATA chunks in the complete section
    w.put(fmt::format("{}-600-chunked", p.name), saved_stream(p.name, 600, 8, small_buffer));
    MigrationOptions no_config;
    no_config.config_state = false;  // CONFIG with length 0
    w.put(fmt::format("{}-100-no-config", p.name), saved_stream(p.name, 100, 9, no_config));
  }

  Stream base = parsed(saved_stream("mlx5", 100, 7));
  // Sections by type, not position: pre-copy may add iterate sections before complete.
  auto at = [&](std::uint32_t type) {
    return static_cast<std::size_t>(&find(base, type) - base.sections.data());
  };
  const std::size_t setup = at(kSetup), complete = at(kComplete), config = at(kConfig);
  const int end = static_cast<int>(base.sections.size() - 1);
  auto with = [&](auto edit, CrcPolicy crc = {}) {
    Stream s = base;
    edit(s);
    return write_stream(s, crc);
  };
  Bytes good = write_stream(base);

  // Several devices. Not up to the format's limit of 64: such a stream costs as much as 64
  // single-device ones on every execution (each device is set up, resumed and checked), the
  // scheduler favours it for its rare loop counts, and its mutants took most of the fuzzer's
  // time without an edge that 2 and 5 devices (and count-65) do not reach. The mutator still
  // grows streams a device at a time up to 64.
  w.put("multi-2",
        multi_device({parsed(saved_stream("mlx5", 100, 1)), parsed(saved_stream("mtty", 50, 2))}));
  {
    std::vector<Stream> all;
    for (const auto& p : sim::all_profiles()) all.push_back(parsed(saved_stream(p.name, 40, 3)));
    w.put("multi-5", multi_device(all));
  }

  // Framing edge cases.
  w.put("empty", {});
  w.put("magic-only", Bytes(good.begin(), good.begin() + 8));
  Bytes header_only = with([&](Stream& s) { s.sections.clear(); });
  w.put("header-only", header_only);
  w.put("header-then-end", with([&](Stream& s) { s.sections = {end_section()}; }));
  w.put("wrong-magic", with([&](Stream& s) { s.magic ^= 1; }));
  w.put("wrong-version", with([&](Stream& s) { s.version = 2; }));
  w.put("count-0", with([&](Stream& s) { s.count = 0; }));
  w.put("count-65", with([&](Stream& s) { s.count = container::kMaxDevices + 1; }));
  w.put("count-2-ids-1", with([&](Stream& s) { s.count = 2; }));
  w.put("id-256", with([&](Stream& s) { s.ids[0] = "mlx5" + std::string(252, '.'); }));
  {
    Bytes b = with([&](Stream& s) { s.ids[0] = std::string(257, 'x'); });  // refused unread
    w.put("id-257", b);
  }
  w.put("bad-header-crc", with([](Stream&) {}, {.corrupt_header = true}));
  w.put("bad-setup-crc", with([](Stream&) {}, {.corrupt_section = static_cast<int>(setup)}));
  w.put("bad-complete-crc", with([](Stream&) {}, {.corrupt_section = static_cast<int>(complete)}));
  w.put("bad-end-crc", with([](Stream&) {}, {.corrupt_section = end}));
  w.put("complete-before-setup",
        with([&](Stream& s) { std::swap(s.sections[setup], s.sections[complete]); }));
  w.put("config-twice", with([&](Stream& s) {
          s.sections.insert(s.sections.begin() + static_cast<std::ptrdiff_t>(config) + 1,
                            s.sections[config]);
        }));
  w.put("setup-twice",
        with([&](Stream& s) { s.sections.insert(s.sections.begin(), s.sections[setup]); }));
  w.put("no-config", with([&](Stream& s) {
          s.sections.erase(s.sections.begin() + static_cast<std::ptrdiff_t>(config));
        }));
  w.put("no-end", with([&](Stream& s) { s.sections.pop_back(); }));
  w.put("end-names-device-0", with([&](Stream& s) { s.sections.back().device = 0; }));
  w.put("device-1-of-1", with([&](Stream& s) { s.sections[complete].device = 1; }));
  w.put("section-type-4", with([&](Stream& s) { s.sections[complete].type = 4; }));
  w.put("trailing-garbage", with([&](Stream& s) { s.tail = {'j', 'u', 'n', 'k'}; }));
  w.put("wrong-profile-data", with([&](Stream& s) { s.ids[0] = "plain#7"; }));
  for (std::size_t cut : {good.size() - 1, good.size() - 12, good.size() / 2, std::size_t{40}})
    w.put(fmt::format("truncated-{}", cut), Bytes(good.begin(), good.begin() + cut));

  // Tags where they do not belong, and lengths that lie.
  auto in_complete = [&](std::vector<Item> items) {
    return with([&](Stream& s) { s.sections[complete].items = items; });
  };
  w.put("complete-end-only", in_complete({end_tag()}));
  w.put("complete-setup-tag", in_complete({tag_item(tag::kSetupState), end_tag()}));
  w.put("complete-config-tag", in_complete({config_item(Bytes(16, 1)), end_tag()}));
  w.put("complete-unknown-tag", in_complete({tag_item(0xffffffffef100005ULL), end_tag()}));
  w.put("complete-data-0", in_complete({data_item({}), end_tag()}));
  w.put("setup-data-tag", with([&](Stream& s) {
          s.sections[setup].items.insert(s.sections[setup].items.begin(), data_item(Bytes(8, 0)));
        }));
  w.put("setup-not-terminated",
        with([&](Stream& s) { s.sections[setup].items.back() = tag_item(tag::kDataState); }));
  for (std::uint64_t size : {~0ULL, 1ULL << 63, 64ULL << 30}) {
    w.put(fmt::format("data-size-{:#x}", size),
          with([&](Stream& s) { s.sections[complete].items[0].length = size; }));
  }
  w.put("config-4096",
        with([&](Stream& s) { s.sections[config].items[0] = config_item(Bytes(4096, 0)); }));
  w.put("config-4097", with([&](Stream& s) { s.sections[config].items[0].length = 4097; }));
  w.put("config-huge", with([&](Stream& s) { s.sections[config].items[0].length = ~0ULL; }));
  w.put("config-not-terminated",
        with([&](Stream& s) { s.sections[config].items.back() = tag_item(tag::kConfigState); }));
  w.put("data-flipped-byte",
        with([&](Stream& s) { s.sections[complete].items[0].body.back() ^= 0x40; }));
  w.put("data-bad-device-header",
        with([&](Stream& s) { s.sections[complete].items[0].body[0] ^= 1; }));
  w.put("data-extra-bytes", with([&](Stream& s) {
          s.sections[complete].items.insert(s.sections[complete].items.end() - 1,
                                            data_item(Bytes(8, 0xee)));
        }));
  // The grammar: nothing after the end section, each section type only its own payload
  // (docs/stream-format.md). Each of these loaded before the loader held streams to it.
  {
    Bytes twice = good;
    twice.insert(twice.end(), good.begin(), good.end());
    w.put("stream-twice", twice);
    Bytes extra = good;
    extra.push_back(0);
    w.put("extra-byte", extra);
  }
  w.put("end-twice", with([&](Stream& s) { s.sections.push_back(end_section()); }));
  w.put("config-end-only", with([&](Stream& s) { s.sections[config].items = {end_tag()}; }));
  w.put("data-in-setup", with([&](Stream& s) {
          auto& items = s.sections[setup].items;
          auto& data = s.sections[complete].items;
          items.insert(items.begin(), data.begin(), data.end() - 1);
          data = {end_tag()};
        }));
  w.put("data-in-config", with([&](Stream& s) {
          auto& items = s.sections[config].items;
          auto& data = s.sections[complete].items;
          items.insert(items.begin(), data.begin(), data.end() - 1);
          data = {end_tag()};
        }));
  w.put("config-after-end", with([&](Stream& s) { s.sections.push_back(s.sections[config]); }));
  w.put("iterate-two-blocks", with([&](Stream& s) {
          auto data = s.sections[complete].items;
          data.insert(data.begin(), data.front());
          s.sections.insert(s.sections.begin() + static_cast<std::ptrdiff_t>(complete),
                            section(kIterate, 0, data));
        }));
  w.put("init-data-sent-in-complete",
        with([&](Stream& s) { s.sections[complete].items.back() = tag_item(tag::kInitDataSent); }));
  w.put(
      "complete-before-setup-of-another",
      multi_device({parsed(saved_stream("p2p", 40, 1)), parsed(saved_stream("p2p", 40, 2))}, true));
  {
    // The device data of a stop-copy-only device sent as a pre-copy block.
    Stream s = parsed(saved_stream("stopcopy", 100, 7));
    const std::size_t c = static_cast<std::size_t>(&find(s, kComplete) - s.sections.data());
    Section iterate = section(kIterate, 0, s.sections[c].items);
    s.sections[c].items = {end_tag()};
    s.sections.insert(s.sections.begin() + static_cast<std::ptrdiff_t>(c), iterate);
    w.put("stopcopy-iterate", write_stream(s));
  }
  w.put("id-control-bytes", with([&](Stream& s) { s.ids[0] = "mlx5\x1b]0;owned\x07\xff"; }));
  {
    MigrationOptions precopy;
    precopy.precopy = true;
    precopy.data_buffer_size = 1024;  // several iterate sections
    w.put("mlx5-4096-precopy", saved_stream("mlx5", 4096, 12, precopy));
  }

  w.put("data-short", with([&](Stream& s) {
          auto& body = s.sections[complete].items[0].body;
          body.resize(body.size() - 8);
          s.sections[complete].items[0].length = body.size();
        }));
}

void section_seeds(Writer& w) {
  for (const auto& p : sim::all_profiles()) {
    std::uint8_t index = profile_index(p.name);
    // Small, so that the section target runs fast: its seeds only need to reach every path.
    for (std::uint64_t size : {0, 100, 1000}) {
      Stream s = parsed(saved_stream(p.name, size, 7));
      w.put(fmt::format("{}-{}-complete", p.name, size),
            section_input(index, {&find(s, kComplete)}));
    }
    MigrationOptions small_buffer;
    small_buffer.data_buffer_size = 512;
    Stream chunked = parsed(saved_stream(p.name, 2000, 8, small_buffer));
    w.put(fmt::format("{}-2000-chunked", p.name),
          section_input(index, {&find(chunked, kComplete)}));
    Stream s = parsed(saved_stream(p.name, 100, 9));
    w.put(fmt::format("{}-setup", p.name), section_input(index, {&find(s, kSetup)}));
    w.put(fmt::format("{}-config", p.name), section_input(index, {&find(s, kConfig)}));
    w.put(fmt::format("{}-all-sections", p.name),
          section_input(index, {&find(s, kSetup), &find(s, kComplete), &find(s, kConfig)}));
  }

  // Each tag alone and with lying lengths, on the mlx5 profile.
  std::uint8_t mlx5 = profile_index("mlx5");
  Stream s = parsed(saved_stream("mlx5", 100, 7));
  std::vector<Item> complete = find(s, kComplete).items;
  w.put("empty", {});
  w.put("profile-only", {mlx5});
  w.put("tag-end", section_input(mlx5, kComplete, {end_tag()}));
  w.put("tag-setup", section_input(mlx5, kSetup, {tag_item(tag::kSetupState), end_tag()}));
  w.put("tag-setup-unterminated",
        section_input(mlx5, kSetup, {tag_item(tag::kSetupState), tag_item(tag::kDataState)}));
  w.put("tag-config-0", section_input(mlx5, kConfig, {config_item({}), end_tag()}));
  w.put("tag-config-4096", section_input(mlx5, kConfig, {config_item(Bytes(4096, 0)), end_tag()}));
  Item lie = config_item({});
  lie.length = 4097;
  w.put("tag-config-4097", section_input(mlx5, kConfig, {lie}));
  w.put("tag-data-0", section_input(mlx5, kComplete, {data_item({}), end_tag()}));
  Item huge = data_item(Bytes(8, 0));
  huge.length = ~0ULL;
  w.put("tag-data-huge", section_input(mlx5, kComplete, {huge}));
  w.put("tag-unknown", section_input(mlx5, kComplete, {tag_item(0), end_tag()}));
  w.put("tag-truncated", Bytes{mlx5, 0xff, 0xff, 0xff});
  {
    auto items = complete;
    items[0].body.back() ^= 0x40;
    w.put("data-flipped-byte", section_input(mlx5, kComplete, items));
    items = complete;
    items[0].body[0] ^= 1;
    w.put("data-bad-device-header", section_input(mlx5, kComplete, items));
    items = complete;
    items.insert(items.end() - 1, data_item(Bytes(8, 0xee)));
    w.put("data-extra-bytes", section_input(mlx5, kComplete, items));
    items = complete;
    items.insert(items.end() - 1, complete.begin(), complete.end() - 1);
    w.put("data-twice", section_input(mlx5, kComplete, items));
  }
  // Payloads under the wrong section type, and iterate sections.
  w.put("setup-holding-data",
        section_input(mlx5, kSetup, {complete[0], tag_item(tag::kSetupState), end_tag()}));
  w.put("config-end-only", section_input(mlx5, kConfig, {end_tag()}));
  w.put("iterate-one-block", section_input(mlx5, kIterate, complete));
  {
    auto items = complete;
    items.insert(items.begin(), complete[0]);
    w.put("iterate-two-blocks", section_input(mlx5, kIterate, items));
  }
  w.put("iterate-init-data-sent", section_input(mlx5, kIterate, {tag_item(tag::kInitDataSent)}));
}

// The stream's vocabulary for libFuzzer's -dict: big-endian as on the wire, except the
// simulator's own magics, which its stream header stores little-endian.
void dictionary(const fs::path& path) {
  std::ofstream f(path, std::ios::trunc);
  auto entry = [&](std::string_view name, std::uint64_t v, int bytes, bool big_endian = true) {
    f << name << "=\"";
    for (int i = 0; i < bytes; ++i) {
      int shift = big_endian ? 8 * (bytes - 1 - i) : 8 * i;
      f << fmt::format("\\x{:02x}", (v >> shift) & 0xff);
    }
    f << "\"\n";
  };
  f << "# vfio-mig stream vocabulary (written by scripts/gen-corpus; docs/stream-format.md)\n";
  entry("magic", container::kMagic, 8);
  entry("version", container::kVersion, 4);
  entry("tag_end_of_state", tag::kEndOfState, 8);
  entry("tag_config_state", tag::kConfigState, 8);
  entry("tag_setup_state", tag::kSetupState, 8);
  entry("tag_data_state", tag::kDataState, 8);
  entry("section_setup", kSetup, 4);
  entry("section_complete", kComplete, 4);
  entry("section_config", kConfig, 4);
  entry("section_end", static_cast<std::uint32_t>(SectionType::kEnd), 4);
  entry("no_device", container::kNoDevice, 4);
  entry("config_max", kMaxConfigBlob, 8);
  entry("sim_mtty_magic", sim::kMttyMagic, 8, false);
  entry("sim_plain_magic", sim::kPlainMagic, 8, false);
  entry("sim_records_magic", sim::kRecordsMagic, 8, false);
  entry("sim_record_tag_header", sim::kRecordTagHeader, 4, false);
  for (const auto& p : sim::all_profiles()) {
    entry(fmt::format("sim_profile_tag_{}", p.name), sim::profile_tag(p), 8, false);
    f << "id_" << p.name << "=\"" << p.name << "\"\n";
  }
}

Bytes as_bytes_vector(const std::vector<std::byte>& b) {
  Bytes out(b.size());
  std::transform(b.begin(), b.end(), out.begin(), [](std::byte c) { return std::uint8_t(c); });
  return out;
}

// The real QEMU stream cut down to what the reader decodes itself: the configuration, the VFIO
// device's sections and the commands, with a VM description of the VFIO device alone. RAM and
// the other devices' vmstate go (the reader would only step over them), so an input costs a
// fraction of the 136 KB original.
Bytes minimised_qemu_stream(const fs::path& real) {
  std::ifstream f(real, std::ios::binary);
  std::vector<std::byte> in;
  for (char c; f.get(c);) in.push_back(std::byte(c));
  auto stream = qemu::read_stream(in);
  if (!stream) die(real.string() + ": " + stream.error().message);
  const Bytes all = as_bytes_vector(in);
  Bytes out(all.begin(), all.begin() + 8);
  auto keep = [&](const qemu::ByteRange& r) {
    out.insert(out.end(), all.begin() + r.offset, all.begin() + r.offset + r.size);
  };
  std::string devices;
  for (const qemu::Section& s : stream->sections) {
    using K = qemu::SectionKind;
    if (s.kind == K::kConfiguration || s.kind == K::kCommand || s.is_vfio()) keep(s.bytes);
    if (s.kind == K::kFull && s.is_vfio()) {
      devices += fmt::format(
          R"({}{{"name": "{}", "instance_id": {}, "size": {}, "fields": [{{"name": "data", )"
          R"("type": "buffer", "size": {}}}]}})",
          devices.empty() ? "" : ", ", s.idstr, s.instance_id, s.payload.size, s.payload.size);
    }
  }
  const std::string json =
      fmt::format(R"({{"page_size": {}, "devices": [{}]}})", stream->page_size, devices);
  qemu::testing::StreamBuilder tail;
  tail.finish(json);
  const Bytes t = as_bytes_vector(tail.get());
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

// A small stream with what the real one lacks: two VFIO devices, DEV_INIT_DATA_SENT, XBZRLE and
// normal RAM pages, a multifd flush, a vmstate with a struct array and a subsection.
Bytes built_qemu_stream() {
  qemu::testing::StreamBuilder b;
  b.header().configuration("pc-q35-10.0");
  b.start(1, "ram", 0, 4).be64(0x4000 | 0x04).name("pc.ram").be64(0x4000).be64(0x10).footer(1);
  for (std::uint32_t id : {2u, 3u}) {
    const std::string idstr = fmt::format("0000:00:0{}.0/vfio", id + 2);
    b.start(id, idstr).tag(tag::kSetupState).tag(tag::kEndOfState).footer(id);
  }
  b.part(1)
      .be64(0x0000 | 0x08)
      .name("pc.ram")
      .fill(4096, 0x5a)
      .be64(0x1000 | 0x20 | 0x02)
      .u8(0)
      .be64(0x2000 | 0x20 | 0x40)
      .u8(1)
      .be16(6)
      .bytes("xbzrle")
      .be64(0x200)
      .be64(0x10)
      .footer(1);
  b.part(2).data("pre-copy").tag(tag::kInitDataSent).footer(2);
  b.part(3).data("other").tag(tag::kEndOfState).footer(3);
  b.end(1).be64(0x10).footer(1);
  b.end(2).data("stop-copy").tag(tag::kEndOfState).footer(2);
  b.end(3).data("last").tag(tag::kEndOfState).footer(3);
  for (std::uint32_t id : {2u, 3u}) {
    const std::string idstr = fmt::format("0000:00:0{}.0/vfio", id + 2);
    b.full(id, idstr).tag(tag::kConfigState).bytes("PCI!").tag(tag::kEndOfState).footer(id);
  }
  b.full(4, "dev").be32(1).be16(2).be16(3).u8(0x05).name("dev/sub").be32(1).be64(4).footer(4);
  const std::string vfio_desc = R"({"name": "0000:00:0X.0/vfio", "instance_id": 0, "size": 20, )"
                                R"("fields": [{"name": "data", "type": "buffer", "size": 20}]})";
  std::string a = vfio_desc, c = vfio_desc;
  a.replace(a.find('X'), 1, "4");
  c.replace(c.find('X'), 1, "5");
  b.finish(
      R"({"page_size": 4096, "devices": [)" + a + ", " + c +
      R"(, {"name": "dev", "instance_id": 0, "vmsd_name": "dev", "version": 1, "fields": )"
      R"([{"name": "a", "type": "uint32", "size": 4}, {"name": "s", "array_len": 2, )"
      R"("type": "struct", "struct": {"vmsd_name": "s", "version": 1, "fields": [{"name": )"
      R"("x", "type": "uint16", "size": 2}]}, "size": 2}], "subsections": [{"vmsd_name": )"
      R"("dev/sub", "version": 1, "fields": [{"name": "b", "type": "uint64", "size": 8}]}]}]})");
  return as_bytes_vector(b.get());
}

void qemu_seeds(const fs::path& dir) {
  Writer w(dir);
  w.put("mtty-qemu-10.0.2-min", minimised_qemu_stream(dir / "mtty-qemu-10.0.2.bin"));
  w.put("built-two-devices", built_qemu_stream());
}

}  // namespace
}  // namespace vfio::fuzz

int main(int argc, char** argv) {
  using namespace vfio::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  fs::path out = argv[1];
  Writer stream(out / "stream"), section(out / "section");
  stream_seeds(stream);
  section_seeds(section);
  dictionary(out / "vfio_stream.dict");
  qemu_seeds(out / "qemu");
  std::printf("gen_corpus: %zu stream seeds (%zu bytes), %zu section seeds (%zu bytes) in %s\n",
              stream.files(), stream.bytes(), section.files(), section.bytes(), out.c_str());
  return 0;
}
