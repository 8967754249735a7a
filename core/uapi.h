// The VFIO migration v2 uAPI subset this project speaks (Linux 6.12 include/uapi/linux/vfio.h).
// Defined here rather than taken from <linux/vfio.h>: Debian 12 ships 6.1 headers, which lack
// MIG_DATA_SIZE and PRECOPY_INFO. See docs/vfio-migration-uapi.md in shared/ for the contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace vfio::uapi {

// Every VFIO ioctl is _IO(';', 100 + n): no size or direction bits.
constexpr unsigned long vfio_io(unsigned n) {
  return (0x3BUL << 8) | (100 + n);
}

constexpr unsigned long kGetApiVersion = vfio_io(0);   // container
constexpr unsigned long kCheckExtension = vfio_io(1);  // container
constexpr unsigned long kSetIommu = vfio_io(2);        // container
constexpr unsigned long kGroupGetStatus = vfio_io(3);  // group
constexpr unsigned long kGroupSetContainer = vfio_io(4);
constexpr unsigned long kGroupGetDeviceFd = vfio_io(6);
constexpr unsigned long kDeviceGetInfo = vfio_io(7);
constexpr unsigned long kDeviceGetRegionInfo = vfio_io(8);
constexpr unsigned long kDeviceReset = vfio_io(11);
constexpr unsigned long kDeviceFeature = vfio_io(17);
constexpr unsigned long kBindIommufd = vfio_io(18);            // cdev
constexpr unsigned long kDeviceAttachIommufdPt = vfio_io(19);  // cdev, after bind
constexpr unsigned long kMigGetPrecopyInfo = vfio_io(21);      // on the data fd
static_assert(kDeviceFeature == 0x3B75 && kMigGetPrecopyInfo == 0x3B79 && kDeviceReset == 0x3B6F);

constexpr int kApiVersion = 0;
constexpr unsigned long kType1v2Iommu = 3;
constexpr std::uint32_t kGroupFlagsViable = 1u << 0;

// struct vfio_device_feature: an 8-byte header followed by the feature's payload.
struct FeatureHeader {
  std::uint32_t argsz;
  std::uint32_t flags;
};
static_assert(sizeof(FeatureHeader) == 8);

constexpr std::uint32_t kFeatureMask = 0xffff;
constexpr std::uint32_t kFeatureGet = 1u << 16;
constexpr std::uint32_t kFeatureSet = 1u << 17;
constexpr std::uint32_t kFeatureProbe = 1u << 18;

enum class Feature : std::uint32_t {
  kMigration = 1,
  kMigDeviceState = 2,
  kDmaLoggingStart = 6,
  kDmaLoggingStop = 7,
  kDmaLoggingReport = 8,
  kMigDataSize = 9,
};

// VFIO_DEVICE_FEATURE_MIGRATION payload.
struct MigrationFlags {
  alignas(8) std::uint64_t flags;
};
static_assert(sizeof(MigrationFlags) == 8);
constexpr std::uint64_t kMigrationStopCopy = 1u << 0;
constexpr std::uint64_t kMigrationP2p = 1u << 1;
constexpr std::uint64_t kMigrationPreCopy = 1u << 2;

enum class State : std::uint32_t {
  kError = 0,
  kStop = 1,
  kRunning = 2,
  kStopCopy = 3,
  kResuming = 4,
  kRunningP2p = 5,
  kPreCopy = 6,
  kPreCopyP2p = 7,
};
constexpr std::uint32_t kStateCount = 8;

// VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE payload.
struct MigState {
  std::uint32_t device_state;
  std::int32_t data_fd;
};
static_assert(sizeof(MigState) == 8 && offsetof(MigState, data_fd) == 4);

// VFIO_DEVICE_FEATURE_MIG_DATA_SIZE payload.
struct MigDataSize {
  alignas(8) std::uint64_t stop_copy_length;
};
static_assert(sizeof(MigDataSize) == 8);

// struct vfio_precopy_info, used with VFIO_MIG_GET_PRECOPY_INFO on the data fd.
struct PrecopyInfo {
  std::uint32_t argsz;
  std::uint32_t flags;
  alignas(8) std::uint64_t initial_bytes;
  alignas(8) std::uint64_t dirty_bytes;
};
static_assert(sizeof(PrecopyInfo) == 24 && offsetof(PrecopyInfo, initial_bytes) == 8 &&
              offsetof(PrecopyInfo, dirty_bytes) == 16);

// DMA logging payloads.
struct DmaLoggingRange {
  alignas(8) std::uint64_t iova;
  alignas(8) std::uint64_t length;
};
static_assert(sizeof(DmaLoggingRange) == 16);

struct DmaLoggingControl {
  alignas(8) std::uint64_t page_size;
  std::uint32_t num_ranges;
  std::uint32_t reserved;
  alignas(8) std::uint64_t ranges;  // user pointer to DmaLoggingRange[num_ranges]
};
static_assert(sizeof(DmaLoggingControl) == 24 && offsetof(DmaLoggingControl, ranges) == 16);

struct DmaLoggingReport {
  alignas(8) std::uint64_t iova;
  alignas(8) std::uint64_t length;
  alignas(8) std::uint64_t page_size;
  alignas(8) std::uint64_t bitmap;  // user pointer
};
static_assert(sizeof(DmaLoggingReport) == 32);

// struct vfio_device_info (VFIO_DEVICE_GET_INFO), without the capability chain.
struct DeviceInfo {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t num_regions;
  std::uint32_t num_irqs;
  std::uint32_t cap_offset;
  std::uint32_t pad;
};
static_assert(sizeof(DeviceInfo) == 24);
constexpr std::uint32_t kDeviceFlagsReset = 1u << 0;
constexpr std::uint32_t kDeviceFlagsPci = 1u << 1;

// struct vfio_region_info (VFIO_DEVICE_GET_REGION_INFO).
struct RegionInfo {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t index;
  std::uint32_t cap_offset;
  alignas(8) std::uint64_t size;
  alignas(8) std::uint64_t offset;
};
static_assert(sizeof(RegionInfo) == 32 && offsetof(RegionInfo, size) == 16);
constexpr std::uint32_t kRegionFlagRead = 1u << 0;
constexpr std::uint32_t kRegionFlagWrite = 1u << 1;
constexpr std::uint32_t kPciConfigRegionIndex = 7;

// struct vfio_group_status.
struct GroupStatus {
  std::uint32_t argsz;
  std::uint32_t flags;
};
static_assert(sizeof(GroupStatus) == 8);

// struct vfio_device_bind_iommufd (cdev path).
struct BindIommufd {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::int32_t iommufd;
  std::uint32_t out_devid;
};
static_assert(sizeof(BindIommufd) == 16);

// struct vfio_device_attach_iommufd_pt (VFIO_DEVICE_ATTACH_IOMMUFD_PT), without the 6.14 pasid.
struct AttachIommufdPt {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t pt_id;
};
static_assert(sizeof(AttachIommufdPt) == 12);

// iommufd (include/uapi/linux/iommufd.h): the same ';' type, commands numbered from 0x80.
constexpr unsigned long iommufd_io(unsigned cmd) {
  return (0x3BUL << 8) | cmd;
}
constexpr unsigned long kIommuDestroy = iommufd_io(0x80);
constexpr unsigned long kIommuIoasAlloc = iommufd_io(0x81);
static_assert(kIommuIoasAlloc == 0x3B81 && kDeviceAttachIommufdPt == 0x3B77);

// struct iommu_ioas_alloc (IOMMU_IOAS_ALLOC).
struct IommuIoasAlloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t out_ioas_id;
};
static_assert(sizeof(IommuIoasAlloc) == 12);

// Names of the states, as the uAPI spells them; "UNKNOWN" for out-of-range values.
std::string_view state_name(State s);
// Short names used in tables: S, R, SC, RS, RP, PC, PCP, ERROR.
std::string_view state_short_name(State s);
// Accepts either spelling, case-insensitively.
std::optional<State> parse_state(std::string_view name);

}  // namespace vfio::uapi
