// vfio-mig load --from-qemu: a QEMU migration stream's VFIO device state into a device. The real
// stream in corpus/qemu carries the real mtty's registers, which sim:mtty (a generated state)
// refuses; the same stream with its two DATA chunks replaced by a sim:mtty payload of the same
// sizes (24 + 72 bytes) is QEMU 10's framing around a state sim:mtty can hold, so what is loaded
// can be saved back and compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/payload.h"
#include "core/session.h"
#include "devices/device_spec.h"
#include "faults/payload_stream.h"
#include "qemu/qemu_import.h"
#include "qemu/qemu_stream.h"
#include "tests/cli/cli_run.h"
#include "tests/qemu/stream_builder.h"

namespace vfio::cli {
namespace {

using testing::run;
using LoadFromQemu = testing::TempDirTest;

const std::string kCorpus = std::string(VFIO_MIG_CORPUS_DIR) + "/qemu/mtty-qemu-10.0.2.bin";

std::vector<std::byte> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> out(s.size());
  std::transform(s.begin(), s.end(), out.begin(), [](char c) { return std::byte(c); });
  return out;
}

void write_bytes(const std::string& path, std::span<const std::byte> b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

qemu::VfioState corpus_state(std::span<const std::byte> bytes) {
  auto stream = qemu::read_stream(bytes);
  EXPECT_TRUE(stream) << stream.error().message;
  auto state = qemu::vfio_state(*stream);
  EXPECT_TRUE(state) << state.error().message;
  return *state;
}

// What `dev` saves: its DATA bytes and config blob.
faults::SavedPayload saved(Device& dev) {
  MemoryChannel out;
  Session s;
  s.add_device(dev, "dev");
  auto r = s.save(out);
  EXPECT_TRUE(r) << r.error().message;
  EXPECT_TRUE(s.resume_vm());  // a snapshot: the device runs on
  auto p = faults::read_payload_stream(out.data());
  EXPECT_TRUE(p) << p.error().message;
  return *p;
}

devices::OpenedDevice open(std::string_view spec) {
  auto arg = devices::parse_device_arg(spec);
  EXPECT_TRUE(arg);
  auto d = devices::open_device(*arg, 0);
  EXPECT_TRUE(d) << d.error().message;
  return std::move(*d);
}

// The corpus stream with its DATA chunks' bytes replaced by `payload`, in order.
std::vector<std::byte> corpus_carrying(std::span<const std::byte> payload) {
  auto bytes = read_bytes(kCorpus);
  std::size_t at = 0;
  for (const auto& c : corpus_state(bytes).data) {
    std::copy_n(payload.begin() + at, c.bytes.size, bytes.begin() + c.bytes.offset);
    at += c.bytes.size;
  }
  EXPECT_EQ(at, payload.size());
  return bytes;
}

TEST_F(LoadFromQemu, TheImportKeepsQemusChunksAndPhases) {
  const auto bytes = read_bytes(kCorpus);
  const auto state = corpus_state(bytes);
  auto import = qemu::import_vfio_state(bytes, state, true);
  ASSERT_TRUE(import) << import.error().message;
  EXPECT_TRUE(import->config);
  // setup, one iterate (the 24-byte header), complete (72 bytes), config, end.
  MemoryChannel ch(import->stream);
  StreamReader in(ch);
  ASSERT_TRUE(container::read_header(in));
  std::vector<container::SectionType> types;
  std::vector<std::uint64_t> sizes;
  std::vector<std::byte> data, config;
  const DataHandler keep = [&](StreamReader& r, std::uint64_t size, std::uint64_t) -> Result<> {
    sizes.push_back(size);
    const std::size_t at = data.size();
    data.resize(at + size);
    r.get_buffer(std::span(data).subspan(at));
    return r.status();
  };
  for (;;) {
    auto s = container::read_section_start(in, 1);
    ASSERT_TRUE(s) << s.error().message;
    types.push_back(s->type);
    if (s->type == container::SectionType::kEnd) break;
    auto p = read_payload(in, s->type, keep);
    ASSERT_TRUE(p) << p.error().message;
    if (s->type == container::SectionType::kConfig) config = p->config;
    ASSERT_TRUE(container::verify_section_end(in));
  }
  using T = container::SectionType;
  EXPECT_EQ(types, (std::vector<T>{T::kSetup, T::kIterate, T::kComplete, T::kConfig, T::kEnd}));
  EXPECT_EQ(sizes, (std::vector<std::uint64_t>{24, 72}));
  std::vector<std::byte> qemu_data;
  for (const auto& c : state.data)
    qemu_data.insert(qemu_data.end(), bytes.begin() + c.bytes.offset,
                     bytes.begin() + c.bytes.offset + c.bytes.size);
  EXPECT_EQ(data, qemu_data);
  // The config header after vfio-pci's be32 version 2: mtty's vendor and device ids first.
  ASSERT_EQ(config.size(), qemu::kPciHeaderSize);
  EXPECT_EQ(
      std::vector<std::byte>(config.begin(), config.begin() + 4),
      (std::vector<std::byte>{std::byte{'H'}, std::byte{'C'}, std::byte{'S'}, std::byte{'2'}}));
  ASSERT_EQ(import->data_tags.size(), 2u);
  EXPECT_EQ(import->data_tags[1].second, state.data[1].bytes.offset - 16);
  EXPECT_NE(qemu::translation_offsets(*import).find(
                "is QEMU's at " + std::to_string(state.data[1].bytes.offset - 16)),
            std::string::npos);
}

TEST_F(LoadFromQemu, ConfigThatIsNotAPciDeviceVmstateIsSkippedWithANote) {
  std::vector<std::byte> vmstate(4 + 256);
  EXPECT_TRUE(qemu::pci_config_space(vmstate).error().message.find("version 0") !=
              std::string::npos);
  vmstate[3] = std::byte{2};
  EXPECT_EQ(qemu::pci_config_space(vmstate)->size(), qemu::kPciHeaderSize);
  EXPECT_EQ(qemu::pci_config_space(vmstate, 4096)->size(), 256u);
  EXPECT_FALSE(qemu::pci_config_space(std::span(vmstate).first(200)));
  const auto bytes = read_bytes(kCorpus);
  auto state = corpus_state(bytes);
  state.config->size = 100;
  auto import = qemu::import_vfio_state(bytes, state, true);
  ASSERT_TRUE(import);
  EXPECT_FALSE(import->config);
  EXPECT_NE(import->notes[0].find("config space not loaded: vfio-pci's vmstate is 100 bytes"),
            std::string::npos)
      << import->notes[0];
  state.complete = false;
  auto cut = qemu::import_vfio_state(bytes, state, true);
  ASSERT_FALSE(cut);
  EXPECT_NE(cut.error().message.find("no stop-copy (end) section"), std::string::npos);
}

TEST_F(LoadFromQemu, TheLoadedStateIsWhatTheStreamCarries) {
  // A payload of sim:mtty seed 7 in QEMU 10's framing, loaded into sim:mtty seed 3.
  auto source = open("sim:mtty,seed=7,transport=direct");
  const auto carried = saved(*source.device).data;
  ASSERT_EQ(carried.size(), 96u);
  const auto qemu_stream = corpus_carrying(carried);
  write_bytes(path("q.bin"), qemu_stream);

  auto r = run({"load", "sim:mtty,seed=3,transport=direct", "--from-qemu", path("q.bin")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("QEMU device            0000:00:04.0/vfio"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 chunks, 96 B (24 B pre-copy, 72 B stop-copy)"), std::string::npos);
  EXPECT_NE(r.err.find("config: the config space's 64-byte standard header from vfio-pci's "
                       "4116-byte vmstate"),
            std::string::npos)
      << r.err;

  // The same in process, saved back: the carried bytes, QEMU's config header and the device's
  // own config space after it.
  auto dest = open("sim:mtty,seed=3,transport=direct");
  const auto own = saved(*dest.device);
  ASSERT_NE(own.data, carried);
  const auto own_config = own.config;
  const auto state = corpus_state(qemu_stream);
  auto import = qemu::import_vfio_state(qemu_stream, state, true);
  ASSERT_TRUE(import);
  MemoryChannel in(import->stream);
  Session s;
  s.add_device(*dest.device, "dest", dest.config_restore);
  auto loaded = s.load(in);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->device_bytes, 96u);
  const auto back = saved(*dest.device);
  EXPECT_EQ(back.data, carried);
  const auto qemu_header =
      std::span(qemu_stream).subspan(state.config->offset + 4, qemu::kPciHeaderSize);
  EXPECT_TRUE(std::ranges::equal(std::span(back.config).first(qemu::kPciHeaderSize), qemu_header));
  EXPECT_TRUE(std::ranges::equal(std::span(back.config).subspan(qemu::kPciHeaderSize),
                                 std::span(own_config).subspan(qemu::kPciHeaderSize)));
}

TEST_F(LoadFromQemu, NoConfigKeepsTheDevicesConfigSpace) {
  auto source = open("sim:mtty,seed=7,transport=direct");
  write_bytes(path("q.bin"), corpus_carrying(saved(*source.device).data));
  auto r = run({"load", "sim:mtty,transport=direct", "--from-qemu", path("q.bin"), "--no-config"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.err.find("config space not loaded (--no-config)"), std::string::npos) << r.err;
}

TEST_F(LoadFromQemu, TheRealMttysStateIsRefusedBySimMtty) {
  // sim:mtty reads the real header {magic, le32 1, le32 0, le32 2, le32 0} as seed 1, size 2.
  auto r = run({"load", "sim:mtty,transport=direct", "--from-qemu", kCorpus});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("the device refused it"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("its DEV_DATA_STATE at 137 is QEMU's at 22199"), std::string::npos) << r.err;
}

TEST_F(LoadFromQemu, BadStreamsAndArgumentsAreRefusedBeforeTheDeviceIsOpened) {
  // A device that cannot be opened: every refusal below comes from the stream or the arguments.
  const std::string absent = "/sys/bus/mdev/devices/00000000-0000-0000-0000-000000000000";
  using qemu::testing::StreamBuilder;
  const std::string desc = R"({"page_size": 4096, "devices": [)";
  auto vfio_device = [](std::string_view idstr) {
    return R"({"name": ")" + std::string(idstr) +
           R"(", "instance_id": 0, "size": 4, "fields": [{"name": "data", "type": "buffer", )"
           R"("size": 4}]})";
  };
  auto sections = [](StreamBuilder& b, std::uint32_t id, std::string_view idstr) {
    b.start(id, idstr).tag(tag::kSetupState).tag(tag::kEndOfState).footer(id);
    b.end(id).data("data").tag(tag::kEndOfState).footer(id);
  };

  StreamBuilder none;
  none.header().configuration("pc-test").finish(desc + "]}");
  write_bytes(path("none.bin"), none.get());
  auto r = run({"load", absent, "--from-qemu", path("none.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("holds no VFIO device section"), std::string::npos) << r.err;

  StreamBuilder two;
  two.header();
  sections(two, 2, "0000:00:04.0/vfio");
  sections(two, 3, "0000:00:05.0/vfio");
  two.finish(desc + vfio_device("0000:00:04.0/vfio") + "," + vfio_device("0000:00:05.0/vfio") +
             "]}");
  write_bytes(path("two.bin"), two.get());
  r = run({"load", absent, "--from-qemu", path("two.bin")});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("holds 2 VFIO devices: '0000:00:04.0/vfio', '0000:00:05.0/vfio'; name one"),
            std::string::npos)
      << r.err;
  r = run({"load", absent, "--from-qemu", path("two.bin"), "--section", "0000:00:06.0/vfio"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("no VFIO device '0000:00:06.0/vfio'"), std::string::npos) << r.err;
  // The right --section gets as far as the device, which does not exist.
  r = run({"load", absent, "--from-qemu", path("two.bin"), "--section", "0000:00:05.0/vfio"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("00000000-0000-0000-0000-000000000000"), std::string::npos) << r.err;

  // Damaged: cut short, and a tag flipped inside the device's stop-copy section.
  auto bytes = read_bytes(kCorpus);
  write_bytes(path("cut.bin"), std::span(bytes).first(30000));
  r = run({"load", absent, "--from-qemu", path("cut.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("the file is cut short"), std::string::npos) << r.err;
  const auto state = corpus_state(bytes);
  bytes[state.data[1].bytes.offset + state.data[1].bytes.size] ^= std::byte{0x01};
  write_bytes(path("flipped.bin"), bytes);
  r = run({"load", absent, "--from-qemu", path("flipped.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("QEMU stream offset"), std::string::npos) << r.err;

  r = run({"load", absent, "--from-qemu", path("nope.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("nope.bin"), std::string::npos) << r.err;
  EXPECT_EQ(run({"load", absent}).code, kExitUsage);
  EXPECT_EQ(run({"load", absent, "-i", kCorpus, "--from-qemu", kCorpus}).code, kExitUsage);
  EXPECT_EQ(run({"load", absent, "-i", kCorpus, "--section", "x"}).code, kExitUsage);
}

}  // namespace
}  // namespace vfio::cli
