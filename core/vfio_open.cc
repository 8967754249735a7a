#include "core/vfio_open.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <utility>
#include <vector>

namespace vfio {
namespace {

constexpr std::string_view kAcceptedForms =
    "accepted: an absolute path (/dev/vfio/devices/vfioN, or a simulated device file), "
    "a PCI address (0000:00:03.0), an mdev UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), "
    "or group:<N>:<device name>";

std::string join(std::string_view root, std::string_view rel) {
  while (!root.empty() && root.back() == '/') root.remove_suffix(1);
  return fmt::format("{}/{}", root, rel);
}

bool all_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit((unsigned char)c); });
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// BB:DD.F, the tail of every PCI address.
bool is_bus_dev_fn(std::string_view s) {
  return s.size() == 7 && all_hex(s.substr(0, 2)) && s[2] == ':' && all_hex(s.substr(3, 2)) &&
         s[5] == '.' && s[6] >= '0' && s[6] <= '7';
}

std::optional<unsigned> parse_number(std::string_view s) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::string_view basename_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Opens `path` read/write and close-on-exec; the error names what was opened and, for the
// usual failures, what to do about it.
Result<ScopedFd> open_rw(const std::string& path, std::string_view what,
                         std::string_view enoent_hint) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (fd) return fd;
  const int err = errno;
  std::string msg = fmt::format("{}: open {}", path, what);
  if (err == ENOENT && !enoent_hint.empty()) msg += fmt::format(" — {}", enoent_hint);
  if (err == EACCES || err == EPERM) {
    msg += " — needs root, or read/write permission on it (check its owner and group with ls -l)";
  }
  if (err == EBUSY) msg += " — already in use (by a VMM, or another vfio-mig?)";
  return fail(err, std::move(msg));
}

std::unexpected<Error> op_error(const std::string& path, std::string_view op,
                                std::string_view hint = {}) {
  const int err = errno;
  std::string msg = fmt::format("{}: {}", path, op);
  if (!hint.empty()) msg += fmt::format(" — {}", hint);
  return fail(err, std::move(msg));
}

// --- legacy group/container ---

Result<ScopedFd> open_container(const OpenRoots& roots) {
  const std::string path = join(roots.dev, "vfio/vfio");
  auto fd = open_rw(path, "VFIO container", "the kernel has no VFIO (modprobe vfio-pci)");
  if (!fd) return fd;
  const int version = ::ioctl(fd->get(), uapi::kGetApiVersion);
  if (version < 0) return op_error(path, "VFIO_GET_API_VERSION");
  if (version != uapi::kApiVersion) {
    return fail(EINVAL, fmt::format("{}: VFIO_GET_API_VERSION is {}, this tool speaks {}", path,
                                    version, uapi::kApiVersion));
  }
  const int has_type1v2 = ::ioctl(fd->get(), uapi::kCheckExtension, uapi::kType1v2Iommu);
  if (has_type1v2 < 0) return op_error(path, "VFIO_CHECK_EXTENSION (VFIO_TYPE1v2_IOMMU)");
  if (has_type1v2 == 0) {
    return fail(EOPNOTSUPP, fmt::format("{}: VFIO_CHECK_EXTENSION: the container does not "
                                        "support the type1v2 IOMMU (is vfio_iommu_type1 loaded?)",
                                        path));
  }
  return fd;
}

Result<ScopedFd> open_group(unsigned group, const ScopedFd& container, const OpenRoots& roots) {
  const std::string path = join(roots.dev, fmt::format("vfio/{}", group));
  auto fd = open_rw(path, fmt::format("IOMMU group {}", group),
                    "no such VFIO group: are the group's devices bound to vfio-pci?");
  if (!fd) return fd;
  uapi::GroupStatus status{sizeof(status), 0};
  if (::ioctl(fd->get(), uapi::kGroupGetStatus, &status) < 0) {
    return op_error(path, "VFIO_GROUP_GET_STATUS");
  }
  if (!(status.flags & uapi::kGroupFlagsViable)) {
    return fail(EBUSY, fmt::format("{}: VFIO_GROUP_GET_STATUS: group {} is not viable — all "
                                   "devices in IOMMU group {} must be bound to vfio drivers "
                                   "(see /sys/kernel/iommu_groups/{}/devices)",
                                   path, group, group, group));
  }
  int container_fd = container.get();
  if (::ioctl(fd->get(), uapi::kGroupSetContainer, &container_fd) < 0) {
    return op_error(path, "VFIO_GROUP_SET_CONTAINER");
  }
  return fd;
}

// --- iommufd ---

Result<> bind_iommufd(const std::string& path, const ScopedFd& dev, const ScopedFd& iommufd) {
  uapi::BindIommufd bind{sizeof(bind), 0, iommufd.get(), 0};
  if (::ioctl(dev.get(), uapi::kBindIommufd, &bind) < 0) {
    return op_error(path, "VFIO_DEVICE_BIND_IOMMUFD");
  }
  return {};
}

Result<> attach_new_ioas(const std::string& path, const ScopedFd& dev, const ScopedFd& iommufd) {
  uapi::IommuIoasAlloc alloc{sizeof(alloc), 0, 0};
  if (::ioctl(iommufd.get(), uapi::kIommuIoasAlloc, &alloc) < 0) {
    return op_error(path, "IOMMU_IOAS_ALLOC on the iommufd",
                    "the device is bound but has no IO address space to attach to");
  }
  uapi::AttachIommufdPt attach{sizeof(attach), 0, alloc.out_ioas_id};
  if (::ioctl(dev.get(), uapi::kDeviceAttachIommufdPt, &attach) < 0) {
    return op_error(path, fmt::format("VFIO_DEVICE_ATTACH_IOMMUFD_PT (IOAS {})", alloc.out_ioas_id),
                    "the device is bound but could not be attached to an IO address space");
  }
  return {};
}

}  // namespace

bool is_pci_address(std::string_view s) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos || colon < 4 || colon > 8) return false;
  return all_hex(s.substr(0, colon)) && is_bus_dev_fn(s.substr(colon + 1));
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

Result<DeviceSpec> parse_device_spec(std::string_view spec, const OpenRoots& roots) {
  using Kind = DeviceSpec::Kind;
  if (spec.starts_with('/')) {
    const bool cdev = spec.starts_with(join(roots.dev, "vfio/devices/"));
    return DeviceSpec{cdev ? Kind::kCdev : Kind::kPath, std::string(spec), {}};
  }
  if (spec.starts_with("group:")) {
    const std::string_view rest = spec.substr(6);
    const auto colon = rest.find(':');
    const auto group = parse_number(rest.substr(0, colon));
    if (colon != std::string_view::npos && group && colon + 1 < rest.size()) {
      return DeviceSpec{Kind::kGroup, {}, std::string(rest.substr(colon + 1)), *group};
    }
  } else if (is_pci_address(spec)) {
    return DeviceSpec{Kind::kPciAddress, {}, lowercase(spec)};
  } else if (is_bus_dev_fn(spec)) {
    return DeviceSpec{Kind::kPciAddress, {}, "0000:" + lowercase(spec)};
  } else if (is_uuid(spec)) {
    return DeviceSpec{Kind::kMdevUuid, {}, lowercase(spec)};
  }
  return fail(EINVAL, fmt::format("'{}' is not a device spec; {}", spec, kAcceptedForms));
}

Result<unsigned> find_iommu_group(const DeviceSpec& spec, const OpenRoots& roots) {
  const bool pci = spec.kind == DeviceSpec::Kind::kPciAddress;
  if (!pci && spec.kind != DeviceSpec::Kind::kMdevUuid) {
    return fail(EINVAL, fmt::format("'{}': only a PCI address or an mdev UUID has an IOMMU group "
                                    "to look up in sysfs",
                                    spec.name));
  }
  const std::string dir = join(roots.sysfs, pci ? "bus/pci/devices" : "bus/mdev/devices");
  const std::string link = fmt::format("{}/{}/iommu_group", dir, spec.name);
  char target[PATH_MAX];
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target));
  if (n < 0 && errno == ENOENT) {
    const bool present = exists(fmt::format("{}/{}", dir, spec.name));
    return fail(ENOENT, fmt::format("no IOMMU group for {} under {} — {}", spec.name, dir,
                                    !present ? (pci ? "no such device (check the address with "
                                                      "lspci -D; is it bound to vfio-pci?)"
                                                    : "no such mdev (was it created?)")
                                             : "it has no iommu_group link (is the IOMMU "
                                               "enabled, e.g. intel_iommu=on?)"));
  }
  if (n < 0) return op_error(link, "readlink");
  const std::string_view base = basename_of(std::string_view(target, n));
  const auto group = parse_number(base);
  if (!group || n == static_cast<ssize_t>(sizeof(target))) {
    return fail(EINVAL, fmt::format("{}: points to '{}', which does not end in a group number",
                                    link, std::string_view(target, n)));
  }
  return *group;
}

Result<std::string> find_driver(const DeviceSpec& spec, const OpenRoots& roots) {
  std::vector<std::string> dirs;
  switch (spec.kind) {
    case DeviceSpec::Kind::kPath:
      return fail(ENOENT, fmt::format("{}: not a sysfs device, its driver is unknown", spec.path));
    case DeviceSpec::Kind::kCdev:
      dirs.push_back(
          join(roots.sysfs, fmt::format("class/vfio-dev/{}/device", basename_of(spec.path))));
      break;
    case DeviceSpec::Kind::kPciAddress:
    case DeviceSpec::Kind::kMdevUuid:
    case DeviceSpec::Kind::kGroup:
      if (spec.kind != DeviceSpec::Kind::kMdevUuid)
        dirs.push_back(join(roots.sysfs, "bus/pci/devices/" + spec.name));
      if (spec.kind != DeviceSpec::Kind::kPciAddress)
        dirs.push_back(join(roots.sysfs, "bus/mdev/devices/" + spec.name));
      break;
  }
  for (const auto& dir : dirs) {
    char target[PATH_MAX];
    const ssize_t n = ::readlink((dir + "/driver").c_str(), target, sizeof(target));
    if (n > 0 && n < static_cast<ssize_t>(sizeof(target)))
      return std::string(basename_of(std::string_view(target, n)));
  }
  return fail(ENOENT, fmt::format("no driver link under {}/driver", dirs.front()));
}

Result<std::unique_ptr<KernelDevice>> open_cdev(const std::string& path, const OpenRoots& roots) {
  auto dev = open_rw(path, "VFIO device cdev",
                     "no such cdev (is the device bound to vfio-pci, and the kernel built with "
                     "CONFIG_VFIO_DEVICE_CDEV?)");
  if (!dev) return std::unexpected(dev.error());
  auto iommufd = open_rw(join(roots.dev, "iommu"), "iommufd",
                         "the kernel has no iommufd (CONFIG_IOMMUFD; modprobe iommufd)");
  if (!iommufd) return std::unexpected(iommufd.error());
  if (auto r = bind_iommufd(path, *dev, *iommufd); !r) return std::unexpected(r.error());
  if (auto r = attach_new_ioas(path, *dev, *iommufd); !r) return std::unexpected(r.error());
  std::vector<ScopedFd> keep;
  keep.push_back(std::move(*iommufd));
  return std::make_unique<KernelDevice>(path, std::move(*dev), std::move(keep));
}

Result<std::unique_ptr<KernelDevice>> open_group_device(unsigned group, const std::string& name,
                                                        const std::string& display,
                                                        const OpenRoots& roots) {
  auto container = open_container(roots);
  if (!container) return std::unexpected(container.error());
  auto group_fd = open_group(group, *container, roots);
  if (!group_fd) return std::unexpected(group_fd.error());
  const std::string container_path = join(roots.dev, "vfio/vfio");
  if (::ioctl(container->get(), uapi::kSetIommu, uapi::kType1v2Iommu) < 0) {
    return op_error(container_path, "VFIO_SET_IOMMU (VFIO_TYPE1v2_IOMMU)");
  }
  ScopedFd dev(::ioctl(group_fd->get(), uapi::kGroupGetDeviceFd, name.c_str()));
  if (!dev) {
    return op_error(join(roots.dev, fmt::format("vfio/{}", group)),
                    fmt::format("VFIO_GROUP_GET_DEVICE_FD ({})", name),
                    fmt::format("is {} in IOMMU group {}?", name, group));
  }
  std::vector<ScopedFd> keep;
  keep.push_back(std::move(*group_fd));
  keep.push_back(std::move(*container));
  return std::make_unique<KernelDevice>(display, std::move(dev), std::move(keep));
}

Result<std::unique_ptr<KernelDevice>> open_vfio_device(std::string_view spec,
                                                       const OpenRoots& roots) {
  auto parsed = parse_device_spec(spec, roots);
  if (!parsed) return std::unexpected(parsed.error());
  switch (parsed->kind) {
    case DeviceSpec::Kind::kPath:
      return KernelDevice::open_path(parsed->path);
    case DeviceSpec::Kind::kCdev:
      return open_cdev(parsed->path, roots);
    case DeviceSpec::Kind::kGroup:
      return open_group_device(parsed->group, parsed->name, std::string(spec), roots);
    case DeviceSpec::Kind::kPciAddress:
    case DeviceSpec::Kind::kMdevUuid:
      break;
  }
  auto group = find_iommu_group(*parsed, roots);
  if (!group) return std::unexpected(group.error());
  return open_group_device(*group, parsed->name, std::string(spec), roots);
}

}  // namespace vfio
