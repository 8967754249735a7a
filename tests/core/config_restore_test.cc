// Restoring a CONFIG section: byte-exact into the simulator, register by register (what a VMM
// restores) into real devices.
#include "core/config_restore.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "core/channel.h"
#include "core/session.h"
#include "tests/core/faulty_device.h"
#include "tests/core/sim_pair.h"

namespace vfio {
namespace {

using testing::FaultyDevice;

struct Write {
  std::uint64_t offset;
  std::size_t size;
  bool operator==(const Write&) const = default;
};

// The config writes that reached the decorator: where, and how many bytes went (or were reported
// to go) through.
std::vector<Write> config_writes(const FaultyDevice& dev) {
  std::vector<Write> out;
  for (const auto& e : dev.injector.trace())
    if (e.op == faults::Op::kConfigWrite) out.push_back({e.offset, e.bytes});
  return out;
}

bool same_register(const ConfigRegister& r, std::span<const std::byte> a,
                   std::span<const std::byte> b) {
  return std::memcmp(a.data() + r.offset, b.data() + r.offset, r.width) == 0;
}

void copy_register(sim::SimDevice& to, std::span<const std::byte> from, std::uint16_t offset,
                   std::size_t width) {
  ASSERT_TRUE(to.config_write(offset, from.subspan(offset, width)));
}

// Two simulated devices of different seeds: their config spaces differ almost everywhere,
// read-only fields (device ID, revision) included.
struct Pair {
  testing::SimHandle src = testing::make_sim("mlx5", 1 << 16, 1);
  testing::SimHandle dst = testing::make_sim("mlx5", 1 << 16, 2);
};

TEST(ConfigRestore, RegistersModeWritesOnlyRestoredRegistersThatDiffer) {
  Pair p;
  const auto saved = p.src.model->config();
  // BAR1 and the interrupt line already hold the saved values: they must not be written.
  copy_register(*p.dst.model, saved, 0x14, 4);
  copy_register(*p.dst.model, saved, 0x3c, 1);
  const auto before = p.dst.model->config();

  std::vector<Write> expected;
  for (const auto& r : restored_config_registers())
    if (!same_register(r, saved, before)) expected.push_back({r.offset, r.width});
  ASSERT_GE(expected.size(), 6u);  // the seeds make most registers differ

  FaultyDevice dst(*p.dst.device, "", faults::Side::kDestination);
  auto written = restore_config(dst.device, saved, ConfigRestore::kRegisters);
  ASSERT_TRUE(written) << written.error().describe();
  EXPECT_EQ(*written, expected.size());
  EXPECT_EQ(config_writes(dst), expected);

  // Restored registers hold the saved values; every other byte is the destination's own.
  const auto after = p.dst.model->config();
  std::vector<bool> restored(after.size(), false);
  for (const auto& r : restored_config_registers()) {
    EXPECT_TRUE(same_register(r, saved, after)) << r.name;
    for (std::size_t i = 0; i < r.width; ++i) restored[r.offset + i] = true;
  }
  for (std::size_t i = 0; i < after.size(); ++i) {
    if (restored[i]) continue;
    EXPECT_EQ(after[i], before[i]) << "config byte " << i;
  }
  EXPECT_NE(after, saved);  // IDs, revision and the capability area were not overwritten
  EXPECT_TRUE(config_restored_equal(saved, after, ConfigRestore::kRegisters));
  EXPECT_FALSE(config_restored_equal(saved, after, ConfigRestore::kExact));
}

TEST(ConfigRestore, RegistersModeSkipsTheBarsOfOtherHeaderTypes) {
  Pair p;
  const std::byte bridge{0x01};
  ASSERT_TRUE(p.dst.model->config_write(0x0e, std::span(&bridge, 1)));
  FaultyDevice dst(*p.dst.device, "", faults::Side::kDestination);
  ASSERT_TRUE(restore_config(dst.device, p.src.model->config(), ConfigRestore::kRegisters));
  for (const auto& w : config_writes(dst)) {
    EXPECT_TRUE(w.offset == 0x04 || w.offset == 0x0c || w.offset == 0x0d || w.offset == 0x3c)
        << "wrote offset " << w.offset << " of a type 1 header";
  }
}

TEST(ConfigRestore, RegistersModeFailsWhenTheDeviceDoesNotTakeAValue) {
  Pair p;
  // A device that ignores config writes: each reports every byte written and changes nothing.
  FaultyDevice dst(*p.dst.device, "config-write -> drop=4K", faults::Side::kDestination);
  auto r = restore_config(dst.device, p.src.model->config(), ConfigRestore::kRegisters);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("reads back"), std::string::npos) << r.error().message;
  EXPECT_EQ(config_writes(dst).size(), 1u);  // stops at the first register not taken
}

TEST(ConfigRestore, VerifyComparesWhatTheModeRestores) {
  Pair p;
  auto saved = p.src.model->config();
  ASSERT_TRUE(restore_config(*p.dst.device, saved, ConfigRestore::kRegisters));
  auto after = p.dst.model->config();
  EXPECT_TRUE(config_restored_equal(saved, after, ConfigRestore::kRegisters));
  after[0x10] ^= std::byte{0x10};  // BAR0 lost a bit
  EXPECT_FALSE(config_restored_equal(saved, after, ConfigRestore::kRegisters));
}

// Through a whole save and load: the session hands each device the mode it was added with.
TEST(ConfigRestore, SessionLoadUsesTheDevicesMode) {
  for (auto mode : {ConfigRestore::kExact, ConfigRestore::kRegisters}) {
    Pair p;
    MemoryChannel stream;
    Session source;
    source.add_device(*p.src.device, "src");
    ASSERT_TRUE(source.save(stream));
    FaultyDevice dst(*p.dst.device, "", faults::Side::kDestination);
    Session destination;
    if (mode == ConfigRestore::kExact)
      destination.add_device(dst.device, "dst");  // the options' default
    else
      destination.add_device(dst.device, "dst", ConfigRestore::kRegisters);
    stream.rewind();
    auto loaded = destination.load(stream);
    ASSERT_TRUE(loaded) << loaded.error().describe();
    const auto writes = config_writes(dst);
    if (mode == ConfigRestore::kExact) {
      EXPECT_EQ(writes, (std::vector<Write>{{0, 256}}));
      EXPECT_EQ(p.dst.model->config(), p.src.model->config());
    } else {
      for (const auto& w : writes) EXPECT_LE(w.size, 4u) << "offset " << w.offset;
      EXPECT_FALSE(writes.empty());
      EXPECT_TRUE(config_restored_equal(p.src.model->config(), p.dst.model->config(), mode));
    }
  }
}

}  // namespace
}  // namespace vfio
