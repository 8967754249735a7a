// KernelDevice and the VFIO openers, on a machine without VFIO: real syscalls on plain files and
// pipes, and the openers against fake sysfs and /dev trees in a temporary directory.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/kernel_device.h"
#include "core/vfio_open.h"

namespace vfio {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kernel_device_test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  // Creates an empty regular file (and its parent directories) under the temp dir.
  std::string touch(const std::string& rel) const {
    const fs::path p = path_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p).put('\0');
    return p.string();
  }

 private:
  fs::path path_;
};

// A KernelDevice over a plain file: every ioctl on it fails with ENOTTY.
std::unique_ptr<KernelDevice> open_plain_file(const TempDir& dir) {
  auto dev = KernelDevice::open_path(dir.touch("plain"));
  if (!dev) std::abort();
  return std::move(*dev);
}

struct Pipe {
  Pipe() {
    if (::pipe2(fds.data(), O_CLOEXEC) != 0) std::abort();
  }
  ~Pipe() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  std::array<int, 2> fds{-1, -1};
  int r() const { return fds[0]; }
  int w() const { return fds[1]; }
};

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s));
}

TEST(KernelDeviceTest, OpenPathOfMissingFileNamesThePath) {
  TempDir dir;
  const std::string path = (dir.path() / "nope").string();
  auto dev = KernelDevice::open_path(path);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOENT);
  EXPECT_THAT(dev.error().message, HasSubstr(path));
  EXPECT_THAT(dev.error().message, HasSubstr("open"));
}

TEST(KernelDeviceTest, NameIsThePathItWasOpenedFrom) {
  TempDir dir;
  const std::string path = dir.touch("dev0");
  auto dev = KernelDevice::open_path(path);
  ASSERT_TRUE(dev) << dev.error().describe();
  EXPECT_EQ((*dev)->name(), path);
  EXPECT_GE((*dev)->device_fd(), 0);
}

TEST(KernelDeviceTest, FeatureOnPlainFileIsEnottyAndNamesTheOp) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  struct {
    uapi::FeatureHeader h;
    uapi::MigState s;
  } arg{
      {sizeof(arg), static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState) | uapi::kFeatureGet},
      {0, -1}};
  auto r = dev->feature(std::as_writable_bytes(std::span(&arg, 1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_THAT(r.error().message, HasSubstr(dev->name()));
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_DEVICE_FEATURE"));
  EXPECT_THAT(r.error().message, HasSubstr("GET"));
}

TEST(KernelDeviceTest, FeaturePassesABadArgszThrough) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  // argsz larger than the buffer: not refused here, the kernel (here: ENOTTY) decides.
  uapi::FeatureHeader h{4096,
                        static_cast<std::uint32_t>(uapi::Feature::kMigration) | uapi::kFeatureGet};
  auto r = dev->feature(std::as_writable_bytes(std::span(&h, 1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOTTY);
}

TEST(KernelDeviceTest, FeatureRefusesBufferShorterThanHeader) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  std::array<std::byte, 4> tiny{};
  auto r = dev->feature(tiny);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_DEVICE_FEATURE"));
}

TEST(KernelDeviceTest, ResetOnPlainFileIsEnotty) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  auto r = dev->reset();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_DEVICE_RESET"));
  EXPECT_THAT(r.error().message, HasSubstr(dev->name()));
}

TEST(KernelDeviceTest, DeviceInfoAndConfigOnPlainFileAreEnotty) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  auto info = dev->device_info();
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, ENOTTY);
  EXPECT_THAT(info.error().message, HasSubstr("VFIO_DEVICE_GET_INFO"));

  std::array<std::byte, 4> buf{};
  auto r = dev->config_read(0, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_DEVICE_GET_REGION_INFO"));
  auto w = dev->config_write(0, buf);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, ENOTTY);
}

TEST(KernelDeviceTest, PrecopyInfoOnPipeIsEnottyAndNamesTheFd) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  Pipe p;
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  auto r = dev->precopy_info(p.r(), info);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_THAT(r.error().message, HasSubstr("VFIO_MIG_GET_PRECOPY_INFO"));
  EXPECT_THAT(r.error().message, HasSubstr(std::to_string(p.r())));
}

TEST(KernelDeviceTest, ReadAndWriteOnAPipe) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  Pipe p;
  auto w = dev->write(p.w(), bytes_of("hello"));
  ASSERT_TRUE(w) << w.error().describe();
  EXPECT_EQ(*w, 5u);

  std::array<std::byte, 64> buf{};
  auto r = dev->read(p.r(), buf);  // asks for 64, gets the 5 that are there
  ASSERT_TRUE(r) << r.error().describe();
  ASSERT_EQ(*r, 5u);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(buf.data()), *r), "hello");
}

TEST(KernelDeviceTest, ShortReadsComeBackAsTheyAre) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  Pipe p;
  ASSERT_TRUE(dev->write(p.w(), bytes_of("abcdef")));
  std::array<std::byte, 4> buf{};
  auto first = dev->read(p.r(), buf);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, 4u);
  auto second = dev->read(p.r(), buf);
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, 2u);  // not looped until the buffer is full
}

TEST(KernelDeviceTest, ReadReturnsZeroAtEndOfStream) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  Pipe p;
  ::close(p.fds[1]);
  p.fds[1] = -1;
  std::array<std::byte, 8> buf{};
  auto r = dev->read(p.r(), buf);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0u);
}

TEST(KernelDeviceTest, CloseThenIoIsEbadf) {
  TempDir dir;
  auto dev = open_plain_file(dir);
  Pipe p;
  const int rfd = p.r();
  ASSERT_TRUE(dev->close(rfd));
  p.fds[0] = -1;
  std::array<std::byte, 8> buf{};
  auto r = dev->read(rfd, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBADF);
  EXPECT_THAT(r.error().message, HasSubstr(dev->name()));
  EXPECT_THAT(r.error().message, HasSubstr("read"));
  auto w = dev->write(rfd, bytes_of("x"));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, EBADF);
  auto c = dev->close(rfd);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, EBADF);
}

TEST(KernelDeviceTest, DestructorClosesDeviceAndKeepAliveFds) {
  Pipe a, b;
  const int dev_fd = ::dup(a.r());
  const int extra = ::dup(b.r());
  ASSERT_GE(dev_fd, 0);
  ASSERT_GE(extra, 0);
  {
    std::vector<ScopedFd> keep;
    keep.emplace_back(extra);
    KernelDevice dev("test", ScopedFd(dev_fd), std::move(keep));
    KernelDevice moved = std::move(dev);  // move-only; the moved-from one closes nothing
    EXPECT_EQ(moved.device_fd(), dev_fd);
  }
  EXPECT_EQ(::fcntl(dev_fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(::fcntl(extra, F_GETFD), -1);
}

// --- device specs ---

TEST(DeviceSpecTest, RecognisesPciAddressesAndUuids) {
  EXPECT_TRUE(is_pci_address("0000:00:03.0"));
  EXPECT_TRUE(is_pci_address("0000:af:1f.7"));
  EXPECT_TRUE(is_pci_address("10000:01:00.1"));
  EXPECT_FALSE(is_pci_address("00:03.0"));
  EXPECT_FALSE(is_pci_address("0000:00:03.8"));
  EXPECT_FALSE(is_pci_address("0000:00:03"));
  EXPECT_FALSE(is_pci_address("0000:0g:03.0"));
  EXPECT_TRUE(is_uuid("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"));
  EXPECT_FALSE(is_uuid("83b8f4f2-509f-382f-3c1e-e6bfe0fa100"));
  EXPECT_FALSE(is_uuid("83b8f4f2_509f-382f-3c1e-e6bfe0fa1001"));
}

TEST(DeviceSpecTest, Dispatch) {
  using Kind = DeviceSpec::Kind;
  auto pci = parse_device_spec("0000:00:03.0");
  ASSERT_TRUE(pci);
  EXPECT_EQ(pci->kind, Kind::kPciAddress);
  EXPECT_EQ(pci->name, "0000:00:03.0");

  auto short_pci = parse_device_spec("00:1F.2");
  ASSERT_TRUE(short_pci);
  EXPECT_EQ(short_pci->kind, Kind::kPciAddress);
  EXPECT_EQ(short_pci->name, "0000:00:1f.2");

  auto mdev = parse_device_spec("83B8F4F2-509F-382F-3C1E-E6BFE0FA1001");
  ASSERT_TRUE(mdev);
  EXPECT_EQ(mdev->kind, Kind::kMdevUuid);
  EXPECT_EQ(mdev->name, "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");

  auto cdev = parse_device_spec("/dev/vfio/devices/vfio3");
  ASSERT_TRUE(cdev);
  EXPECT_EQ(cdev->kind, Kind::kCdev);
  EXPECT_EQ(cdev->path, "/dev/vfio/devices/vfio3");

  auto fake_cdev = parse_device_spec("/tmp/x/vfio/devices/vfio0", OpenRoots{"/sys", "/tmp/x/"});
  ASSERT_TRUE(fake_cdev);
  EXPECT_EQ(fake_cdev->kind, Kind::kCdev);

  auto path = parse_device_spec("/mnt/sim/mlx5-0");
  ASSERT_TRUE(path);
  EXPECT_EQ(path->kind, Kind::kPath);

  auto group = parse_device_spec("group:12:0000:00:03.0");
  ASSERT_TRUE(group);
  EXPECT_EQ(group->kind, Kind::kGroup);
  EXPECT_EQ(group->group, 12u);
  EXPECT_EQ(group->name, "0000:00:03.0");
}

TEST(DeviceSpecTest, BadSpecsListTheAcceptedForms) {
  for (std::string_view bad :
       {"", "vfio3", "0000:00:03", "group:", "group:x:dev", "group:7:", "group:7", "dev/vfio/7"}) {
    auto r = parse_device_spec(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, EINVAL) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("PCI address")) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("UUID")) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("group:<N>:")) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("absolute path")) << bad;
    auto o = open_vfio_device(bad);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, EINVAL);
  }
}

// --- sysfs lookup ---

class FakeTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    roots_.sysfs = (dir_.path() / "sys").string();
    roots_.dev = (dir_.path() / "dev").string();
    fs::create_directories(roots_.dev);
    fs::create_directories(dir_.path() / "sys/kernel/iommu_groups/7");
  }
  void add_device(const std::string& bus, const std::string& name, const std::string& target) {
    const fs::path d = dir_.path() / "sys/bus" / bus / "devices" / name;
    fs::create_directories(d);
    if (!target.empty()) fs::create_directory_symlink(target, d / "iommu_group");
  }

  TempDir dir_;
  OpenRoots roots_;
};

TEST_F(FakeTreeTest, PciDeviceResolvesToItsGroup) {
  add_device("pci", "0000:00:03.0", "../../../kernel/iommu_groups/7");
  auto spec = parse_device_spec("0000:00:03.0", roots_);
  ASSERT_TRUE(spec);
  auto group = find_iommu_group(*spec, roots_);
  ASSERT_TRUE(group) << group.error().describe();
  EXPECT_EQ(*group, 7u);
}

TEST_F(FakeTreeTest, MdevResolvesToItsGroup) {
  const std::string uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
  add_device("mdev", uuid, "../../../kernel/iommu_groups/42");
  auto spec = parse_device_spec(uuid, roots_);
  ASSERT_TRUE(spec);
  auto group = find_iommu_group(*spec, roots_);
  ASSERT_TRUE(group) << group.error().describe();
  EXPECT_EQ(*group, 42u);
}

TEST_F(FakeTreeTest, DriverIsTheBasenameOfTheDriverLink) {
  const std::string uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
  add_device("mdev", uuid, "");
  add_device("pci", "0000:00:03.0", "");
  const fs::path sys = dir_.path() / "sys";
  fs::create_directory_symlink("../../../bus/mdev/drivers/mtty",
                               sys / "bus/mdev/devices" / uuid / "driver");
  fs::create_directory_symlink("../../../bus/pci/drivers/mlx5_vfio_pci",
                               sys / "bus/pci/devices/0000:00:03.0/driver");
  fs::create_directories(sys / "class/vfio-dev/vfio4");
  fs::create_directory_symlink("../../../bus/pci/devices/0000:00:03.0",
                               sys / "class/vfio-dev/vfio4/device");
  const std::pair<std::string, std::string> cases[] = {
      {uuid, "mtty"},
      {"0000:00:03.0", "mlx5_vfio_pci"},
      {"group:9:" + uuid, "mtty"},
      {"group:9:0000:00:03.0", "mlx5_vfio_pci"},
      {(dir_.path() / "dev/vfio/devices/vfio4").string(), "mlx5_vfio_pci"},
  };
  for (const auto& [text, driver] : cases) {
    auto spec = parse_device_spec(text, roots_);
    ASSERT_TRUE(spec) << text;
    auto found = find_driver(*spec, roots_);
    ASSERT_TRUE(found) << text << ": " << found.error().describe();
    EXPECT_EQ(*found, driver) << text;
  }
}

TEST_F(FakeTreeTest, NoDriverIsEnoent) {
  add_device("pci", "0000:00:05.0", "");
  for (const char* text : {"0000:00:05.0", "0000:00:06.0", "/tmp/some-file"}) {
    auto spec = parse_device_spec(text, roots_);
    ASSERT_TRUE(spec) << text;
    auto found = find_driver(*spec, roots_);
    ASSERT_FALSE(found) << text;
    EXPECT_EQ(found.error().code, ENOENT) << text;
  }
}

TEST_F(FakeTreeTest, MissingDeviceIsAClearError) {
  auto spec = parse_device_spec("0000:00:04.0", roots_);
  ASSERT_TRUE(spec);
  auto group = find_iommu_group(*spec, roots_);
  ASSERT_FALSE(group);
  EXPECT_EQ(group.error().code, ENOENT);
  EXPECT_THAT(group.error().message, HasSubstr("no IOMMU group for 0000:00:04.0"));
  EXPECT_THAT(group.error().message, HasSubstr(roots_.sysfs + "/bus/pci/devices"));
  EXPECT_THAT(group.error().message, HasSubstr("vfio-pci"));
}

TEST_F(FakeTreeTest, DeviceWithoutGroupLinkMentionsTheIommu) {
  add_device("pci", "0000:00:05.0", "");
  auto spec = parse_device_spec("0000:00:05.0", roots_);
  ASSERT_TRUE(spec);
  auto group = find_iommu_group(*spec, roots_);
  ASSERT_FALSE(group);
  EXPECT_EQ(group.error().code, ENOENT);
  EXPECT_THAT(group.error().message, HasSubstr("no IOMMU group for 0000:00:05.0"));
  EXPECT_THAT(group.error().message, HasSubstr("IOMMU"));
}

TEST_F(FakeTreeTest, GroupLinkWithoutNumberIsEinval) {
  add_device("pci", "0000:00:06.0", "../../../kernel/iommu_groups/bogus");
  auto spec = parse_device_spec("0000:00:06.0", roots_);
  ASSERT_TRUE(spec);
  auto group = find_iommu_group(*spec, roots_);
  ASSERT_FALSE(group);
  EXPECT_EQ(group.error().code, EINVAL);
  EXPECT_THAT(group.error().message, HasSubstr("bogus"));
}

// --- opening, as far as a machine without VFIO gets ---

TEST_F(FakeTreeTest, PciAddressWithoutVfioInTheKernel) {
  add_device("pci", "0000:00:03.0", "../../../kernel/iommu_groups/7");
  auto dev = open_vfio_device("0000:00:03.0", roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOENT);
  EXPECT_THAT(dev.error().message, HasSubstr(roots_.dev + "/vfio/vfio"));
  EXPECT_THAT(dev.error().message, HasSubstr("no VFIO"));
  EXPECT_THAT(dev.error().message, HasSubstr("modprobe vfio-pci"));
}

TEST_F(FakeTreeTest, ExplicitGroupWithoutVfioInTheKernel) {
  auto dev = open_vfio_device("group:7:0000:00:03.0", roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOENT);
  EXPECT_THAT(dev.error().message, HasSubstr("no VFIO"));
}

TEST_F(FakeTreeTest, MissingDeviceFailsBeforeTouchingDev) {
  auto dev = open_vfio_device("0000:00:09.0", roots_);
  ASSERT_FALSE(dev);
  EXPECT_THAT(dev.error().message, HasSubstr("no IOMMU group for 0000:00:09.0"));
}

TEST_F(FakeTreeTest, ContainerThatIsNotVfioFailsTheApiVersionCheck) {
  dir_.touch("dev/vfio/vfio");
  auto dev = open_vfio_device("group:7:0000:00:03.0", roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOTTY);
  EXPECT_THAT(dev.error().message, HasSubstr("VFIO_GET_API_VERSION"));
}

TEST_F(FakeTreeTest, CdevWithoutIommufd) {
  const std::string cdev = dir_.touch("dev/vfio/devices/vfio3");
  auto dev = open_vfio_device(cdev, roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOENT);
  EXPECT_THAT(dev.error().message, HasSubstr(roots_.dev + "/iommu"));
  EXPECT_THAT(dev.error().message, HasSubstr("iommufd"));
}

TEST_F(FakeTreeTest, CdevBindIsAttempted) {
  const std::string cdev = dir_.touch("dev/vfio/devices/vfio3");
  dir_.touch("dev/iommu");
  auto dev = open_vfio_device(cdev, roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOTTY);
  EXPECT_THAT(dev.error().message, HasSubstr(cdev));
  EXPECT_THAT(dev.error().message, HasSubstr("VFIO_DEVICE_BIND_IOMMUFD"));
}

TEST_F(FakeTreeTest, MissingCdev) {
  auto dev = open_vfio_device(roots_.dev + "/vfio/devices/vfio9", roots_);
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ENOENT);
  EXPECT_THAT(dev.error().message, HasSubstr("vfio9"));
}

TEST_F(FakeTreeTest, OtherAbsolutePathIsOpenedAsIs) {
  const std::string file = dir_.touch("sim/dev0");
  auto dev = open_vfio_device(file, roots_);
  ASSERT_TRUE(dev) << dev.error().describe();
  EXPECT_EQ((*dev)->name(), file);
}

}  // namespace
}  // namespace vfio
