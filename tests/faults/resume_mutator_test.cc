// fuzz-resume's inputs: the payloads we know are recognized field by field (the kernel's mtty,
// the simulator's framings); every mutant differs from its base, stays bounded, and depends on
// the seed alone.
#include "faults/resume_mutator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/session.h"
#include "devices/device_spec.h"
#include "faults/payload_stream.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

std::vector<std::byte> saved_payload(const std::string& spec) {
  auto arg = devices::parse_device_arg(spec);
  auto dev = devices::open_device(*arg, 0);
  EXPECT_TRUE(dev) << dev.error().describe();
  MemoryChannel out;
  Session s;
  s.add_device(*dev->device, "dev");
  EXPECT_TRUE(s.save(out));
  auto p = read_payload_stream(out.data());
  EXPECT_TRUE(p) << p.error().describe();
  return p->data;
}

// The real mtty-2's struct mtty_data (docs/fidelity.md): header, then two 36-byte ports.
std::vector<std::byte> mtty_driver_payload() {
  std::vector<std::byte> b(24 + 2 * 36);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::byte>(sim::kMttyMagic >> (8 * i));
  b[8] = std::byte{1};   // major_ver
  b[16] = std::byte{2};  // nr_ports
  return b;
}

const PayloadField* field(const PayloadLayout& l, std::string_view name) {
  auto it = std::ranges::find(l.fields, name, &PayloadField::name);
  return it == l.fields.end() ? nullptr : &*it;
}

TEST(RecognizePayload, TheKernelsMtty) {
  const auto l = recognize_payload(mtty_driver_payload());
  EXPECT_EQ(l.name, "mtty");
  ASSERT_NE(field(l, "nr_ports"), nullptr);
  EXPECT_EQ(field(l, "nr_ports")->offset, 16u);
  ASSERT_NE(field(l, "port1.head"), nullptr);
  EXPECT_EQ(field(l, "port1.head")->offset, 24u + 36 + 24);
  ASSERT_NE(field(l, "port1.divisor"), nullptr);
  EXPECT_EQ(field(l, "port1.divisor")->size, 2u);
  // A size that does not agree with nr_ports is not mtty's.
  auto longer = mtty_driver_payload();
  longer.push_back(std::byte{0});
  EXPECT_NE(recognize_payload(longer).name, "mtty");
}

TEST(RecognizePayload, TheSimulatorsProfiles) {
  EXPECT_EQ(recognize_payload(saved_payload("sim:mtty,transport=direct")).name, "sim:mtty");
  EXPECT_EQ(recognize_payload(saved_payload("sim:stopcopy,size=4K,transport=direct")).name,
            "sim:plain");
  const auto mlx5 = recognize_payload(saved_payload("sim:mlx5,size=64K,transport=direct"));
  EXPECT_EQ(mlx5.name, "sim:mlx5");
  EXPECT_NE(field(mlx5, "record0.size"), nullptr);
  EXPECT_EQ(recognize_payload(std::vector<std::byte>(100, std::byte{7})).name, "bytes");
  EXPECT_TRUE(recognize_payload({}).fields.empty());
}

TEST(ResumeMutator, MutantsDifferStayBoundedAndFollowTheSeed) {
  const auto base = mtty_driver_payload();
  const auto layout = recognize_payload(base);
  ResumeMutator a(3), b(3), c(4);
  std::set<std::string> kinds;
  bool differs_from_c = false;
  for (int i = 0; i < 2000; ++i) {
    const auto ma = a.mutate(base, layout, {});
    const auto mb = b.mutate(base, layout, {});
    const auto mc = c.mutate(base, layout, {});
    EXPECT_NE(ma.bytes, base) << ma.how;
    EXPECT_LE(ma.bytes.size(), 2 * base.size() + 4096);
    EXPECT_EQ(ma.bytes, mb.bytes);
    EXPECT_EQ(ma.how, mb.how);
    differs_from_c |= ma.bytes != mc.bytes;
    kinds.insert(ma.how.substr(0, ma.how.find(' ')));
  }
  EXPECT_TRUE(differs_from_c);
  // Field-wise and byte-level mutations both occur.
  EXPECT_TRUE(kinds.contains("nr_ports"));
  EXPECT_TRUE(kinds.contains("truncated"));
  EXPECT_TRUE(kinds.contains("bit"));
}

TEST(ResumeMutator, AnEmptyBaseStillGivesInputs) {
  ResumeMutator m(1);
  const auto out = m.mutate({}, recognize_payload({}), {});
  EXPECT_FALSE(out.bytes.empty());
}

TEST(PayloadStream, WrittenStreamsLoadIntoTheDevice) {
  auto arg = devices::parse_device_arg("sim:plain,size=10K,transport=direct");
  auto dev = devices::open_device(*arg, 0);
  ASSERT_TRUE(dev);
  MemoryChannel saved;
  {
    Session s;
    s.add_device(*dev->device, "dev");
    ASSERT_TRUE(s.save(saved));
    ASSERT_TRUE(s.resume_vm());
  }
  auto p = read_payload_stream(saved.data());
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_EQ(p->data.size(), 32u + 10240);
  EXPECT_FALSE(p->config.empty());
  // Chunks of 1000 bytes: eleven DATA chunks, read back whole.
  const auto stream = write_payload_stream(*p, 1000);
  auto again = read_payload_stream(stream);
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(again->data, p->data);
  EXPECT_EQ(again->config, p->config);
  MemoryChannel in(stream);
  Session load;
  load.add_device(*dev->device, "dev");
  auto r = load.load(in);
  EXPECT_TRUE(r) << r.error().describe();
  // A damaged stream is refused with its reason.
  auto bad = stream;
  bad[bad.size() / 2] ^= std::byte{1};
  EXPECT_FALSE(read_payload_stream(bad));
}

}  // namespace
}  // namespace vfio::faults
