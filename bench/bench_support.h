// Shared pieces of the benchmarks: a discarding channel, a call-counting device decorator,
// peak-RSS measurement, stopping on a signal, and simulated devices on each transport.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/channel.h"
#include "core/device.h"
#include "devices/device_spec.h"

namespace vfio::bench {

// Swallows everything written: the stream's destination when only the save side is measured.
class NullChannel final : public Channel {
 public:
  Result<std::size_t> write(std::span<const std::byte> data) override { return data.size(); }
  Result<std::size_t> read(std::span<std::byte>) override { return 0; }
  const std::string& name() const override { return name_; }

 private:
  std::string name_ = "null";
};

// Counts the data-path calls a transfer makes (each is one syscall on the kernel transports).
class CountingDevice final : public Device {
 public:
  explicit CountingDevice(Device& inner) : inner_(inner) {}
  std::uint64_t calls() const { return calls_; }

  Result<> feature(std::span<std::byte> arg) override { return ++calls_, inner_.feature(arg); }
  Result<> reset() override { return ++calls_, inner_.reset(); }
  Result<std::size_t> read(int fd, std::span<std::byte> buf) override {
    return ++calls_, inner_.read(fd, buf);
  }
  Result<std::size_t> write(int fd, std::span<const std::byte> buf) override {
    return ++calls_, inner_.write(fd, buf);
  }
  Result<> precopy_info(int fd, uapi::PrecopyInfo& info) override {
    return ++calls_, inner_.precopy_info(fd, info);
  }
  Result<> close(int fd) override { return ++calls_, inner_.close(fd); }
  Result<std::size_t> config_read(std::uint64_t off, std::span<std::byte> buf) override {
    return ++calls_, inner_.config_read(off, buf);
  }
  Result<std::size_t> config_write(std::uint64_t off, std::span<const std::byte> buf) override {
    return ++calls_, inner_.config_write(off, buf);
  }
  const std::string& name() const override { return inner_.name(); }

 private:
  Device& inner_;
  std::uint64_t calls_ = 0;
};

// Resets the kernel's peak-RSS mark for this process (Linux: /proc/self/clear_refs).
void reset_peak_rss();
// Peak resident set size since the last reset, in bytes (VmHWM).
std::uint64_t peak_rss();

// After stop_on_signals(), SIGINT and SIGTERM set stop_requested(): the measurements end the
// iteration under way and skip the rest, so that a device is left as the engine leaves it.
void stop_on_signals();
bool stop_requested();

// CPU time used so far by all of this process's threads (the FUSE servers of simulated devices
// included), and the CPUs this process may run on: what CPU-bound stages can share.
std::chrono::duration<double> process_cpu_time();
unsigned usable_cpus();

// A simulated device through the same spec parser the CLI uses, e.g. transport "direct"; over
// FUSE served on `server_cpu` (a mount of its own) unless that is -1.
Result<devices::OpenedDevice> make_device(std::string_view transport, std::string_view profile,
                                          std::uint64_t state_size, std::uint64_t seed,
                                          int server_cpu = -1);

}  // namespace vfio::bench
