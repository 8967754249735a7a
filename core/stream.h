// The migration stream, as QEMUFile is to the reference: big-endian integers and buffers over
// a Channel, with a sticky first error (later operations become no-ops once one failed) and a
// running CRC-32C that the container format uses for its section checksums.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/channel.h"
#include "core/device.h"
#include "core/result.h"

namespace vfio {

class StreamWriter {
 public:
  explicit StreamWriter(Channel& channel, std::size_t buffer_size = 64 * 1024);
  ~StreamWriter();  // flushes whatever is buffered; errors are kept, not thrown

  void put_be32(std::uint32_t v);
  void put_be64(std::uint64_t v);
  void put_buffer(std::span<const std::byte> data);
  // Writes out buffered bytes, looping over partial writes.
  Result<> flush();

  // The first error wins; later calls are ignored.
  void set_error(Error e);
  const std::optional<Error>& error() const { return error_; }
  Result<> status() const;

  std::uint64_t bytes_written() const { return bytes_; }
  void reset_checksum() { crc_ = 0; }
  std::uint32_t checksum() const { return crc_; }

 private:
  void write_out(std::span<const std::byte> data);

  Channel& channel_;
  std::vector<std::byte> buffer_;
  std::size_t used_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint32_t crc_ = 0;
  std::optional<Error> error_;
};

class StreamReader {
 public:
  explicit StreamReader(Channel& channel, std::size_t buffer_size = 64 * 1024);
  // Reads through the caller's `buffer`, resized to `buffer_size` unless it has that size: one
  // kept across streams spares an allocation (and zeroing it) per stream.
  StreamReader(Channel& channel, AlignedBuffer& buffer, std::size_t buffer_size);
  StreamReader(const StreamReader&) = delete;  // buffer_ may refer to own_
  StreamReader& operator=(const StreamReader&) = delete;

  // On a short stream or a channel error these return 0 and set the sticky error.
  std::uint32_t get_be32();
  std::uint64_t get_be64();
  // Fills `out` completely or sets the error; returns the bytes stored.
  std::size_t get_buffer(std::span<std::byte> out);
  // Moves `size` stream bytes into the device's data fd through a fixed-size buffer: the
  // untrusted size bounds the loop, never an allocation. Short device writes are resumed.
  Result<> copy_to_device(Device& dev, int data_fd, std::uint64_t size);

  // True when the channel is exhausted and nothing is buffered (a clean end of stream).
  bool at_end();

  void set_error(Error e);
  const std::optional<Error>& error() const { return error_; }
  Result<> status() const;

  std::uint64_t bytes_read() const { return bytes_; }
  void reset_checksum() { crc_ = 0; }
  std::uint32_t checksum() const { return crc_; }

 private:
  // Refills the buffer; false at end of stream or on error.
  bool fill();
  std::span<const std::byte> take(std::size_t max);
  // Out of line, so that the error's temporaries are no part of take()'s stack frame, which
  // sanitizer builds would set up on each of its many calls.
  [[gnu::noinline, gnu::cold]] void set_truncated();
  // A big-endian integer of `size` bytes, assembled from the buffer as it is taken: with no
  // local buffer to copy it into, sanitizer builds set up no stack frame on every call.
  std::uint64_t get_be(std::size_t size);

  Channel& channel_;
  AlignedBuffer own_;      // the buffer, unless the caller lends one
  AlignedBuffer& buffer_;  // refills land page-aligned, so device writes from it mostly are
  std::size_t begin_ = 0, end_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint32_t crc_ = 0;
  bool eof_ = false;
  std::optional<Error> error_;
};

}  // namespace vfio
