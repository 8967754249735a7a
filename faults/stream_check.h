// Whether the bytes a source wrote are a well-formed vfio-mig stream (docs/stream-format.md)
// as far as they go: a stream cut short is fine, anything malformed before the cut is not.
// The check runs as the bytes pass and keeps none of them, so any stream size costs the same
// memory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "core/channel.h"

namespace vfio::faults {

struct StreamCheck {
  bool well_formed = true;  // false: malformed content before the end
  bool complete = false;    // the END section and its checksum were read
  std::string problem;      // why not well formed, or where it was cut
};

// Feed it the stream in order, then finish(). The stream is walked on a thread of its own
// through a fixed window: feed() waits while the walker is a window behind.
class StreamChecker {
 public:
  StreamChecker();
  ~StreamChecker();
  StreamChecker(const StreamChecker&) = delete;
  StreamChecker& operator=(const StreamChecker&) = delete;

  void feed(std::span<const std::byte> bytes);
  // The verdict on everything fed; the first call ends the stream.
  StreamCheck finish();

 private:
  class Window;
  std::unique_ptr<Window> window_;
  // The walker's findings, read after joining it.
  Result<bool> walked_ = false;
  bool trailing_ = false;  // bytes followed the end section
  bool cut_ = false;       // the walk ran out of bytes
  std::uint64_t bytes_read_ = 0;
  std::thread walker_;
};

StreamCheck check_stream(std::span<const std::byte> bytes);

// A Channel decorator that feeds `checker` every byte the inner channel accepted (writes) or
// delivered (reads).
class CheckedChannel final : public Channel {
 public:
  CheckedChannel(Channel& inner, StreamChecker& checker) : inner_(inner), checker_(checker) {}
  Result<std::size_t> write(std::span<const std::byte> data) override;
  Result<std::size_t> read(std::span<std::byte> data) override;
  const std::string& name() const override { return inner_.name(); }

 private:
  Channel& inner_;
  StreamChecker& checker_;
};

}  // namespace vfio::faults
