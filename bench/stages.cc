#include "bench/stages.h"

#include <fmt/format.h>

#include <thread>

#include "bench/bench_support.h"
#include "core/channel.h"
#include "core/cpu_pin.h"
#include "core/feature.h"

namespace vfio::bench {
namespace {

using Clock = std::chrono::steady_clock;
using uapi::State;

// To `target` through STOP (RESUMING and STOP_COPY are reached from STOP); returns its data fd.
Result<int> enter_through_stop(Device& dev, State target) {
  if (auto s = request_device_state(dev, State::kStop); !s) return s;
  return request_device_state(dev, target);
}

Result<> back_to_running(Device& dev, int fd) {
  (void)dev.close(fd);
  if (auto s = request_device_state(dev, State::kStop); !s) return std::unexpected(s.error());
  if (auto s = request_device_state(dev, State::kRunning); !s) return std::unexpected(s.error());
  return {};
}

}  // namespace

Result<StagePass> read_stage(Device& dev, std::span<std::byte> block,
                             std::vector<std::byte>* capture) {
  auto fd = enter_through_stop(dev, State::kStopCopy);
  if (!fd) return std::unexpected(fd.error());
  StagePass pass;
  const auto start = Clock::now();
  const auto cpu_start = process_cpu_time();
  for (;;) {
    auto n = dev.read(*fd, block);
    ++pass.calls;
    if (!n) {
      (void)back_to_running(dev, *fd);
      return std::unexpected(n.error());
    }
    if (*n == 0) break;
    pass.bytes += *n;
    if (capture) capture->insert(capture->end(), block.begin(), block.begin() + *n);
  }
  pass.elapsed = Clock::now() - start;
  pass.cpu = process_cpu_time() - cpu_start;
  if (auto r = back_to_running(dev, *fd); !r) return std::unexpected(r.error());
  return pass;
}

Result<StagePass> write_stage(Device& dev, std::span<const std::byte> data, std::size_t buffer) {
  auto fd = enter_through_stop(dev, State::kResuming);
  if (!fd) return std::unexpected(fd.error());
  StagePass pass;
  const auto start = Clock::now();
  const auto cpu_start = process_cpu_time();
  for (auto rest = data; !rest.empty();) {
    auto n = dev.write(*fd, rest.first(std::min(buffer, rest.size())));
    ++pass.calls;
    if (!n || *n == 0) {
      (void)dev.reset();  // a refused resume leaves nothing else to go back to
      (void)dev.close(*fd);
      return n ? fail(EIO, dev.name() + ": data fd accepted no bytes") : std::unexpected(n.error());
    }
    rest = rest.subspan(*n);
    pass.bytes += *n;
  }
  // RESUMING -> STOP is where the device takes the data: part of the stage.
  auto judged = request_device_state(dev, State::kStop);
  pass.elapsed = Clock::now() - start;
  pass.cpu = process_cpu_time() - cpu_start;
  if (!judged) {
    (void)dev.reset();
    (void)dev.close(*fd);
    return std::unexpected(judged.error());
  }
  if (auto r = back_to_running(dev, *fd); !r) return std::unexpected(r.error());
  return pass;
}

Result<StagePass> channel_stage(ChannelKind kind, std::size_t write_size, std::size_t read_size,
                                std::uint64_t total, ChannelPlacement placement) {
  int writer_cpu = -1, reader_cpu = -1;
  const char* name = kind == ChannelKind::kPipe ? "pipe" : "socket";
  if (placement != ChannelPlacement::kAny) {
    auto cpus = allowed_cpus(placement == ChannelPlacement::kOneCpu ? 1 : 2);
    if (cpus.empty())
      return fail(EINVAL, fmt::format("{}: this process may not use that many CPUs", name));
    writer_cpu = cpus.front();
    reader_cpu = cpus.back();
  }
  auto channel = kind == ChannelKind::kPipe ? make_pipe_channel() : make_socket_channel();
  if (!channel) return std::unexpected(channel.error());
  auto& [reader, writer] = *channel;
  std::vector<std::byte> out(write_size, std::byte{7}), in(read_size);
  StagePass pass;
  Result<std::size_t> n = 0;
  const auto start = Clock::now();
  const auto cpu_start = process_cpu_time();
  std::thread producer([&] {
    CpuPin pin(writer_cpu);
    for (std::uint64_t sent = 0; sent < total;) {
      auto chunk =
          std::span<const std::byte>(out).first(std::min<std::uint64_t>(write_size, total - sent));
      auto written = writer.write(chunk);
      if (!written) break;
      sent += *written;
    }
    writer.close();
  });
  std::thread consumer([&] {
    CpuPin pin(reader_cpu);
    while ((n = reader.read(in)) && *n > 0) {
      pass.bytes += *n;
      ++pass.calls;
    }
    reader.close();  // a reader that failed must not leave the writer blocked on a full channel
  });
  producer.join();
  consumer.join();
  pass.elapsed = Clock::now() - start;
  pass.cpu = process_cpu_time() - cpu_start;
  if (!n) return std::unexpected(n.error());
  if (pass.bytes != total)
    return fail(EIO, fmt::format("{}: the reader got fewer bytes than were sent", name));
  return pass;
}

}  // namespace vfio::bench
