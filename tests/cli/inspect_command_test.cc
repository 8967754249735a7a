// `vfio-mig inspect`: both stream formats, as text and as JSON read back, a damaged file shown
// up to its damage, hostile names escaped, usage errors, and nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/json_value.h"
#include "tests/cli/cli_run.h"
#include "tests/qemu/stream_builder.h"

namespace vfio::cli {
namespace {

using testing::run;
using testing::slurp;

const std::string kQemuStream = VFIO_MIG_CORPUS_DIR "/qemu/mtty-qemu-10.0.2.bin";

class InspectCommand : public testing::TempDirTest {
 protected:
  // A vfio-mig stream of a simulated mtty, as `save` writes it.
  std::string saved_stream() {
    const std::string file = path("saved.bin");
    auto r = run({"save", "sim:mtty,transport=direct", "-o", file, "-q"});
    EXPECT_EQ(r.code, kExitOk) << r.err;
    return file;
  }
  void write(const std::string& file, std::string_view bytes) {
    std::ofstream(file, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  }
  static json::Document parse(const std::string& text) {
    auto doc = json::Document::parse(text);
    EXPECT_TRUE(doc) << doc.error().message << "\n" << text;
    return doc ? std::move(*doc) : *json::Document::parse("{}");
  }
};

TEST_F(InspectCommand, QemuStreamAsText) {
  auto r = run({"inspect", kQemuStream});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  for (std::string_view line :
       {"file version 3, target page size 4096\n",
        "           8          19  configuration machine 'pc-i440fx-10.0'\n",
        "         197          52  start            37  0000:00:04.0/vfio           0    1  ok\n",
        "@288        DEV_DATA_STATE 24 bytes\n", "@22199      DEV_DATA_STATE 72 bytes\n",
        "@34850      DEV_CONFIG_STATE 4116 bytes\n",
        "RAM: 589 zero pages, 4 normal pages, 16384 bytes of page data\n",
        "MIG_CMD_SWITCHOVER_START (11)\n",
        "VFIO device '0000:00:04.0/vfio' instance 0: 96 bytes of data in 2 chunks (iterate 24 "
        "@304, complete 72 @22215), config 4116 bytes @34858, INIT_DATA_SENT no, complete\n"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  }
}

TEST_F(InspectCommand, QemuStreamAsJson) {
  auto r = run({"inspect", kQemuStream, "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json::Document doc = parse(r.out);
  const json::Value root = doc.root();
  EXPECT_EQ(root.get("format")->string(), "qemu");
  EXPECT_EQ(root.get("ok")->boolean(), true);
  EXPECT_EQ(root.get("page_size")->integer(), 4096);
  const auto sections = root.get("sections")->elements();
  ASSERT_EQ(sections.size(), 42u);
  int vfio_sections = 0;
  for (const json::Value& s : sections) {
    if (!s.get("vfio")) continue;
    ++vfio_sections;
    EXPECT_EQ(s.get("idstr")->string(), "0000:00:04.0/vfio");
    EXPECT_EQ(s.get("footer_ok")->boolean(), true);
  }
  EXPECT_EQ(vfio_sections, 5);
  const json::Value part = sections[4];
  EXPECT_EQ(part.get("kind")->string(), "part");
  EXPECT_EQ(part.get("offset")->integer(), 283);
  const auto tags = part.get("vfio")->elements();
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].get("tag")->string(), "DEV_DATA_STATE");
  EXPECT_EQ(tags[0].get("size")->integer(), 24);
  EXPECT_EQ(sections[1].get("ram")->get("blocks")->integer(), 6);
  const auto devices = root.get("vfio_devices")->elements();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].get("data_bytes")->integer(), 96);
  EXPECT_EQ(devices[0].get("config")->get("size")->integer(), 4116);
  EXPECT_EQ(devices[0].get("init_data_sent")->boolean(), false);
}

TEST_F(InspectCommand, VfioMigStream) {
  const std::string file = saved_stream();
  auto r = run({"inspect", file});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (std::string_view line :
       {"format version 1, 1 device(s)\n", "  device 0: 'sim:mtty#0'\n",
        "           0          34  header            ok\n",
        "          34          28  setup     0       ok\n",
        "          62         132  complete  0       ok\n", "@70         DEV_DATA_STATE 96 bytes\n",
        "@182        END_OF_STATE\n", "@202        DEV_CONFIG_STATE 256 bytes\n",
        "         486          12  end               ok\n"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  }
  auto j = run({"inspect", file, "--json"});
  ASSERT_EQ(j.code, kExitOk) << j.err;
  const json::Document doc = parse(j.out);
  EXPECT_EQ(doc.root().get("format")->string(), "vfio-mig");
  const auto sections = doc.root().get("sections")->elements();
  ASSERT_EQ(sections.size(), 4u);
  EXPECT_EQ(sections[1].get("type")->string(), "complete");
  EXPECT_EQ(sections[1].get("crc_ok")->boolean(), true);
  EXPECT_EQ(sections[1].get("tags")->elements()[0].get("size")->integer(), 96);
  EXPECT_EQ(sections[3].get("device")->kind(), json::Kind::kNull);
}

TEST_F(InspectCommand, DamagedFilesAreShownUpToTheDamage) {
  std::string bytes = slurp(saved_stream());
  bytes[100] ^= 0x01;  // inside the complete section's data: its checksum fails
  write(path("flipped.bin"), bytes);
  auto r = run({"inspect", path("flipped.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.out.find("          62         132  complete  0       BAD\n"), std::string::npos)
      << r.out;
  // The walk goes on past a checksum: the config and end sections are shown too.
  EXPECT_NE(r.out.find("         194         292  config    0       ok\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("section: checksum mismatch"), std::string::npos) << r.err;

  const std::string qemu = slurp(kQemuStream);
  write(path("cut.bin"), qemu.substr(0, 22250));
  auto cut = run({"inspect", path("cut.bin"), "--json"});
  EXPECT_EQ(cut.code, kExitFailed);
  const json::Document doc = parse(cut.out);
  EXPECT_EQ(doc.root().get("ok")->boolean(), false);
  EXPECT_EQ(doc.root().get("error_offset")->integer(), 22199);
  EXPECT_EQ(doc.root().get("page_size_assumed")->boolean(), true);
  EXPECT_EQ(doc.root().get("vfio_devices")->elements()[0].get("data_bytes")->integer(), 24);
  EXPECT_NE(cut.err.find("DEV_DATA_STATE of 72 bytes runs past"), std::string::npos) << cut.err;
}

TEST_F(InspectCommand, HostileNamesAreEscaped) {
  using vfio::qemu::testing::StreamBuilder;
  const std::string evil = "\x1b]0;owned\x07/vfio";
  StreamBuilder b;
  b.header().start(2, evil).tag(0xffffffffef100003ULL).tag(0xffffffffef100001ULL).footer(2);
  b.u8(0x00);
  write(path("evil.bin"), std::string(reinterpret_cast<const char*>(b.get().data()), b.size()));
  auto r = run({"inspect", path("evil.bin")});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("\\x1b]0;owned\\x07/vfio"), std::string::npos) << r.out;
  auto j = run({"inspect", path("evil.bin"), "--json"});
  const json::Document doc = parse(j.out);
  EXPECT_EQ(doc.root().get("sections")->elements()[0].get("idstr")->string(), evil);
}

TEST_F(InspectCommand, UsageErrorsAndNothingWritten) {
  EXPECT_EQ(run({"inspect"}).code, kExitUsage);
  EXPECT_EQ(run({"inspect", "a", "b"}).code, kExitUsage);
  EXPECT_EQ(run({"inspect", kQemuStream, "--nosuch"}).code, kExitUsage);
  EXPECT_EQ(run({"inspect", kQemuStream, "--json=x"}).code, kExitUsage);
  auto missing = run({"inspect", path("missing.bin")});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_NE(missing.err.find("cannot open"), std::string::npos) << missing.err;
  write(path("junk.bin"), "neither format");
  auto junk = run({"inspect", path("junk.bin")});
  EXPECT_EQ(junk.code, kExitFailed);
  EXPECT_EQ(junk.out, "");
  EXPECT_NE(junk.err.find("not a migration stream: it starts with neither vfio-mig's magic"),
            std::string::npos)
      << junk.err;
  std::filesystem::remove(path("junk.bin"));
  auto dir = run({"inspect", dir_.string()});
  EXPECT_EQ(dir.code, kExitFailed);
  EXPECT_NE(dir.err.find("is not a regular file"), std::string::npos) << dir.err;
  auto help = run({"inspect", "--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("usage: vfio-mig inspect [options] FILE"), std::string::npos);
  // inspect reads a file: the device forms that commands taking a device list are not shown.
  EXPECT_EQ(help.out.find("devices:"), std::string::npos);

  const std::string file = saved_stream();
  const auto before = std::filesystem::last_write_time(file);
  EXPECT_EQ(run({"inspect", file, "--json"}).code, kExitOk);
  EXPECT_EQ(run({"inspect", kQemuStream}).code, kExitOk);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);  // saved.bin alone
  EXPECT_EQ(std::filesystem::last_write_time(file), before);
}

}  // namespace
}  // namespace vfio::cli
