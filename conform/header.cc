// conform: How VFIO_DEVICE_FEATURE validates its header.
#include <fmt/format.h>

#include "conform/checker_context.h"

namespace vfio::conform::detail {

void Checker::check_header() {
  using uapi::Feature;
  const auto get = uapi::kFeatureGet, set = uapi::kFeatureSet, probe = uapi::kFeatureProbe;
  const uapi::MigState running{static_cast<std::uint32_t>(State::kRunning), -1};
  // Each call on a fresh device; the payloads are harmless if a device wrongly accepts them.
  auto call = [&](FeatureCall c) -> Result<> {
    if (auto r = dev_.reset(); !r) return r;
    return c.run(dev_);
  };
  expect_errno(
      "header/argsz-below-8", kHeader,
      call(FeatureCall(flags_of(Feature::kMigration, get), uapi::MigrationFlags{}).argsz(4)),
      EINVAL, "GET MIGRATION with argsz 4");
  expect_errno("header/unknown-flag-bits", kHeader,
               call(FeatureCall(flags_of(Feature::kMigration, get | kUnknownFlagBit),
                                uapi::MigrationFlags{})),
               EINVAL, "GET MIGRATION with flag bit 19 set");
  expect_errno("header/get-and-set-without-probe", kHeader,
               call(FeatureCall(flags_of(Feature::kMigDeviceState, get | set), running)), EINVAL,
               "GET|SET MIG_DEVICE_STATE");
  expect_errno("header/neither-get-nor-set", kHeader,
               call(FeatureCall(flags_of(Feature::kMigration, 0), uapi::MigrationFlags{})), EINVAL,
               "MIGRATION without GET, SET or PROBE");
  expect_errno("header/unknown-feature", kHeader,
               call(FeatureCall(kUnknownFeature | get, uapi::MigrationFlags{})), ENOTTY,
               "GET feature 0x3f");
  expect_errno("header/unknown-feature-probe", kHeader,
               call(FeatureCall(kUnknownFeature | get | probe)), ENOTTY, "PROBE feature 0x3f");
  expect_errno("header/set-on-get-only-MIGRATION", kHeader,
               call(FeatureCall(flags_of(Feature::kMigration, set), uapi::MigrationFlags{})),
               EINVAL, "SET MIGRATION");
  expect_errno("header/set-on-get-only-MIG_DATA_SIZE", kHeader,
               call(FeatureCall(flags_of(Feature::kMigDataSize, set), uapi::MigDataSize{})), EINVAL,
               "SET MIG_DATA_SIZE");
  expect_errno("header/probe-unsupported-op", kHeader,
               call(FeatureCall(flags_of(Feature::kMigration, set | probe))), EINVAL,
               "PROBE SET MIGRATION");
  // The only SET-only features are the DMA logging ones; without them ENOTTY comes first.
  if (probe_feature(dev_, Feature::kDmaLoggingStop, set))
    expect_errno("header/get-on-set-only", kHeader,
                 call(FeatureCall(flags_of(Feature::kDmaLoggingStop, get))), EINVAL,
                 "GET DMA_LOGGING_STOP");
  else
    add("header/get-on-set-only", kHeader, Verdict::kSkip,
        "no SET-only feature without DMA logging");
  expect_errno(
      "header/short-payload-set", kHeader,
      call(FeatureCall(flags_of(Feature::kMigDeviceState, set), running).argsz(kHeaderSize + 4)),
      EINVAL, "SET MIG_DEVICE_STATE with a 4-byte payload");
  expect_errno("header/short-payload-get", kHeader,
               call(FeatureCall(flags_of(Feature::kMigration, get), uapi::MigrationFlags{})
                        .argsz(kHeaderSize)),
               EINVAL, "GET MIGRATION without a payload");
  expect_ok("header/probe-migration-get", kHeader,
            call(FeatureCall(flags_of(Feature::kMigration, get | probe))), "PROBE GET MIGRATION");
  expect_ok("header/probe-device-state-get-set", kHeader,
            call(FeatureCall(flags_of(Feature::kMigDeviceState, get | set | probe))),
            "PROBE GET|SET MIG_DEVICE_STATE");
}

}  // namespace vfio::conform::detail
