// SimDevice: the feature ioctl, the state machine walked arc by arc, and the data channel.
#include "simdev/sim_device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "core/state_machine.h"
#include "tests/eventually.h"

namespace vfio::sim {
namespace {

using uapi::State;
using SessionId = SimDevice::SessionId;

constexpr State kAllStates[] = {State::kError,    State::kStop,      State::kRunning,
                                State::kStopCopy, State::kResuming,  State::kRunningP2p,
                                State::kPreCopy,  State::kPreCopyP2p};

// Session ids double as fd numbers here.
const SimDevice::FdOpener kOpener = [](SessionId id) -> Result<int> {
  return static_cast<int>(id);
};

template <class Payload>
struct Call {
  uapi::FeatureHeader header;
  Payload payload;
};

template <class Payload>
Result<> call(SimDevice& dev, std::uint32_t flags, Payload& payload) {
  Call<Payload> c{{sizeof(c), flags}, payload};
  auto r = dev.feature(std::as_writable_bytes(std::span(&c, 1)), kOpener);
  payload = c.payload;
  return r;
}

std::uint32_t fl(uapi::Feature f, std::uint32_t dir) {
  return static_cast<std::uint32_t>(f) | dir;
}

// SET; returns the data fd (-1 for none).
Result<int> set_state(SimDevice& dev, State s) {
  uapi::MigState m{static_cast<std::uint32_t>(s), 12345};
  auto r = call(dev, fl(uapi::Feature::kMigDeviceState, uapi::kFeatureSet), m);
  EXPECT_EQ(m.device_state, static_cast<std::uint32_t>(s));  // the requested value comes back
  if (!r) {
    EXPECT_EQ(m.data_fd, -1);
    return std::unexpected(r.error());
  }
  return m.data_fd;
}

State get_state(SimDevice& dev) {
  uapi::MigState m{99, 5};
  EXPECT_TRUE(call(dev, fl(uapi::Feature::kMigDeviceState, uapi::kFeatureGet), m));
  EXPECT_EQ(m.data_fd, -1);
  return static_cast<State>(m.device_state);
}

std::uint64_t data_size(SimDevice& dev) {
  uapi::MigDataSize d{};
  EXPECT_TRUE(call(dev, fl(uapi::Feature::kMigDataSize, uapi::kFeatureGet), d));
  return d.stop_copy_length;
}

std::vector<std::byte> read_all(SimDevice& dev, SessionId id, std::size_t chunk = 1000) {
  std::vector<std::byte> out;
  std::vector<std::byte> buf(chunk);
  for (;;) {
    auto n = dev.read(id, buf, false);
    EXPECT_TRUE(n) << n.error().describe();
    if (!n || *n == 0) return out;
    out.insert(out.end(), buf.begin(), buf.begin() + *n);
  }
}

std::vector<std::byte> rendered(const Profile& p, const Image& img) {
  std::vector<std::byte> out(stream_length(p, img));
  render_stream(p, img, 0, out);
  return out;
}

void write_all(SimDevice& dev, SessionId id, std::span<const std::byte> s, std::size_t chunk) {
  for (std::size_t pos = 0; pos < s.size(); pos += chunk) {
    auto n = dev.write(id, s.subspan(pos, std::min(chunk, s.size() - pos)));
    ASSERT_TRUE(n) << n.error().describe();
  }
}

SimOptions small(std::uint64_t seed = 1) {
  return {.state_size = 3000, .seed = seed};
}

int err(const Result<>& r) {
  return r ? 0 : r.error().code;
}
template <class T>
int err(const Result<T>& r) {
  return r ? 0 : r.error().code;
}

// --- the state machine ------------------------------------------------------------------------

// Every (cur, target) pair against vfio::next_arc/transition_path, for each profile's flags.
TEST(SimDeviceStates, EveryPairFollowsTheKernelWalk) {
  for (const Profile& p : all_profiles()) {
    for (State cur : kAllStates) {
      if (cur == State::kError || !state_supported(cur, p.mig_flags)) continue;
      for (State target : kAllStates) {
        SCOPED_TRACE(std::string(p.name) + " " + std::string(uapi::state_short_name(cur)) + " -> " +
                     std::string(uapi::state_short_name(target)));
        SimDevice dev(p, small());
        if (cur != State::kRunning) {
          auto fd = set_state(dev, cur);
          ASSERT_TRUE(fd);
          if (cur == State::kResuming) {  // give RS->S something valid to consume
            const auto s = rendered(p, Image{77, 500});
            write_all(dev, *fd, s, 64);
          }
        }
        ASSERT_EQ(get_state(dev), cur);
        const auto path = transition_path(cur, target, p.mig_flags);
        auto fd = set_state(dev, target);
        if (cur == target) {
          ASSERT_TRUE(fd);
          EXPECT_EQ(*fd, -1);
          EXPECT_EQ(get_state(dev), cur);
        } else if (path.empty()) {
          EXPECT_EQ(err(fd), EINVAL);
          EXPECT_EQ(get_state(dev), cur);  // refused: unchanged
        } else {
          ASSERT_TRUE(fd) << fd.error().describe();
          EXPECT_EQ(get_state(dev), target);
          const State before_last = path.size() > 1 ? path[path.size() - 2] : cur;
          const auto effect = arc_effect(before_last, target);
          const bool opens = effect == ArcEffect::kOpensSave || effect == ArcEffect::kOpensResume;
          EXPECT_EQ(*fd >= 0, opens);
          if (cur == State::kResuming) {
            EXPECT_EQ(dev.image(), (Image{77, 500}));
          }
        }
      }
    }
  }
}

TEST(SimDeviceStates, UnsupportedStatesAndErrorAreRefused) {
  SimDevice dev(*find_profile("stopcopy"), small());
  for (State s : {State::kRunningP2p, State::kPreCopy, State::kPreCopyP2p, State::kError}) {
    EXPECT_EQ(err(set_state(dev, s)), EINVAL);
    EXPECT_EQ(get_state(dev), State::kRunning);
  }
  uapi::MigState m{42, -1};
  EXPECT_EQ(err(call(dev, fl(uapi::Feature::kMigDeviceState, uapi::kFeatureSet), m)), EINVAL);
  EXPECT_EQ(m.device_state, 42u);
  EXPECT_EQ(m.data_fd, -1);
}

TEST(SimDeviceStates, StopCopyToPreCopyIsRefused) {
  SimDevice dev(*find_profile("plain"), small());
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  EXPECT_EQ(err(set_state(dev, State::kPreCopy)), EINVAL);
  EXPECT_EQ(err(set_state(dev, State::kPreCopyP2p)), EINVAL);
  EXPECT_EQ(get_state(dev), State::kStopCopy);
}

// Linux 6.12 never returns from SC->PC or SC->PCP on a PRE_COPY device; the hang mode blocks
// like it and counts the arc, so that tests can prove a command never sends it.
TEST(SimDeviceStates, HangModeBlocksOnStopCopyToPreCopyUntilReleased) {
  SimOptions options = small();
  options.hang_stop_copy_to_precopy = true;
  SimDevice dev(*find_profile("mtty"), options);
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  std::atomic<int> code = -1;
  std::thread caller([&] { code = err(set_state(dev, State::kPreCopy)); });
  ASSERT_TRUE(testing::eventually([&] { return dev.hung_arcs() == 1; }));
  EXPECT_EQ(code, -1) << "returned before it was released";
  EXPECT_EQ(get_state(dev), State::kStopCopy);  // other calls go on meanwhile
  dev.release_hangs();
  caller.join();
  EXPECT_EQ(code, EINVAL);
  // Released: later ones return at once, and are still counted.
  EXPECT_EQ(err(set_state(dev, State::kPreCopyP2p)), EINVAL);
  EXPECT_EQ(dev.hung_arcs(), 2u);
  EXPECT_EQ(get_state(dev), State::kStopCopy);
}

TEST(SimDeviceStates, HangModeOnlyHangsTheArcLinuxHangsOn) {
  SimOptions options = small();
  options.hang_stop_copy_to_precopy = true;
  SimDevice mtty(*find_profile("mtty"), options);
  // PRE_COPY from elsewhere, and every other arc from STOP_COPY, are walked as usual.
  ASSERT_TRUE(set_state(mtty, State::kPreCopy));
  ASSERT_TRUE(set_state(mtty, State::kStopCopy));
  ASSERT_TRUE(set_state(mtty, State::kRunning));
  EXPECT_EQ(mtty.hung_arcs(), 0u);
  // Linux refuses a target the device lacks before its walk: no hang without PRE_COPY.
  SimDevice p2p(*find_profile("p2p"), options);
  ASSERT_TRUE(set_state(p2p, State::kStopCopy));
  EXPECT_EQ(err(set_state(p2p, State::kPreCopy)), EINVAL);
  EXPECT_EQ(p2p.hung_arcs(), 0u);
}

// --- the feature header -------------------------------------------------------------------------

Result<> raw(SimDevice& dev, std::uint32_t argsz, std::uint32_t flags, std::size_t buf_size = 64) {
  std::vector<std::byte> buf(buf_size);
  uapi::FeatureHeader h{argsz, flags};
  std::memcpy(buf.data(), &h, std::min(sizeof(h), buf_size));
  return dev.feature(buf, kOpener);
}

TEST(SimDeviceFeature, HeaderValidationOrderAndErrnos) {
  SimDevice dev(*find_profile("stopcopy"), small());
  const auto mig = static_cast<std::uint32_t>(uapi::Feature::kMigration);
  const auto st = static_cast<std::uint32_t>(uapi::Feature::kMigDeviceState);
  const auto get = uapi::kFeatureGet, set = uapi::kFeatureSet, probe = uapi::kFeatureProbe;
  EXPECT_EQ(err(raw(dev, 16, mig | get, 4)), EFAULT);            // header unreadable
  EXPECT_EQ(err(raw(dev, 4, mig | get)), EINVAL);                // argsz < 8
  EXPECT_EQ(err(raw(dev, 65, mig | get)), EFAULT);               // beyond the readable buffer
  EXPECT_EQ(err(raw(dev, 16, mig | get | (1u << 19))), EINVAL);  // unknown flag bit
  EXPECT_EQ(err(raw(dev, 16, st | get | set)), EINVAL);          // GET|SET without PROBE
  EXPECT_EQ(err(raw(dev, 16, st | get | set | probe)), 0);       // ... fine with PROBE
  EXPECT_EQ(err(raw(dev, 16, 3 | get)), ENOTTY);                 // unknown feature
  EXPECT_EQ(err(raw(dev, 16, 0 | get)), ENOTTY);
  EXPECT_EQ(err(raw(dev, 40, 6 | set)), ENOTTY);  // DMA logging unsupported
  EXPECT_EQ(err(raw(dev, 16, 8 | get | probe)), ENOTTY);
  EXPECT_EQ(err(raw(dev, 16, mig | set)), EINVAL);          // unsupported direction
  EXPECT_EQ(err(raw(dev, 16, mig | set | probe)), EINVAL);  // ... even when probing
  EXPECT_EQ(err(raw(dev, 8, mig | get | probe)), 0);        // PROBE needs no payload
  EXPECT_EQ(err(raw(dev, 8, mig | probe)), 0);
  EXPECT_EQ(err(raw(dev, 16, mig)), EINVAL);        // neither GET nor SET
  EXPECT_EQ(err(raw(dev, 15, mig | get)), EINVAL);  // short payload
  EXPECT_EQ(err(raw(dev, 12, st | set)), EINVAL);
  EXPECT_EQ(err(raw(dev, 12, 9 | get)), EINVAL);
  EXPECT_EQ(get_state(dev), State::kRunning);
}

TEST(SimDeviceFeature, MigrationFlagsPerProfile) {
  for (const Profile& p : all_profiles()) {
    SimDevice dev(p, small());
    uapi::MigrationFlags f{0};
    ASSERT_TRUE(call(dev, fl(uapi::Feature::kMigration, uapi::kFeatureGet), f));
    EXPECT_EQ(f.flags, p.mig_flags) << p.name;
    EXPECT_TRUE(f.flags & uapi::kMigrationStopCopy);
  }
  EXPECT_EQ(find_profile("mtty")->mig_flags, 7u);
  EXPECT_EQ(find_profile("mlx5")->mig_flags, 7u);
  EXPECT_EQ(find_profile("stopcopy")->mig_flags, 1u);
  EXPECT_EQ(find_profile("p2p")->mig_flags, 3u);
  EXPECT_EQ(find_profile("plain")->mig_flags, 7u);
}

TEST(SimDeviceFeature, MigDataSize) {
  const Profile& p = *find_profile("plain");
  SimDevice dev(p, small());
  EXPECT_EQ(data_size(dev), dev.stream_size());
  EXPECT_EQ(dev.stream_size(), stream_length(p, dev.image()));
  auto fd = set_state(dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  std::vector<std::byte> buf(100);
  ASSERT_EQ(*dev.read(*fd, buf, false), 100u);
  EXPECT_EQ(data_size(dev), dev.stream_size() - 100);
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  EXPECT_EQ(data_size(dev), dev.stream_size() - 100);
  read_all(dev, *fd);
  EXPECT_EQ(data_size(dev), 0u);
  ASSERT_TRUE(set_state(dev, State::kStop));
  EXPECT_EQ(data_size(dev), dev.stream_size());
}

// --- saving -------------------------------------------------------------------------------------

TEST(SimDeviceSave, StreamReadToEofEqualsRenderingAndEofStays) {
  for (const Profile& p : all_profiles()) {
    SimDevice dev(p, small(5));
    auto fd = set_state(dev, State::kStopCopy);
    ASSERT_TRUE(fd);
    ASSERT_GE(*fd, 0);
    EXPECT_EQ(read_all(dev, *fd, 333), rendered(p, dev.image())) << p.name;
    std::vector<std::byte> buf(10);
    EXPECT_EQ(*dev.read(*fd, buf, false), 0u);
    EXPECT_EQ(*dev.read(*fd, buf, false), 0u);
  }
}

TEST(SimDeviceSave, DefaultSizes) {
  EXPECT_EQ(SimDevice(*find_profile("mtty"), {}).stream_size(), 96u);
  EXPECT_EQ(SimDevice(*find_profile("mlx5"), {}).image().size, 256ull << 20);
  EXPECT_EQ(SimDevice(*find_profile("stopcopy"), {}).image().size, 64ull << 20);
  EXPECT_EQ(SimDevice(*find_profile("p2p"), {}).image().size, 64ull << 20);
}

TEST(SimDeviceSave, EndedSessionIsStaleAndReleasedIsUnknown) {
  SimDevice dev(*find_profile("p2p"), small());
  auto fd = set_state(dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(set_state(dev, State::kStop));
  std::vector<std::byte> buf(10);
  EXPECT_EQ(err(dev.read(*fd, buf, false)), ENODEV);
  dev.release(*fd);
  EXPECT_EQ(err(dev.read(*fd, buf, false)), EBADF);
  EXPECT_EQ(err(dev.read(999, buf, false)), EBADF);
}

TEST(SimDeviceSave, ClosingTheSaveFdKeepsTheState) {
  SimDevice dev(*find_profile("p2p"), small());
  auto fd = set_state(dev, State::kStopCopy);
  ASSERT_TRUE(fd);
  dev.release(*fd);
  EXPECT_EQ(get_state(dev), State::kStopCopy);
  EXPECT_TRUE(set_state(dev, State::kRunning));
}

// As the kernel's O_RDONLY save and O_WRONLY resume files: the VFS answers EBADF.
TEST(SimDeviceSave, WrongDirectionIsEbadf) {
  SimDevice dev(*find_profile("plain"), small());
  auto save = set_state(dev, State::kStopCopy);
  ASSERT_TRUE(save);
  const std::byte b[4] = {};
  EXPECT_EQ(err(dev.write(*save, b)), EBADF);
  ASSERT_TRUE(set_state(dev, State::kStop));
  auto resume = set_state(dev, State::kResuming);
  ASSERT_TRUE(resume);
  std::vector<std::byte> buf(4);
  EXPECT_EQ(err(dev.read(*resume, buf, false)), EBADF);
}

TEST(SimDeviceSave, SessionSnapshotsTheImage) {
  SimDevice dev(*find_profile("plain"), small());
  const Image before = dev.image();
  auto fd = set_state(dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  EXPECT_TRUE(dev.mutate());  // the guest keeps running in PRE_COPY
  EXPECT_NE(dev.image(), before);
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  EXPECT_EQ(read_all(dev, *fd), rendered(dev.profile(), before));
}

TEST(SimDeviceSave, MutateOnlyWhileRunning) {
  SimDevice dev(*find_profile("p2p"), small());
  const Image a = dev.image();
  EXPECT_TRUE(dev.mutate());
  EXPECT_EQ(dev.image(), mutated(a));
  ASSERT_TRUE(set_state(dev, State::kStop));
  EXPECT_FALSE(dev.mutate());
  EXPECT_EQ(dev.image(), mutated(a));
  dev.set_image(Image{9, 9});
  EXPECT_EQ(dev.image(), (Image{9, 9}));
}

// --- precopy ------------------------------------------------------------------------------------

TEST(SimDevicePrecopy, TemporaryEofIsEnomsgOrZeroForMtty) {
  for (auto name : {"plain", "mlx5", "mtty"}) {
    const Profile& p = *find_profile(name);
    SimDevice dev(p, small());
    auto fd = set_state(dev, State::kPreCopy);
    ASSERT_TRUE(fd);
    std::vector<std::byte> all(dev.stream_size() + 10);
    auto n = dev.read(*fd, all, false);
    ASSERT_TRUE(n);
    const std::uint64_t precopy_bytes =
        p.precopy_header_only ? stream_header_size(p) : dev.stream_size();
    EXPECT_EQ(*n, precopy_bytes) << name;
    for (int i = 0; i < 2; ++i) {
      auto eof = dev.read(*fd, all, false);
      if (p.precopy_eof_returns_zero) {
        ASSERT_TRUE(eof) << name;
        EXPECT_EQ(*eof, 0u);
      } else {
        EXPECT_EQ(err(eof), ENOMSG) << name;
      }
    }
    // STOP_COPY continues the same session: what pre-copy held back, then a final 0.
    auto sc = set_state(dev, State::kStopCopy);
    ASSERT_TRUE(sc);
    EXPECT_EQ(*sc, -1);
    EXPECT_EQ(read_all(dev, *fd).size(), dev.stream_size() - precopy_bytes) << name;
  }
}

TEST(SimDevicePrecopy, MttyOffersOnlyItsHeaderInPrecopy) {
  // As samples/vfio-mdev/mtty.c: PRE_COPY fills the 24-byte header, the move to STOP_COPY
  // appends the port registers to the same file, and reads carry on where they stopped.
  const Profile& p = *find_profile("mtty");
  ASSERT_TRUE(p.precopy_header_only);
  for (const bool read_header_first : {true, false}) {
    SimDevice dev(p, {});
    const auto whole = rendered(p, dev.image());
    ASSERT_EQ(whole.size(), 96u);
    auto fd = set_state(dev, State::kPreCopy);
    ASSERT_TRUE(fd);
    uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
    ASSERT_TRUE(dev.precopy_info(*fd, info));
    EXPECT_EQ(info.initial_bytes, 24u);
    EXPECT_EQ(info.dirty_bytes, 0u);
    std::vector<std::byte> got;
    if (read_header_first) {
      got = read_all(dev, *fd, 5);  // ends at the temporary end: 0, as mtty
      EXPECT_EQ(got, std::vector(whole.begin(), whole.begin() + 24));
      ASSERT_TRUE(dev.precopy_info(*fd, info));
      EXPECT_EQ(info.initial_bytes, 0u);
      EXPECT_EQ(info.dirty_bytes, 0u);
    }
    EXPECT_EQ(data_size(dev), 96u - got.size());  // the session's rest, body included
    auto sc = set_state(dev, State::kStopCopy);
    ASSERT_TRUE(sc);
    EXPECT_EQ(*sc, -1);  // the same file goes on
    auto rest = read_all(dev, *fd);
    EXPECT_EQ(rest.size(), read_header_first ? 72u : 96u);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, whole);
  }
  // Other profiles offer the whole stream in pre-copy.
  SimDevice plain(*find_profile("plain"), small());
  auto fd = set_state(plain, State::kPreCopy);
  ASSERT_TRUE(fd);
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  ASSERT_TRUE(plain.precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, plain.stream_size());
}

TEST(SimDevicePrecopy, MttyWithGuestWritesSendsEverythingAfterTheHeaderInStopCopy) {
  const Profile& p = *find_profile("mtty");
  SimOptions writes;
  writes.dirty_per_read = 10;
  SimDevice src(p, writes);
  auto fd = set_state(src, State::kPreCopy);
  ASSERT_TRUE(fd);
  auto pre = read_all(src, *fd);
  EXPECT_EQ(pre.size(), kPreambleSize + 24);  // preamble and header; no record before the body
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  ASSERT_TRUE(src.precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, 0u);
  EXPECT_EQ(info.dirty_bytes, 0u);  // the records wait behind the body
  ASSERT_TRUE(set_state(src, State::kStopCopy));
  auto rest = read_all(src, *fd);
  pre.insert(pre.end(), rest.begin(), rest.end());
  ASSERT_GT(src.image().written, 0u);

  SimDevice dst(p, {});
  auto in = set_state(dst, State::kResuming);
  ASSERT_TRUE(in);
  write_all(dst, *in, pre, 7);
  ASSERT_TRUE(set_state(dst, State::kStop));
  EXPECT_EQ(dst.image(), src.image());
}

TEST(SimDevicePrecopy, StopCopyContinuesFromThePrecopyOffset) {
  const Profile& p = *find_profile("plain");
  SimDevice dev(p, small());
  auto fd = set_state(dev, State::kPreCopyP2p);  // through RUNNING_P2P
  ASSERT_TRUE(fd);
  std::vector<std::byte> head(777);
  ASSERT_EQ(*dev.read(*fd, head, false), 777u);
  ASSERT_TRUE(set_state(dev, State::kPreCopy));  // PCP -> PC, same session
  std::vector<std::byte> more(100);
  ASSERT_EQ(*dev.read(*fd, more, false), 100u);
  head.insert(head.end(), more.begin(), more.end());
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  auto rest = read_all(dev, *fd);
  head.insert(head.end(), rest.begin(), rest.end());
  EXPECT_EQ(head, rendered(p, dev.image()));
}

TEST(SimDevicePrecopy, PrecopyInfoRules) {
  const Profile& p = *find_profile("plain");
  SimDevice dev(p, small());
  auto fd = set_state(dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  uapi::PrecopyInfo info{sizeof(info), 0, 0, 0};
  ASSERT_TRUE(dev.precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, dev.stream_size());
  EXPECT_EQ(info.dirty_bytes, 0u);
  std::vector<std::byte> buf(1000);
  ASSERT_TRUE(dev.read(*fd, buf, false));
  ASSERT_TRUE(dev.precopy_info(*fd, info));
  EXPECT_EQ(info.initial_bytes, dev.stream_size() - 1000);
  info.argsz = 23;
  EXPECT_EQ(err(dev.precopy_info(*fd, info)), EINVAL);
  info.argsz = sizeof(info);
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  EXPECT_EQ(err(dev.precopy_info(*fd, info)), EINVAL);  // outside PC/PCP
  ASSERT_TRUE(set_state(dev, State::kStop));
  EXPECT_EQ(err(dev.precopy_info(*fd, info)), ENODEV);  // stale
  auto resume = set_state(dev, State::kResuming);
  ASSERT_TRUE(resume);
  EXPECT_EQ(err(dev.precopy_info(*resume, info)), ENOTTY);  // resume files have no ioctl
}

TEST(SimDevicePrecopy, PrecopyEndsWithRunning) {
  SimDevice dev(*find_profile("mtty"), small());
  auto fd = set_state(dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(set_state(dev, State::kRunning));
  std::vector<std::byte> buf(8);
  EXPECT_EQ(err(dev.read(*fd, buf, false)), ENODEV);
}

TEST(SimDevicePrecopy, Mlx5NonblockFindsNoDataFirst) {
  SimDevice dev(*find_profile("mlx5"), small());
  auto fd = set_state(dev, State::kPreCopy);
  ASSERT_TRUE(fd);
  std::vector<std::byte> buf(64);
  EXPECT_EQ(err(dev.read(*fd, buf, true)), EAGAIN);
  EXPECT_EQ(*dev.read(*fd, buf, true), 64u);
  ASSERT_TRUE(set_state(dev, State::kStopCopy));
  EXPECT_EQ(err(dev.read(*fd, buf, true)), EAGAIN);
  EXPECT_EQ(*dev.read(*fd, buf, true), 64u);
  // Blocking readers never see it.
  SimDevice other(*find_profile("mlx5"), small());
  auto fd2 = set_state(other, State::kStopCopy);
  ASSERT_TRUE(fd2);
  EXPECT_EQ(*other.read(*fd2, buf, false), 64u);
  // Profiles without the quirk never return EAGAIN.
  SimDevice plain(*find_profile("plain"), small());
  auto fd3 = set_state(plain, State::kStopCopy);
  ASSERT_TRUE(fd3);
  EXPECT_EQ(*plain.read(*fd3, buf, true), 64u);
}

// --- resuming -----------------------------------------------------------------------------------

TEST(SimDeviceResume, SavedStreamResumesToTheSameImage) {
  for (const Profile& p : all_profiles()) {
    for (std::size_t chunk : {1000, 7}) {
      SimDevice src(p, small(3)), dst(p, small(4));
      ASSERT_TRUE(src.mutate());
      auto out = set_state(src, State::kStopCopy);
      ASSERT_TRUE(out);
      const auto stream = read_all(src, *out);
      auto in = set_state(dst, State::kResuming);
      ASSERT_TRUE(in);
      ASSERT_GE(*in, 0);
      write_all(dst, *in, stream, chunk);
      auto r = set_state(dst, State::kRunning);  // RS -> S -> ... -> R
      ASSERT_TRUE(r) << p.name << ": " << r.error().describe();
      EXPECT_EQ(dst.image(), src.image()) << p.name;
      const std::byte b[1] = {};
      EXPECT_EQ(err(dst.write(*in, b)), ENODEV);  // consumed
    }
  }
}

TEST(SimDeviceResume, TruncatedStreamFailsAndCanBeCompleted) {
  for (const Profile& p : all_profiles()) {
    SimDevice dst(p, small(4));
    const Image src{8, 2000};
    const auto stream = rendered(p, src);
    auto in = set_state(dst, State::kResuming);
    ASSERT_TRUE(in);
    write_all(dst, *in, std::span(stream).first(stream.size() - 1), 512);
    EXPECT_EQ(err(set_state(dst, State::kStop)), EINVAL) << p.name;
    EXPECT_EQ(get_state(dst), State::kResuming);
    EXPECT_EQ(err(set_state(dst, State::kRunning)), EINVAL);
    EXPECT_EQ(get_state(dst), State::kResuming);
    EXPECT_NE(dst.image(), src);
    write_all(dst, *in, std::span(stream).last(1), 1);
    EXPECT_TRUE(set_state(dst, State::kStop));
    EXPECT_EQ(dst.image(), src);
  }
}

// restore(): the state a snapshot was taken in, whatever came between: a resume half written
// and refused, its session stale, the config space overwritten.
TEST(SimDeviceResume, RestoreReturnsToTheSnapshot) {
  const Profile& p = *find_profile("mlx5");
  SimDevice dev(p, small(3));
  const Image image = dev.image();
  const std::vector<std::byte> config = dev.config();
  auto in = set_state(dev, State::kResuming);
  ASSERT_TRUE(in);
  auto stream = rendered(p, Image{8, 2000});
  stream[0] ^= std::byte{1};  // mlx5 refuses a bad header at write()
  EXPECT_FALSE(dev.write(*in, stream));
  const std::vector<std::byte> zeros(config.size());
  ASSERT_TRUE(dev.config_write(0, zeros));
  dev.set_image(Image{9, 100});

  dev.restore(image, config);
  EXPECT_EQ(dev.state(), State::kRunning);
  EXPECT_EQ(dev.image(), image);
  EXPECT_EQ(dev.config(), config);
  EXPECT_EQ(dev.take_refusal(EOPNOTSUPP), std::nullopt);  // write() refused with it
  EXPECT_EQ(err(dev.write(*in, stream)), ENODEV);         // the session is stale, as after a reset
}

TEST(SimDeviceResume, EmptyResumeFails) {
  SimDevice dst(*find_profile("stopcopy"), small());
  ASSERT_TRUE(set_state(dst, State::kResuming));
  EXPECT_EQ(err(set_state(dst, State::kStop)), EINVAL);
  EXPECT_EQ(get_state(dst), State::kResuming);
}

TEST(SimDeviceResume, CorruptedBodyFailsAtResumingToStop) {
  for (const Profile& p : all_profiles()) {
    SimDevice dst(p, small(4));
    auto stream = rendered(p, Image{8, 2000});
    stream[stream.size() - 10] ^= std::byte{0x80};
    auto in = set_state(dst, State::kResuming);
    ASSERT_TRUE(in);
    write_all(dst, *in, stream, 300);  // body corruption never fails write()
    EXPECT_EQ(err(set_state(dst, State::kStop)), EINVAL) << p.name;
    EXPECT_EQ(get_state(dst), State::kResuming);
    EXPECT_EQ(dst.image().seed, 4u);
  }
}

TEST(SimDeviceResume, BadHeaderErrnoPerProfile) {
  for (auto name : {"mtty", "mlx5", "plain"}) {
    const Profile& p = *find_profile(name);
    SimDevice dst(p, small());
    auto stream = rendered(p, Image{8, 100});
    stream[p.format == StreamFormat::kMlx5Records ? 16 : 0] ^= std::byte{1};  // magic
    auto in = set_state(dst, State::kResuming);
    ASSERT_TRUE(in);
    auto w = dst.write(*in, stream);
    if (p.bad_header_errno) {
      EXPECT_EQ(err(w), p.bad_header_errno) << name;
      // mlx5: every later write fails ENODEV; mtty keeps reporting the header.
      EXPECT_EQ(err(dst.write(*in, std::span(stream).first(1))),
                p.sticky_write_error ? ENODEV : p.bad_header_errno);
    } else {
      EXPECT_TRUE(w) << name;
    }
    EXPECT_EQ(err(set_state(dst, State::kStop)), EINVAL);
    EXPECT_EQ(get_state(dst), State::kResuming);
  }
  EXPECT_EQ(find_profile("mtty")->bad_header_errno, EFAULT);
}

TEST(SimDeviceResume, WritingBeyondTheStreamIsEnomem) {
  for (const Profile& p : all_profiles()) {
    SimDevice dst(p, small());
    auto stream = rendered(p, Image{8, 100});
    auto in = set_state(dst, State::kResuming);
    ASSERT_TRUE(in);
    ASSERT_TRUE(dst.write(*in, stream));
    const std::byte extra[1] = {};
    EXPECT_EQ(err(dst.write(*in, extra)), ENOMEM) << p.name;
    if (p.sticky_write_error) {
      EXPECT_EQ(err(dst.write(*in, std::span(extra).first(0))), ENODEV);
    }
    EXPECT_TRUE(set_state(dst, State::kStop));  // what was written is still whole
  }
}

TEST(SimDeviceResume, StreamFromAnotherProfileIsRefused) {
  SimDevice dst(*find_profile("p2p"), small());
  auto in = set_state(dst, State::kResuming);
  ASSERT_TRUE(in);
  write_all(dst, *in, rendered(*find_profile("stopcopy"), Image{1, 100}), 50);
  EXPECT_EQ(err(set_state(dst, State::kStop)), EINVAL);
}

TEST(SimDeviceResume, ClosedResumeFdKeepsItsData) {
  const Profile& p = *find_profile("mtty");
  SimDevice dst(p, small());
  auto in = set_state(dst, State::kResuming);
  ASSERT_TRUE(in);
  write_all(dst, *in, rendered(p, Image{12, 72}), 10);
  dst.release(*in);
  EXPECT_TRUE(set_state(dst, State::kStop));
  EXPECT_EQ(dst.image(), (Image{12, 72}));
}

TEST(SimDeviceThreads, ConcurrentControlAndDataCalls) {
  const Profile& p = *find_profile("plain");
  SimDevice dev(p, {.state_size = 1 << 20});
  std::atomic<bool> done{false};
  std::thread observer([&] {
    while (!done) {
      (void)get_state(dev);
      (void)data_size(dev);
      (void)dev.mutate();
      (void)dev.image();
    }
  });
  for (int i = 0; i < 20; ++i) {
    auto fd = set_state(dev, State::kPreCopy);
    ASSERT_TRUE(fd);
    std::vector<std::byte> buf(64 << 10);
    while (dev.read(*fd, buf, false)) {
    }
    ASSERT_TRUE(set_state(dev, State::kStopCopy));
    const auto rest = read_all(dev, *fd);
    ASSERT_TRUE(set_state(dev, State::kRunning));
    dev.release(*fd);
  }
  done = true;
  observer.join();
}

// --- reset, config ------------------------------------------------------------------------------

TEST(SimDeviceReset, ResetKillsOldFds) {
  for (const Profile& p : all_profiles()) {
    SimDevice dev(p, small());
    auto save = set_state(dev, State::kStopCopy);
    ASSERT_TRUE(save);
    ASSERT_TRUE(dev.reset());
    EXPECT_EQ(get_state(dev), State::kRunning);
    std::vector<std::byte> buf(8);
    EXPECT_EQ(err(dev.read(*save, buf, false)), ENODEV) << p.name;
    ASSERT_TRUE(set_state(dev, State::kStop));
    auto resume = set_state(dev, State::kResuming);
    ASSERT_TRUE(resume);
    ASSERT_TRUE(dev.reset());
    EXPECT_EQ(err(dev.write(*resume, buf)), ENODEV);
    EXPECT_EQ(get_state(dev), State::kRunning);
    // New sessions work after a reset and get new ids.
    auto again = set_state(dev, State::kStopCopy);
    ASSERT_TRUE(again);
    EXPECT_GT(*again, *resume);
    EXPECT_EQ(read_all(dev, *again), rendered(p, dev.image()));
  }
}

TEST(SimDeviceConfig, LooksLikePciAndIsBounded) {
  SimDevice dev(*find_profile("plain"), {.state_size = {}, .seed = 3, .config_size = 256});
  const auto cfg = dev.config();
  ASSERT_EQ(cfg.size(), 256u);
  EXPECT_EQ(cfg[0], std::byte{0xf4});
  EXPECT_EQ(cfg[1], std::byte{0x1a});
  EXPECT_EQ(SimDevice(*find_profile("plain"), {.state_size = {}, .seed = 3}).config(), cfg);
  EXPECT_NE(SimDevice(*find_profile("plain"), {.state_size = {}, .seed = 4}).config(), cfg);

  std::vector<std::byte> buf(16);
  EXPECT_EQ(*dev.config_read(250, buf), 6u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 6, cfg.begin() + 250));
  EXPECT_EQ(*dev.config_read(256, buf), 0u);
  EXPECT_EQ(err(dev.config_read(257, buf)), EINVAL);
  const std::byte w[2] = {std::byte{0x06}, std::byte{0x01}};
  EXPECT_EQ(*dev.config_write(4, w), 2u);
  ASSERT_EQ(*dev.config_read(4, std::span(buf).first(2)), 2u);
  EXPECT_EQ(buf[0], std::byte{0x06});
  EXPECT_EQ(dev.config()[5], std::byte{0x01});
  EXPECT_EQ(*dev.config_write(255, w), 1u);
  EXPECT_EQ(err(dev.config_write(300, w)), EINVAL);
}

}  // namespace
}  // namespace vfio::sim
