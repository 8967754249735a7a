#include "bench/device_bench.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <sys/utsname.h>

#include <bit>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_support.h"
#include "bench/migrate_bench.h"
#include "bench/transfer.h"
#include "core/feature.h"
#include "core/session.h"

namespace vfio::bench {
namespace {

constexpr std::uint64_t kSmallest = 16;
constexpr std::uint64_t kSweepFloor = 4096;
constexpr std::uint64_t kLargest = 64ULL << 20;
constexpr std::size_t kMinPoints = 5;

// The buffer the state is measured with: the engine's default.
constexpr std::uint64_t kMeasureBuffer = 1 << 20;

std::string kernel_release() {
  struct utsname u {};
  return ::uname(&u) == 0 ? u.release : "unknown";
}

// The device is RUNNING after every benchmark, or the benchmark is marked failed; a failure is
// kept for the exit code.
void check_after(benchmark::State& state, NamedDevice& dev) {
  if (auto ok = expect_running(*dev.watched, "after this benchmark"); !ok)
    state.SkipWithError(ok.error().describe().c_str());
  if (state.error_occurred()) dev.failed = true;
}

void save(benchmark::State& state, NamedDevice* dev, std::uint64_t buffer) {
  measure_save(state, *dev->watched, buffer);
  check_after(state, *dev);
}

// The device's own state, saved and loaded back into it.
void load(benchmark::State& state, NamedDevice* dev, std::uint64_t buffer) {
  MemoryChannel stream;
  if (auto r = record_stream(*dev->watched, buffer, stream); !r)
    state.SkipWithError(r.error().describe().c_str());
  else
    measure_load(state, *dev->watched, dev->opened.config_restore, stream, buffer);
  check_after(state, *dev);
}

// A view of the held, watched device for the migrate benchmark, which takes its devices as
// OpenedDevices it owns: CountingDevice forwards every call (its count is not used).
devices::OpenedDevice view(NamedDevice& d) {
  return devices::OpenedDevice{d.opened.mount, std::make_unique<CountingDevice>(*d.watched),
                               d.opened.model, d.opened.config_restore, nullptr};
}

// migrate/dev1/state:S/buffer:B: the first device migrated into the second, both RUNNING after.
void register_migrate_sweep(NamedDevice& src, NamedDevice& dst) {
  PairFactory open = [&src, &dst](ThreadPlacement) -> Result<MigratePair> {
    return MigratePair{view(src), view(dst)};
  };
  AfterMigrate after = [&src, &dst](benchmark::State& state) {
    check_after(state, src);
    check_after(state, dst);
  };
  for (auto buffer : device_buffers(src.state_bytes))
    register_migrate_benchmark(fmt::format("dev1/state:{}", src.state_bytes), open, buffer, after);
}

}  // namespace

Result<NamedDevice> open_named_device(std::string_view spec, std::size_t index) {
  auto arg = devices::parse_device_arg(spec);
  if (!arg) return std::unexpected(arg.error());
  auto opened = devices::open_device(*arg, index);
  if (!opened) return std::unexpected(opened.error());
  NamedDevice dev{*arg, std::move(*opened), nullptr, devices::driver_name(*arg)};
  dev.watched = std::make_unique<WatchedDevice>(*dev.opened.device);
  return dev;
}

Result<> measure_state(NamedDevice& dev) {
  SessionOptions o;
  o.migration.data_buffer_size = kMeasureBuffer;
  Session session(o);
  session.add_device(*dev.watched, "state size");
  NullChannel out;
  auto r = session.save(out);
  if (!r) return std::unexpected(r.error());
  dev.state_bytes = r->device_bytes;
  return session.resume_vm();
}

std::vector<std::uint64_t> device_buffers(std::uint64_t state_bytes) {
  const std::uint64_t top =
      std::clamp(std::bit_ceil(std::max<std::uint64_t>(state_bytes, 1)), kSmallest, kLargest);
  const std::uint64_t bottom =
      std::clamp(top >> (kMinPoints - 1), kSmallest, std::min(kSweepFloor, top));
  std::vector<std::uint64_t> out;
  for (std::uint64_t b = bottom; b <= top; b <<= 1) out.push_back(b);
  return out;
}

Result<> expect_running(Device& dev, std::string_view when) {
  auto s = query_device_state(dev);
  if (!s) {
    Error e = s.error();
    e.message = fmt::format("{}: cannot read its state {}: {}", dev.name(), when, e.message);
    return std::unexpected(std::move(e));
  }
  if (*s == uapi::State::kRunning) return {};
  return fail(
      EBUSY,
      fmt::format("{} is in {} {}, not RUNNING{}", dev.name(), uapi::state_name(*s), when,
                  when.starts_with("before") ? ": not measured (an earlier user left it there; "
                                               "vfio-mig save --reset-first brings it back)"
                                             : ""));
}

void register_device_benchmarks(std::vector<NamedDevice>& devices) {
  benchmark::AddCustomContext("kernel", kernel_release());
  for (std::size_t i = 0; i < devices.size(); ++i) {
    NamedDevice& d = devices[i];
    const std::string key = i == 0 ? "device" : fmt::format("device{}", i + 1);
    benchmark::AddCustomContext(key, d.arg.text);
    benchmark::AddCustomContext(key + "_driver", d.driver);
    benchmark::AddCustomContext(key + "_state_bytes", std::to_string(d.state_bytes));
    for (auto buffer : device_buffers(d.state_bytes)) {
      const auto suffix = fmt::format("dev{}/state:{}/buffer:{}", i + 1, d.state_bytes, buffer);
      benchmark::RegisterBenchmark(("save/" + suffix).c_str(), save, &d, buffer)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("load/" + suffix).c_str(), load, &d, buffer)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  if (devices.size() == 2) register_migrate_sweep(devices[0], devices[1]);
}

int run_watching_devices(std::span<WatchedDevice* const> devices, std::chrono::milliseconds limit,
                         const std::function<int()>& body) {
  int code = 0;
  const auto hang = run_watching(devices, limit, [&code, &body] { code = body(); });
  if (!hang) return code;
  fmt::print(stderr,
             "vfio_mig_bench: FAILED: {}: {} has not returned in {:g} s: stuck in the kernel (the "
             "kernel log may say why); the device is left as it is\n",
             hang->device->name(), hang->call.what, std::chrono::duration<double>(limit).count());
  std::fflush(stderr);
  std::_Exit(1);  // the body's thread is still inside the call, using `code` and the devices
}

}  // namespace vfio::bench
