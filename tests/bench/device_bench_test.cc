// vfio_mig_bench --device, run in process, on simulated mtty devices served over FUSE by this
// test and named by their paths, so that every call goes through KernelDevice as on /dev/vfio. The
// simulated mtty behaves as the real one on Linux 6.12 (keeps its state across opens, hangs on SET
// STOP_COPY->PRE_COPY, counting such arcs). Checked: the refusal of a device not RUNNING (exit 2,
// the state named, the device untouched), the JSON's context, the device RUNNING after, a failed
// benchmark failing the run; and in pieces, the buffer bounds and the watchdog naming a call that
// does not return.
#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench/device_bench.h"
#include "bench/program.h"
#include "core/cpu_pin.h"
#include "core/feature.h"
#include "simdev/direct_device.h"
#include "tests/core/stale_mtty.h"
#include "tests/forwarding_device.h"

namespace vfio::bench {
namespace {

namespace fs = std::filesystem;
using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using uapi::State;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Ran {
  int code = -1;
  std::string err;
};

// vfio_mig_bench in process: a FUSE-served device answers only the process that serves it.
Ran run_bench(std::vector<std::string> args) {
  args.insert(args.begin(), "vfio_mig_bench");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::testing::internal::CaptureStderr();
  Ran r;
  r.code = bench_main(static_cast<int>(args.size()), argv.data());
  r.err = ::testing::internal::GetCapturedStderr();
  return r;
}

std::string kernel_release() {
  struct utsname u {};
  return ::uname(&u) == 0 ? u.release : "";
}

class DeviceBench : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("vfio-mig-bench-test-{}", ::getpid());
    fs::create_directories(dir_);
    mount_.start();
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  testing::TestMount mount_;
};

TEST_F(DeviceBench, RefusesADeviceThatIsNotRunningAndLeavesItAlone) {
  for (State s : {State::kStop, State::kStopCopy, State::kResuming, State::kPreCopy}) {
    auto dev = mount_.serve_stale(s, 1, fmt::format("stale-{}", uapi::state_short_name(s)));
    const auto image = dev.model->image();
    auto r = run_bench({"--device=" + dev.path, "--benchmark_min_time=0"});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(fmt::format("is in {} before the benchmark, not RUNNING: not "
                                             "measured",
                                             uapi::state_name(s))));
    EXPECT_EQ(dev.model->state(), s);
    EXPECT_EQ(dev.model->image(), image);
    EXPECT_EQ(dev.model->hung_arcs(), 0u);
  }
}

TEST_F(DeviceBench, MeasuresADeviceNamesItInTheJsonAndLeavesItRunning) {
  auto dev = mount_.serve_stale(State::kRunning, 1, "mtty");
  const fs::path json = dir_ / "bench.json";
  auto r = run_bench({"--device=" + dev.path, "--benchmark_min_time=0",
                      "--benchmark_out=" + json.string(), "--benchmark_out_format=json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string doc = slurp(json);
  EXPECT_THAT(doc, HasSubstr(fmt::format("\"device\": \"{}\"", dev.path)));
  // A file on a mount is no sysfs device: its driver cannot be known.
  EXPECT_THAT(doc, HasSubstr("\"device_driver\": \"unknown\""));
  EXPECT_THAT(doc, HasSubstr("\"device_state_bytes\": \"96\""));
  EXPECT_THAT(doc, HasSubstr(fmt::format("\"kernel\": \"{}\"", kernel_release())));
  for (auto b : {16, 32, 64, 128}) {
    for (auto kind : {"save", "load"})
      EXPECT_THAT(doc, HasSubstr(fmt::format("\"{}/dev1/state:96/buffer:{}/real_time\"", kind, b)));
  }
  EXPECT_THAT(doc, HasSubstr("calls_per_MiB"));
  EXPECT_EQ(doc.find("error_occurred"), std::string::npos) << doc;
  EXPECT_EQ(dev.model->state(), State::kRunning);
  EXPECT_EQ(dev.model->hung_arcs(), 0u);
}

// Both swept, and the first migrated into the second (pre-copy auto: the simulated mtty offers
// PRE_COPY, and hangs on the STOP_COPY->PRE_COPY arc, which must never be sent).
TEST_F(DeviceBench, TwoDevicesAreBothMeasuredNamedAndMigrated) {
  auto a = mount_.serve_stale(State::kRunning, 1, "a");
  auto b = mount_.serve_stale(State::kRunning, 2, "b");
  const fs::path json = dir_ / "bench.json";
  auto r = run_bench({"--device=" + a.path, "--device", b.path, "--benchmark_min_time=0",
                      "--benchmark_filter=buffer:128", "--benchmark_out=" + json.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string doc = slurp(json);
  EXPECT_THAT(doc, HasSubstr(fmt::format("\"device2\": \"{}\"", b.path)));
  EXPECT_THAT(doc, HasSubstr("\"save/dev2/state:96/buffer:128/real_time\""));
  EXPECT_THAT(doc, HasSubstr("\"migrate/dev1/state:96/buffer:128/manual_time\""));
  EXPECT_THAT(doc, HasSubstr("of_ceiling"));
  // The stages' CPU time was measured: a bound above zero, and migrate's CPU against it.
  EXPECT_THAT(doc, ContainsRegex("\"cpu_bound_GiBps\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"cpu_of_stages\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"cpus\": [1-9]"));
  // The socket ceiling was measured pinned, in migrate's placement (two CPUs where the process
  // may use two) and on one CPU for comparison; each side's thread CPU time was counted.
  EXPECT_THAT(doc, ContainsRegex("\"socket_GiBps\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"socket_one_cpu_GiBps\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"of_socket_one_cpu\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"chain_GiBps\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex(allowed_cpus(2).empty() ? "\"pinned_cpus\": 0[.,\n]"
                                                         : "\"pinned_cpus\": 2[.,\n]"));
  EXPECT_THAT(doc, ContainsRegex("\"source_thread_GiBps\": [0-9.]*[1-9]"));
  EXPECT_THAT(doc, ContainsRegex("\"destination_thread_GiBps\": [0-9.]*[1-9]"));
  EXPECT_EQ(doc.find("error_occurred"), std::string::npos) << doc;
  EXPECT_EQ(a.model->state(), State::kRunning);
  EXPECT_EQ(b.model->state(), State::kRunning);
  EXPECT_EQ(b.model->image(), a.model->image());  // the last migration's
  EXPECT_EQ(a.model->hung_arcs() + b.model->hung_arcs(), 0u);
}

// A device that refuses every write (EIO): each load fails, the engine brings the device back to
// RUNNING, and the run exits 1 naming it; the saves still measure.
TEST_F(DeviceBench, AFailedBenchmarkFailsTheRun) {
  auto dev = mount_.serve_stale(State::kRunning, 1, "refuses-writes");
  mount_.set_fault(*dev.model, [](sim::FuseRequest req, std::size_t) {
    sim::FuseAnswer answer;
    if (req == sim::FuseRequest::kWrite) answer.error = EIO;
    return answer;
  });
  const fs::path json = dir_ / "bench.json";
  auto r = run_bench({"--device=" + dev.path, "--benchmark_min_time=0",
                      "--benchmark_filter=buffer:128", "--benchmark_out=" + json.string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(fmt::format("a benchmark on {} failed", dev.path)));
  const std::string doc = slurp(json);
  EXPECT_THAT(doc, HasSubstr("\"error_occurred\": true"));
  EXPECT_THAT(doc, HasSubstr("\"save/dev1/state:96/buffer:128/real_time\""));
  EXPECT_EQ(dev.model->state(), State::kRunning);
}

TEST_F(DeviceBench, UsageErrorsExit2BeforeTouchingADevice) {
  auto dev = mount_.serve_stale(State::kRunning, 1, "usage");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--device=" + dev.path, "--smoke"},
        {"--device=" + dev.path, "--device=" + dev.path, "--device=" + dev.path},
        {"--device=" + dev.path, "--call_timeout=soon"},
        {"--device=sim:nosuchprofile"}}) {
    auto r = run_bench(args);
    EXPECT_EQ(r.code, 2) << args.back() << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("vfio_mig_bench: "));
  }
  EXPECT_EQ(dev.model->state(), State::kRunning);
}

TEST(DeviceBenchPieces, BuffersAreBoundedByTheState) {
  EXPECT_THAT(device_buffers(96), ElementsAre(16, 32, 64, 128));
  EXPECT_THAT(device_buffers(0), ElementsAre(16));
  EXPECT_THAT(device_buffers(8192), ElementsAre(512, 1024, 2048, 4096, 8192));
  EXPECT_THAT(device_buffers(100 << 10), ElementsAre(4096, 8192, 16384, 32768, 65536, 131072));
  const auto big = device_buffers(1ULL << 30);
  ASSERT_EQ(big.size(), 15u);  // the simulated grid's: 4 KiB to 64 MiB
  EXPECT_EQ(big.front(), 4096u);
  EXPECT_EQ(big.back(), 64ULL << 20);
}

// A device whose data reads block: the watchdog names the read past its limit and ends the
// process with exit 1 (a death test). In process on the direct transport: a process killed
// while a request on its own FUSE mount is in flight can wait in the kernel for a while.
class SlowReads final : public vfio::testing::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    return ForwardingDevice::read(fd, buf);
  }
};

TEST(DeviceBenchPieces, TheWatchdogNamesACallThatDoesNotReturn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto stuck = [] {
    auto model = testing::linux_6_12_mtty(1);
    SlowReads dev(std::make_unique<sim::DirectDevice>(model, "slow-mtty"));
    sim::DirectDevice other(testing::linux_6_12_mtty(2), "idle-mtty");
    WatchedDevice idle(other), watched(dev);
    WatchedDevice* devices[] = {&idle, &watched};
    std::exit(run_watching_devices(devices, std::chrono::milliseconds(300), [&] {
      auto fd = request_device_state(watched, State::kStop);
      fd = request_device_state(watched, State::kStopCopy);
      std::array<std::byte, 64> buf;
      (void)watched.read(*fd, buf);
      return 0;  // not reached: the watchdog ends the process first
    }));
  };
  EXPECT_EXIT(stuck(), ::testing::ExitedWithCode(1),
              "vfio_mig_bench: FAILED: slow-mtty: read\\(data fd [0-9]+, 64 bytes\\) has not "
              "returned in 0.3 s: stuck in the kernel");
}

TEST(DeviceBenchPieces, ExpectRunningNamesTheDeviceAndItsState) {
  auto model = testing::linux_6_12_mtty(1);
  sim::DirectDevice dev(model, "mtty-under-test");
  EXPECT_TRUE(expect_running(dev, "after the run"));
  model->force_state(State::kStop);
  auto r = expect_running(dev, "after the run");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "mtty-under-test is in STOP after the run, not RUNNING");
}

}  // namespace
}  // namespace vfio::bench
