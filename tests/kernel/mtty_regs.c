// mtty-regs: reads and writes the emulated 16550 registers of an mtty mdev through its VFIO
// device fd (the BAR regions, as a guest's driver would), independently of vfio-mig. Built
// static for the kernel lane's initramfs; the guest checks use it to plant device state before a
// migration and to read it back on the destination.
//
//   mtty-regs UUID OP...      OP: wB:OFF=VAL (write byte VAL at register OFF of BAR B;
//                                            region 7 is the PCI config space)
//                                 rB:OFF     (read it; printed as 0xVV, space-separated)
//                                 state      (GET MIG_DEVICE_STATE; printed as its name)
//                                 reset      (VFIO_DEVICE_RESET)
// Exit 0 on success, 1 with a message on stderr otherwise.
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char* what) {
  fprintf(stderr, "mtty-regs: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: mtty-regs UUID wB:OFF=VAL|rB:OFF...\n");
    return 2;
  }
  char link[512], target[512];
  snprintf(link, sizeof link, "/sys/bus/mdev/devices/%s/iommu_group", argv[1]);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return fail(link);
  target[n] = 0;
  const char* group_no = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
  char group_path[600];
  snprintf(group_path, sizeof group_path, "/dev/vfio/%s", group_no);

  int container = open("/dev/vfio/vfio", O_RDWR);
  if (container < 0) return fail("/dev/vfio/vfio");
  int group = open(group_path, O_RDWR);
  if (group < 0) return fail(group_path);
  if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0) return fail("GROUP_SET_CONTAINER");
  if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) return fail("SET_IOMMU");
  int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[1]);
  if (device < 0) return fail("GROUP_GET_DEVICE_FD");

  int printed = 0;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "reset") == 0) {
      if (ioctl(device, VFIO_DEVICE_RESET) < 0) return fail("DEVICE_RESET");
      continue;
    }
    if (strcmp(argv[i], "state") == 0) {
      static const char* const names[] = {"ERROR",    "STOP",        "RUNNING",  "STOP_COPY",
                                          "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"};
      unsigned long long buf[4] = {0};
      struct vfio_device_feature* f = (struct vfio_device_feature*)buf;
      struct vfio_device_feature_mig_state* st = (struct vfio_device_feature_mig_state*)f->data;
      f->argsz = sizeof(*f) + sizeof(*st);
      f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
      if (ioctl(device, VFIO_DEVICE_FEATURE, f) < 0) return fail("GET MIG_DEVICE_STATE");
      printf("%s%s", printed++ ? " " : "", st->device_state < 8 ? names[st->device_state] : "?");
      continue;
    }
    char op;
    unsigned bar, off, val = 0;
    int is_write = sscanf(argv[i], "w%u:%u=%i", &bar, &off, &val) == 3;
    if (!is_write && sscanf(argv[i], "r%u:%u", &bar, &off) != 2) {
      fprintf(stderr, "mtty-regs: bad operation '%s'\n", argv[i]);
      return 2;
    }
    op = is_write ? 'w' : 'r';
    struct vfio_region_info info = {.argsz = sizeof info, .index = bar};
    if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info) < 0) return fail("GET_REGION_INFO");
    if (off >= info.size) {
      fprintf(stderr, "mtty-regs: offset %u beyond BAR%u (%llu bytes)\n", off, bar,
              (unsigned long long)info.size);
      return 1;
    }
    unsigned char byte = (unsigned char)val;
    if (op == 'w') {
      if (pwrite(device, &byte, 1, (off_t)(info.offset + off)) != 1) return fail("pwrite");
    } else {
      if (pread(device, &byte, 1, (off_t)(info.offset + off)) != 1) return fail("pread");
      printf("%s0x%02x", printed++ ? " " : "", byte);
    }
  }
  if (printed) printf("\n");
  return 0;
}
