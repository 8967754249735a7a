// The QEMU stream reader on small streams built byte by byte (tests/qemu/stream_builder.h):
// what it reads, and each damaged or unsupported stream refused with its offset.
#include "qemu/qemu_stream.h"

#include <gtest/gtest.h>

#include <string>

#include "core/payload.h"
#include "tests/qemu/stream_builder.h"

namespace vfio::qemu {
namespace {

using testing::StreamBuilder;

constexpr std::string_view kVfio = "0000:00:04.0/vfio";

// A VM description: the page size and the full sections' devices.
std::string description(std::string_view devices) {
  return std::string(R"({"page_size": 4096, "devices": [)") + std::string(devices) + "]}";
}
std::string vfio_device(std::string_view idstr, int size) {
  return std::string(R"({"name": ")") + std::string(idstr) + R"(", "instance_id": 0, "size": )" +
         std::to_string(size) + R"(, "fields": [{"name": "data", "type": "buffer", "size": )" +
         std::to_string(size) + "}]}";
}

StreamBuilder& ram_setup(StreamBuilder& b) {
  return b.start(1, "ram", 0, 4)
      .be64(0x2000 | 0x04)
      .name("pc.ram")
      .be64(0x2000)
      .be64(0x10)
      .footer(1);
}

// The live and full sections of one VFIO device `idstr` (section id `id`): setup, one
// iterate with `iterate`, complete with `complete`, full with a 4-byte config.
StreamBuilder& vfio_sections(StreamBuilder& b, std::uint32_t id, std::string_view idstr,
                             std::string_view iterate, std::string_view complete) {
  b.start(id, idstr).tag(tag::kSetupState).tag(tag::kEndOfState).footer(id);
  b.part(id).data(iterate).tag(tag::kEndOfState).footer(id);
  b.end(id).data(complete).tag(tag::kEndOfState).footer(id);
  return b;
}
StreamBuilder& vfio_config(StreamBuilder& b, std::uint32_t id, std::string_view idstr) {
  return b.full(id, idstr).tag(tag::kConfigState).bytes("CONF").tag(tag::kEndOfState).footer(id);
}

// A complete small stream: configuration, RAM, one VFIO device, a vmstate device with a
// subsection.
StreamBuilder good_stream() {
  StreamBuilder b;
  b.header().configuration("pc-test");
  ram_setup(b);
  b.start(2, kVfio).tag(tag::kSetupState).tag(tag::kEndOfState).footer(2);
  b.part(1)
      .be64(0x0000 | 0x02)
      .name("pc.ram")
      .u8(0)
      .be64(0x1000 | 0x20 | 0x08)
      .fill(4096, 0xab)
      .be64(0x10)
      .footer(1);
  b.part(2).data("head").tag(tag::kEndOfState).footer(2);
  b.part(2).tag(tag::kInitDataSent).footer(2);
  b.end(1).be64(0x10).footer(1);
  b.end(2).data("tail!").tag(tag::kEndOfState).footer(2);
  vfio_config(b, 3, kVfio);
  b.full(4, "timer").be32(7).u8(0x05).name("timer/sub").be32(1).be64(9).footer(4);
  b.finish(description(
      vfio_device(kVfio, 20) + "," +
      R"({"name": "timer", "instance_id": 0, "vmsd_name": "timer", "version": 2, "fields": )"
      R"([{"name": "a", "type": "uint32", "size": 4}], "subsections": [{"vmsd_name": )"
      R"("timer/sub", "version": 1, "fields": [{"name": "b", "type": "uint64", "size": 8}]}]})"));
  return b;
}

TEST(QemuStream, ReadsASmallStream) {
  const StreamBuilder b = good_stream();
  auto s = read_stream(b.get());
  ASSERT_TRUE(s) << s.error().message;
  std::vector<SectionKind> kinds;
  for (const Section& sec : s->sections) kinds.push_back(sec.kind);
  using K = SectionKind;
  EXPECT_EQ(kinds,
            (std::vector<K>{K::kConfiguration, K::kStart, K::kStart, K::kPart, K::kPart, K::kPart,
                            K::kEnd, K::kEnd, K::kFull, K::kFull, K::kEof, K::kVmDescription}));
  EXPECT_EQ(s->sections[0].machine, "pc-test");
  const Section& ram_part = s->sections[3];
  EXPECT_EQ(ram_part.idstr, "ram");
  ASSERT_TRUE(ram_part.ram);
  EXPECT_EQ(ram_part.ram->zero_pages, 1u);
  EXPECT_EQ(ram_part.ram->normal_pages, 1u);
  EXPECT_EQ(ram_part.ram->page_bytes, 4096u);

  auto st = vfio_state(*s);
  ASSERT_TRUE(st) << st.error().message;
  ASSERT_EQ(st->data.size(), 2u);
  EXPECT_EQ(st->data[0].phase, Phase::kIterate);
  EXPECT_EQ(st->data[1].phase, Phase::kComplete);
  const auto text = [&](ByteRange r) {
    return std::string(reinterpret_cast<const char*>(b.get().data() + r.offset), r.size);
  };
  EXPECT_EQ(text(st->data[0].bytes), "head");
  EXPECT_EQ(text(st->data[1].bytes), "tail!");
  ASSERT_TRUE(st->config);
  EXPECT_EQ(text(*st->config), "CONF");
  EXPECT_TRUE(st->init_data_sent);
  EXPECT_TRUE(st->complete);
}

// Refused with this reason at this offset; returns the walk.
Walk expect_refused(const StreamBuilder& b, std::string_view reason, std::uint64_t offset) {
  Walk w = walk(b.get());
  EXPECT_TRUE(w.error) << "accepted";
  if (w.error) {
    EXPECT_NE(w.error->message.find(reason), std::string::npos) << w.error->message;
    EXPECT_NE(w.error->message.find("offset " + std::to_string(offset)), std::string::npos)
        << w.error->message;
  }
  EXPECT_EQ(w.error_offset, offset);
  EXPECT_FALSE(read_stream(b.get()));
  // What was read before the refusal stays in bounds (qemu_fuzzer found a payload size that
  // wrapped below zero for a section refused at its start).
  for (const Section& s : w.stream.sections) {
    EXPECT_LE(s.bytes.offset + s.bytes.size, b.size()) << s.bytes.offset;
    if (s.payload.size == 0) continue;
    EXPECT_GE(s.payload.offset, s.bytes.offset) << s.bytes.offset;
    EXPECT_LE(s.payload.size, s.bytes.size) << s.bytes.offset;
    EXPECT_LE(s.payload.offset + s.payload.size, s.bytes.offset + s.bytes.size) << s.bytes.offset;
  }
  return w;
}

TEST(QemuStream, EveryTruncationIsRefused) {
  const std::vector<std::byte> whole = good_stream().get();
  for (std::size_t n = 0; n < whole.size(); ++n) {
    Walk w = walk(std::span(whole).first(n));
    ASSERT_TRUE(w.error) << "a prefix of " << n << " bytes was accepted";
    EXPECT_LE(w.error_offset, n);
  }
}

TEST(QemuStream, BadMagicAndVersion2) {
  StreamBuilder bad;
  bad.be32(0x5145564e).be32(3).finish(description(""));
  expect_refused(bad, "no QEVM magic", 0);
  StreamBuilder v2;
  v2.header(2).finish(description(""));
  Walk w = expect_refused(v2, "file version 2", 4);
  EXPECT_EQ(w.stream.version, 2u);
  EXPECT_EQ(w.error->code, ENOTSUP);
}

TEST(QemuStream, UnknownSectionTypeKeepsWhatWasRead) {
  StreamBuilder b;
  b.header().configuration("pc-test");
  ram_setup(b);
  const std::uint64_t at = b.size();
  b.u8(0x09).finish(description(""));
  Walk w = expect_refused(b, "unknown section type 0x09", at);
  ASSERT_EQ(w.stream.sections.size(), 2u);
  EXPECT_EQ(w.stream.sections[1].idstr, "ram");
  EXPECT_TRUE(w.stream.sections[1].footer_ok);
}

TEST(QemuStream, BadFooter) {
  StreamBuilder b;
  b.header();
  b.start(2, kVfio).tag(tag::kSetupState).tag(tag::kEndOfState);
  const std::uint64_t at = b.size();
  b.footer(3).finish(description(""));
  Walk w = expect_refused(b, "has no footer after its payload", at);
  ASSERT_EQ(w.stream.sections.size(), 1u);
  EXPECT_FALSE(w.stream.sections[0].footer_ok);
  EXPECT_EQ(w.stream.sections[0].vfio.size(), 2u);
}

TEST(QemuStream, VmDescriptionSizesThatLie) {
  // The description says the config is 28 bytes: the walk overruns the real END_OF_STATE.
  StreamBuilder longer;
  longer.header();
  const std::uint64_t full_at = longer.size();
  vfio_config(longer, 3, kVfio);
  ram_setup(longer).finish(description(vfio_device(kVfio, 28)));
  expect_refused(longer, "config does not end with END_OF_STATE", full_at + 31 + 28 - 8);
  // 12 bytes: the section's end is no END_OF_STATE.
  StreamBuilder shorter;
  shorter.header();
  vfio_config(shorter, 3, kVfio);
  shorter.finish(description(vfio_device(kVfio, 12)));
  expect_refused(shorter, "does not begin with DEV_CONFIG_STATE", full_at + 31);
  // A size larger than the whole file.
  StreamBuilder absurd;
  absurd.header();
  vfio_config(absurd, 3, kVfio);
  absurd.finish(description(vfio_device(kVfio, 1 << 30)));
  expect_refused(absurd, "runs past the end of the stream", full_at + 31);
  // 2^62 elements of 8 bytes: no overflow into a small size.
  StreamBuilder huge;
  huge.header().full(4, "x").be64(1).footer(4).finish(
      description(R"({"name": "x", "instance_id": 0, "fields": [{"name": "f", "array_len": )"
                  R"(4611686018427387904, "type": "uint64", "size": 8}]})"));
  expect_refused(huge, "runs past the end of the stream", full_at + 15);
  // A billion empty structs cost one step.
  StreamBuilder empty;
  empty.header().full(4, "x").footer(4).finish(description(
      R"({"name": "x", "instance_id": 0, "fields": [{"name": "f", "array_len": 1000000000, )"
      R"("type": "struct", "struct": {"fields": []}}]})"));
  EXPECT_TRUE(read_stream(empty.get()));
}

TEST(QemuStream, AbsurdLengths) {
  StreamBuilder data;
  data.header().start(2, kVfio);
  const std::uint64_t tag_at = data.size();
  data.tag(tag::kDataState).be64(~0ULL).tag(tag::kEndOfState).footer(2).finish(description(""));
  expect_refused(data, "DEV_DATA_STATE of 18446744073709551615 bytes runs past", tag_at);

  StreamBuilder idstr;
  idstr.header().u8(0x01).be32(1).u8(200).bytes("ram").finish(description(""));
  expect_refused(idstr, "a section's idstr is cut off", 14);

  StreamBuilder blocks;
  blocks.header().start(1, "ram", 0, 4);
  const std::uint64_t mem_at = blocks.size();
  blocks.be64(0x2000 | 0x04)
      .name("pc.ram")
      .be64(0x4000)
      .be64(0x10)
      .footer(1)
      .finish(description(""));
  expect_refused(blocks, "RAM blocks add up to more than the 8192 bytes", mem_at);

  StreamBuilder page;
  ram_setup(page.header());
  const std::uint64_t page_at = page.size() + 5;
  page.part(1)
      .be64(0x2000 | 0x02)
      .name("pc.ram")
      .u8(0)
      .be64(0x10)
      .footer(1)
      .finish(description(""));
  expect_refused(page, "RAM page at 0x2000 lies outside block 'pc.ram' of 8192 bytes", page_at);
}

TEST(QemuStream, UnsupportedConstructsAreNamed) {
  StreamBuilder postcopy;
  postcopy.header().u8(0x08).be16(3).be16(16).fill(16, 0).finish(description(""));
  expect_refused(postcopy, "MIG_CMD_POSTCOPY_ADVISE (3) is not supported", 8);

  StreamBuilder block;
  block.header().start(5, "block").finish(description(""));
  expect_refused(block, "live section 'block': only RAM and VFIO devices are read", 8);

  StreamBuilder rdma;
  ram_setup(rdma.header());
  const std::uint64_t at = rdma.size() + 5;
  rdma.part(1).be64(0x80).footer(1).finish(description(""));
  expect_refused(rdma, "RAM record with flags 0x80", at);

  StreamBuilder config;
  config.header().start(2, kVfio);
  config.tag(tag::kConfigState).finish(description(""));
  expect_refused(config, "DEV_CONFIG_STATE in a start section", 8 + 31);

  StreamBuilder undescribed;
  undescribed.header().full(4, "timer").be32(0).footer(4).finish(description(""));
  expect_refused(undescribed, "does not describe 'timer' instance 0", 8);
}

TEST(QemuStream, NoVmDescription) {
  StreamBuilder b;
  b.header().configuration("pc-test");
  ram_setup(b);
  vfio_sections(b, 2, kVfio, "it", "complete");
  Walk live = expect_refused(b, "the file ends at", b.size());
  EXPECT_TRUE(live.stream.page_size_assumed);
  EXPECT_EQ(live.stream.page_size, 4096u);
  ASSERT_EQ(live.stream.sections.size(), 5u);
  auto st = vfio_state(live.stream);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->data_bytes(), 10u);
  const std::uint64_t full_at = b.size();
  vfio_config(b, 2, kVfio);
  expect_refused(b,
                 "full section '0000:00:04.0/vfio': its length is not in the stream, and no "
                 "QEMU_VM_VMDESCRIPTION follows",
                 full_at);
  StreamBuilder eof;
  eof.header().u8(0x00);
  expect_refused(eof, "QEMU_VM_EOF no QEMU_VM_VMDESCRIPTION follows", 8);
}

TEST(QemuStream, DescriptionMustFollowTheEof) {
  StreamBuilder b;
  b.header().u8(0x00).u8(0x00).finish(description(""));
  expect_refused(b, "QEMU_VM_EOF at offset 8, but the VM description begins at 11", 8);
  StreamBuilder notjson;
  notjson.header().finish("{\"page_size\": 4096, ");
  expect_refused(notjson, "the VM description is not JSON", 14);
  StreamBuilder deep;
  deep.header().finish(std::string(100, '[') + std::string(100, ']'));
  expect_refused(deep, "nested deeper than 32 levels", 14);
}

TEST(QemuStream, TwoVfioDevicesAreChosenByIdstr) {
  StreamBuilder b;
  b.header();
  vfio_sections(b, 2, "0000:00:04.0/vfio", "a1", "a2");
  vfio_sections(b, 3, "0000:00:05.0/vfio", "b1", "b2");
  vfio_config(b, 2, "0000:00:04.0/vfio");
  vfio_config(b, 3, "0000:00:05.0/vfio");
  b.finish(description(vfio_device("0000:00:04.0/vfio", 20) + "," +
                       vfio_device("0000:00:05.0/vfio", 20)));
  auto s = read_stream(b.get());
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(vfio_devices(*s), (std::vector<std::string>{"0000:00:04.0/vfio", "0000:00:05.0/vfio"}));
  auto ambiguous = vfio_state(*s);
  ASSERT_FALSE(ambiguous);
  EXPECT_EQ(ambiguous.error().message,
            "the QEMU stream holds 2 VFIO devices: '0000:00:04.0/vfio', '0000:00:05.0/vfio'; "
            "name one");
  auto absent = vfio_state(*s, "0000:00:06.0/vfio");
  ASSERT_FALSE(absent);
  EXPECT_NE(absent.error().message.find("no VFIO device '0000:00:06.0/vfio' in the QEMU stream; "
                                        "it holds '0000:00:04.0/vfio', '0000:00:05.0/vfio'"),
            std::string::npos);
  auto second = vfio_state(*s, "0000:00:05.0/vfio");
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_EQ(second->data.size(), 2u);
  EXPECT_EQ(second->data[0].bytes.size, 2u);
  EXPECT_EQ(static_cast<char>(b.get()[second->data[0].bytes.offset]), 'b');
  EXPECT_TRUE(second->config);

  StreamBuilder none;
  ram_setup(none.header()).finish(description(""));
  auto s2 = read_stream(none.get());
  ASSERT_TRUE(s2) << s2.error().message;
  auto missing = vfio_state(*s2);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "the QEMU stream holds no VFIO device section");
}

TEST(QemuStream, OneIdstrUnderTwoInstancesIsAmbiguous) {
  StreamBuilder b;
  b.header();
  b.start(2, kVfio, 0).tag(tag::kSetupState).tag(tag::kEndOfState).footer(2);
  b.start(3, kVfio, 1).tag(tag::kSetupState).tag(tag::kEndOfState).footer(3);
  b.finish(description(""));
  auto s = read_stream(b.get());
  ASSERT_TRUE(s) << s.error().message;
  auto st = vfio_state(*s, kVfio);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "VFIO device '0000:00:04.0/vfio' appears with instances 0 and 1");
}

TEST(QemuStream, UntrustedNamesAreEscapedInErrors) {
  StreamBuilder b;
  b.header().start(5, "\x1b]0;evil\x07").finish(description(""));
  Walk w = walk(b.get());
  ASSERT_TRUE(w.error);
  EXPECT_EQ(w.error->message.find('\x1b'), std::string::npos) << w.error->message;
  EXPECT_NE(w.error->message.find("\\x1b]0;evil\\x07"), std::string::npos) << w.error->message;
}

}  // namespace
}  // namespace vfio::qemu
