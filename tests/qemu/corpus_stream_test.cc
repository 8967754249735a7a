// The reader on the real stream QEMU 10.0.2 wrote for a vfio mtty device in the kernel lane
// (corpus/qemu/README.md; its layout: docs/qemu.md, "What the stream holds").
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <vector>

#include "core/payload.h"
#include "qemu/qemu_stream.h"

namespace vfio::qemu {
namespace {

std::vector<std::byte> corpus_stream() {
  std::ifstream in(VFIO_MIG_CORPUS_DIR "/qemu/mtty-qemu-10.0.2.bin", std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> out(raw.size());
  std::transform(raw.begin(), raw.end(), out.begin(), [](char c) { return std::byte(c); });
  return out;
}

class CorpusStream : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(input_.size(), 136588u);
    auto s = read_stream(input_);
    ASSERT_TRUE(s) << s.error().message;
    stream_ = *s;
  }
  const Section& at(std::uint64_t offset) {
    for (const Section& s : stream_.sections) {
      if (s.bytes.offset == offset) return s;
    }
    ADD_FAILURE() << "no section at offset " << offset;
    return stream_.sections.front();
  }
  std::vector<std::byte> input_ = corpus_stream();
  Stream stream_;
};

TEST_F(CorpusStream, HeaderConfigurationAndEnd) {
  EXPECT_EQ(stream_.version, 3u);
  EXPECT_EQ(stream_.page_size, 4096u);
  const Section& config = stream_.sections.front();
  EXPECT_EQ(config.kind, SectionKind::kConfiguration);
  EXPECT_EQ(config.machine, "pc-i440fx-10.0");
  EXPECT_EQ(config.bytes, (ByteRange{8, 19}));
  const Section& eof = stream_.sections[stream_.sections.size() - 2];
  EXPECT_EQ(eof.kind, SectionKind::kEof);
  EXPECT_EQ(eof.bytes.offset, 39151u);
  const Section& desc = stream_.sections.back();
  EXPECT_EQ(desc.kind, SectionKind::kVmDescription);
  EXPECT_EQ(desc.payload, (ByteRange{39157, 97431}));
  for (const Section& s : stream_.sections) {
    if (s.kind == SectionKind::kStart || s.kind == SectionKind::kPart ||
        s.kind == SectionKind::kEnd || s.kind == SectionKind::kFull) {
      EXPECT_TRUE(s.footer_ok) << s.bytes.offset;
    }
  }
  // Sections tile the file.
  std::uint64_t next = 8;
  for (const Section& s : stream_.sections) {
    EXPECT_EQ(s.bytes.offset, next);
    next = s.bytes.offset + s.bytes.size;
  }
  EXPECT_EQ(next, input_.size());
}

TEST_F(CorpusStream, VfioSections) {
  const Section& setup = at(197);
  EXPECT_EQ(setup.kind, SectionKind::kStart);
  EXPECT_EQ(setup.idstr, "0000:00:04.0/vfio");
  EXPECT_EQ(setup.section_id, 37u);
  EXPECT_EQ(setup.instance_id, 0u);
  EXPECT_EQ(setup.version_id, 1u);
  ASSERT_EQ(setup.vfio.size(), 2u);
  EXPECT_EQ(setup.vfio[0].tag, tag::kSetupState);
  EXPECT_EQ(setup.vfio[1].tag, tag::kEndOfState);

  const Section& iterate = at(283);
  EXPECT_EQ(iterate.kind, SectionKind::kPart);
  EXPECT_EQ(iterate.idstr, "0000:00:04.0/vfio");
  ASSERT_EQ(iterate.vfio.size(), 2u);
  EXPECT_EQ(iterate.vfio[0].tag, tag::kDataState);
  EXPECT_EQ(iterate.vfio[0].offset, 288u);
  EXPECT_EQ(iterate.vfio[0].size, 24u);
  EXPECT_EQ(iterate.vfio[1].tag, tag::kEndOfState);

  const Section& empty = at(22153);
  ASSERT_EQ(empty.vfio.size(), 1u);
  EXPECT_EQ(empty.vfio[0].tag, tag::kEndOfState);

  const Section& complete = at(22194);
  EXPECT_EQ(complete.kind, SectionKind::kEnd);
  ASSERT_EQ(complete.vfio.size(), 2u);
  EXPECT_EQ(complete.vfio[0].tag, tag::kDataState);
  EXPECT_EQ(complete.vfio[0].size, 72u);

  const Section& config = at(34819);
  EXPECT_EQ(config.kind, SectionKind::kFull);
  EXPECT_EQ(config.idstr, "0000:00:04.0/vfio");
  EXPECT_EQ(config.payload.size, 4132u);
  ASSERT_EQ(config.vfio.size(), 2u);
  EXPECT_EQ(config.vfio[0].tag, tag::kConfigState);
  EXPECT_EQ(config.vfio[0].size, 4132u - 16);
  EXPECT_EQ(config.vfio[1].tag, tag::kEndOfState);
}

TEST_F(CorpusStream, RamSummary) {
  const Section& setup = at(27);
  EXPECT_EQ(setup.kind, SectionKind::kStart);
  EXPECT_EQ(setup.idstr, "ram");
  ASSERT_TRUE(setup.ram);
  EXPECT_EQ(setup.ram->total_ram, 0x252000u);
  EXPECT_EQ(setup.ram->blocks, 6u);
  RamSummary sum;
  for (const Section& s : stream_.sections) {
    if (!s.ram) continue;
    sum.zero_pages += s.ram->zero_pages;
    sum.normal_pages += s.ram->normal_pages;
    sum.page_bytes += s.ram->page_bytes;
  }
  // query-migrate said 4 normal pages; every other page of the 2,433,024 bytes is zero.
  EXPECT_EQ(sum.normal_pages, 4u);
  EXPECT_EQ(sum.page_bytes, 4u * 4096);
  EXPECT_EQ(sum.zero_pages + sum.normal_pages, 0x252000u / 4096);
}

TEST_F(CorpusStream, VfioStateHoldsMttysNinetySixBytes) {
  EXPECT_EQ(vfio_devices(stream_), std::vector<std::string>{"0000:00:04.0/vfio"});
  auto st = vfio_state(stream_);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->idstr, "0000:00:04.0/vfio");
  ASSERT_EQ(st->data.size(), 2u);
  EXPECT_EQ(st->data[0].phase, Phase::kIterate);
  EXPECT_EQ(st->data[0].bytes, (ByteRange{304, 24}));
  EXPECT_EQ(stream_.sections[st->data[0].section].bytes.offset, 283u);
  EXPECT_EQ(st->data[1].phase, Phase::kComplete);
  EXPECT_EQ(st->data[1].bytes.size, 72u);
  EXPECT_EQ(stream_.sections[st->data[1].section].bytes.offset, 22194u);
  EXPECT_EQ(st->data_bytes(), 96u);
  // mtty's header: its magic, little-endian.
  EXPECT_EQ(input_[304], std::byte{0x4e});
  EXPECT_EQ(input_[311], std::byte{0x7e});
  ASSERT_TRUE(st->config);
  EXPECT_EQ(*st->config, (ByteRange{34850 + 8, 4116}));
  EXPECT_FALSE(st->init_data_sent);
  EXPECT_TRUE(st->complete);
  EXPECT_TRUE(vfio_state(stream_, "0000:00:04.0/vfio"));
}

// A file cut short (a migration that died) has no VM description: the live sections before
// the cut still give the device's data.
TEST_F(CorpusStream, CutShortStillYieldsTheLiveSections) {
  const std::vector<std::byte> cut(input_.begin(), input_.begin() + 30000);
  Walk w = walk(cut);
  ASSERT_TRUE(w.error);
  EXPECT_EQ(w.error_offset, 22300u);  // the first full section ('timer')
  EXPECT_NE(w.error->message.find("full section 'timer'"), std::string::npos) << w.error->message;
  EXPECT_TRUE(w.stream.page_size_assumed);
  auto st = vfio_state(w.stream);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->data_bytes(), 96u);
  EXPECT_FALSE(st->config);
  // Cut inside the complete section's DATA: the iterate chunk is there, the complete one not.
  Walk inside = walk(std::span(input_).first(22250));
  ASSERT_TRUE(inside.error);
  EXPECT_NE(inside.error->message.find("DEV_DATA_STATE of 72 bytes runs past"), std::string::npos)
      << inside.error->message;
  auto partial = vfio_state(inside.stream);
  ASSERT_TRUE(partial);
  EXPECT_EQ(partial->data_bytes(), 24u);
  EXPECT_FALSE(partial->complete);
}

}  // namespace
}  // namespace vfio::qemu
