// The stages of a migration alone, with no engine: what the migrate benchmark is measured
// against. A migration reads the source's data fd, moves the stream through a channel and
// writes the destination's data fd; each stage's throughput on its own is a ceiling for the
// whole. The baseline rows (raw_read, pipe, socket, raw_write) and the migrate rows' own
// ceilings are both measured with these.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "core/device.h"

namespace vfio::bench {

struct StagePass {
  std::uint64_t bytes = 0;
  std::uint64_t calls = 0;  // data-fd reads or writes
  std::chrono::duration<double> elapsed{};
  std::chrono::duration<double> cpu{};  // the process's CPU time in `elapsed`, all threads
};

// RUNNING -> STOP -> STOP_COPY, read() into `block` until the end of data, close, -> RUNNING.
// With `capture`, the data is appended to it too (untimed use only: the copy is counted).
Result<StagePass> read_stage(Device& dev, std::span<std::byte> block,
                             std::vector<std::byte>* capture = nullptr);

// RUNNING -> STOP -> RESUMING, write() `data` in `buffer`-sized pieces, -> STOP (the device
// judges the data) -> RUNNING.
Result<StagePass> write_stage(Device& dev, std::span<const std::byte> data, std::size_t buffer);

// The channels between two threads: make_pipe_channel (streams through a pipe, the fault
// matrix) and make_socket_channel (a local migration).
enum class ChannelKind { kPipe, kSocket };

// Where the channel stage's writer and reader threads run. On one CPU the copy in and copy out
// run back to back in a warm cache; on two, every hand-over wakes the other CPU. Left to the
// scheduler, either happens, and a pipe's rate differs by up to 3x between runs.
enum class ChannelPlacement { kAny, kOneCpu, kTwoCpus };

// `total` bytes from one thread to another through a channel of `kind`, in writes of
// `write_size` and reads of `read_size` bytes. A placement the process's CPU affinity cannot
// give (two CPUs with only one allowed) fails with EINVAL.
Result<StagePass> channel_stage(ChannelKind kind, std::size_t write_size, std::size_t read_size,
                                std::uint64_t total,
                                ChannelPlacement placement = ChannelPlacement::kAny);

}  // namespace vfio::bench
