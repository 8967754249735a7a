// Opening real VFIO devices as KernelDevices: the iommufd cdev (/dev/vfio/devices/vfioN) and the
// legacy group/container path (/dev/vfio/vfio + /dev/vfio/<group>), with the group found in sysfs.
// The roots are injectable so tests can run against fake sysfs and /dev trees.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/kernel_device.h"
#include "core/result.h"

namespace vfio {

struct OpenRoots {
  std::string sysfs = "/sys";  // holds bus/pci/devices/ and bus/mdev/devices/
  std::string dev = "/dev";    // holds vfio/vfio, vfio/<group>, vfio/devices/ and iommu
};

// What a device spec names, before anything is opened.
struct DeviceSpec {
  enum class Kind {
    kPath,        // any other absolute path: opened as is (e.g. a FUSE-served simulated device)
    kCdev,        // <dev>/vfio/devices/vfioN: bound to an iommufd
    kGroup,       // group:<N>:<name>: legacy path with an explicit group number
    kPciAddress,  // 0000:00:03.0: group found under <sysfs>/bus/pci/devices
    kMdevUuid,    // an mdev UUID: group found under <sysfs>/bus/mdev/devices
  };
  Kind kind;
  std::string path;    // kPath, kCdev
  std::string name;    // kGroup, kPciAddress, kMdevUuid: the name VFIO_GROUP_GET_DEVICE_FD takes
  unsigned group = 0;  // kGroup
};

// DDDD:BB:DD.F in hex (domain of 4 to 8 digits, function 0-7).
bool is_pci_address(std::string_view s);
// 8-4-4-4-12 hex digits.
bool is_uuid(std::string_view s);

// Classifies `spec`; EINVAL, listing the accepted forms, for anything else. A short PCI address
// as lspci prints it (00:03.0) is taken as domain 0000.
Result<DeviceSpec> parse_device_spec(std::string_view spec, const OpenRoots& roots = {});

// The IOMMU group of a PCI device or mdev, from the basename of its sysfs iommu_group link.
Result<unsigned> find_iommu_group(const DeviceSpec& spec, const OpenRoots& roots = {});

// The kernel driver bound to the device `spec` names: the basename of its sysfs driver link
// ("mtty", "vfio-pci", "mlx5_vfio_pci"). A cdev is found under <sysfs>/class/vfio-dev, a group's
// device by its name on the PCI bus, then the mdev bus. ENOENT for a plain path (no sysfs device)
// or a device bound to no driver.
Result<std::string> find_driver(const DeviceSpec& spec, const OpenRoots& roots = {});

// iommufd cdev: opens the cdev and <dev>/iommu, VFIO_DEVICE_BIND_IOMMUFD, then allocates an
// IOAS and attaches the device to it. The iommufd stays open with the device.
Result<std::unique_ptr<KernelDevice>> open_cdev(const std::string& path,
                                                const OpenRoots& roots = {});

// Legacy: a type1v2 container from <dev>/vfio/vfio, group <dev>/vfio/<group> set to it, and the
// device fd from VFIO_GROUP_GET_DEVICE_FD(name). Group and container stay open with the device.
// `display` becomes the device's name().
Result<std::unique_ptr<KernelDevice>> open_group_device(unsigned group, const std::string& name,
                                                        const std::string& display,
                                                        const OpenRoots& roots = {});

// Parses `spec` and opens it the way its kind calls for.
Result<std::unique_ptr<KernelDevice>> open_vfio_device(std::string_view spec,
                                                       const OpenRoots& roots = {});

}  // namespace vfio
