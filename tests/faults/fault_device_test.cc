// FaultDevice around the in-process simulator: what it tells the trace about each call, and
// faults on the config region.
#include "faults/fault_device.h"

#include <gtest/gtest.h>

#include <memory>

#include "core/feature.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"
#include "simdev/sim_device.h"

namespace vfio::faults {
namespace {

using uapi::State;

struct Wrapped {
  std::shared_ptr<sim::SimDevice> model;
  sim::DirectDevice inner;
  Injector injector;
  FaultDevice dev;

  explicit Wrapped(std::string_view plan_text)
      : model(std::make_shared<sim::SimDevice>(*sim::find_profile("plain"), sim::SimOptions{})),
        inner(model, "plain#1"),
        injector(parse_plan(plan_text).value()),
        dev(inner, injector, Side::kDestination) {
    injector.set_recording(true);
  }
};

TEST(FaultDevice, TraceHoldsTheRequestedStateAndTheConfigOffset) {
  Wrapped w("");
  ASSERT_TRUE(request_device_state(w.dev, State::kStop));
  const std::byte line{0x0b};
  ASSERT_TRUE(w.dev.config_write(0x3c, std::span(&line, 1)));
  auto trace = w.injector.trace();
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0].op, Op::kSet);
  EXPECT_EQ(trace[0].where, "set:R>S");
  EXPECT_EQ(trace[0].target, State::kStop);
  EXPECT_EQ(trace[1].op, Op::kConfigWrite);
  EXPECT_EQ(trace[1].offset, 0x3cu);
  EXPECT_EQ(trace[1].bytes, 1u);
  EXPECT_EQ(w.model->config()[0x3c], line);
}

// drop=N of at least the write's size: reported written, nothing reaches the device.
TEST(FaultDevice, ConfigWritesDroppedWholeReportSuccessAndChangeNothing) {
  Wrapped w("config-write -> drop=4K");
  const auto before = w.model->config();
  std::vector<std::byte> ones(before.size(), std::byte{0xff});
  auto written = w.dev.config_write(0, ones);
  ASSERT_TRUE(written) << written.error().describe();
  EXPECT_EQ(*written, ones.size());
  EXPECT_EQ(w.model->config(), before);
  EXPECT_EQ(w.injector.fired().size(), 1u);
  // A drop smaller than the write keeps its start.
  Wrapped partial("config-write -> drop=2");
  const std::byte value[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  ASSERT_EQ(partial.dev.config_write(0x40, value).value_or(0), 4u);
  auto after = partial.model->config();
  EXPECT_EQ(after[0x40], std::byte{1});
  EXPECT_EQ(after[0x41], std::byte{2});
}

}  // namespace
}  // namespace vfio::faults
