// What the matrix learns from a device it does not model: here, whether a session can log its DMA.
#include "faults/device_checks.h"

#include <gtest/gtest.h>

#include "core/dirty_tracking.h"
#include "core/session.h"
#include "devices/device_spec.h"
#include "faults/fault_device.h"
#include "simdev/profile.h"

namespace vfio::faults {
namespace {

constexpr uapi::DmaLoggingRange kRange{0, 1 << 20};
constexpr std::uint64_t kPage = 4096;

// A simulated device of `profile` behind the fault plan `plan` (reached only through Device).
struct Faulty {
  Faulty(std::string_view profile, std::string_view plan)
      : injector(parse_plan(plan).value()),
        sim(devices::open_sim(devices::Transport::kDirect, *sim::find_profile(profile), {},
                              "checked")
                .value()),
        device(*sim.device, injector, Side::kSource, nullptr) {}
  Injector injector;
  devices::OpenedDevice sim;
  FaultDevice device;
};

TEST(DmaLoggingUnusable, ADeviceWhoseStartReportAndStopWorkCanLog) {
  Faulty d("mtty", "");
  EXPECT_EQ(dma_logging_unusable(d.device, kRange, kPage), std::nullopt);
  // Logging was stopped again: a session can start it.
  EXPECT_TRUE(dma_logging_start(d.device, kPage, std::span(&kRange, 1)));
}

TEST(DmaLoggingUnusable, ADeviceWithoutTheFeatureIsNotAsked) {
  Faulty d("stopcopy", "");
  EXPECT_EQ(dma_logging_unusable(d.device, kRange, kPage), std::string());
}

// Debian's 6.12 on mtty: START is advertised and works, every REPORT fails with EOPNOTSUPP.
TEST(DmaLoggingUnusable, AnAdvertisedFeatureWhoseReportFailsIsUnusable) {
  Faulty d("mtty", "get:dma-report -> errno=EOPNOTSUPP");
  auto why = dma_logging_unusable(d.device, kRange, kPage);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("advertised but REPORT fails"), std::string::npos) << *why;
  EXPECT_NE(why->find("Operation not supported"), std::string::npos) << *why;
  // Stopped after the failed REPORT, not left running.
  EXPECT_TRUE(dma_logging_start(d.device, kPage, std::span(&kRange, 1)));
}

TEST(DmaLoggingUnusable, AFailingStartOrStopIsNamed) {
  Faulty start("mtty", "set:dma-start -> errno=EIO");
  auto why = dma_logging_unusable(start.device, kRange, kPage);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("START fails"), std::string::npos) << *why;
  Faulty stop("mtty", "set:dma-stop nth=1 -> errno=EIO");
  why = dma_logging_unusable(stop.device, kRange, kPage);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("STOP fails"), std::string::npos) << *why;
}

}  // namespace
}  // namespace vfio::faults
