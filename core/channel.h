// Where the migration stream travels: a file, a pipe, a socket, or memory. Channels move
// bytes and nothing else; framing lives in Stream and Session.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace vfio {

class Channel {
 public:
  virtual ~Channel() = default;
  // May transfer fewer bytes than asked; read() returning 0 means the peer ended the stream.
  virtual Result<std::size_t> write(std::span<const std::byte> data) = 0;
  virtual Result<std::size_t> read(std::span<std::byte> data) = 0;
  virtual const std::string& name() const = 0;
};

// A file descriptor: regular file, pipe or socket. Owns the fd unless told otherwise.
class FdChannel final : public Channel {
 public:
  FdChannel(int fd, std::string name, bool owns_fd = true);
  ~FdChannel() override;
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  static Result<FdChannel> open_for_read(const std::string& path);  // "-": stdin
  FdChannel(FdChannel&& other) noexcept;

  Result<std::size_t> write(std::span<const std::byte> data) override;
  Result<std::size_t> read(std::span<std::byte> data) override;
  const std::string& name() const override { return name_; }
  // Ends the stream for the reader (closes the fd).
  void close();
  int fd() const { return fd_; }
  // Once `cancel_fd` is readable, reads and writes fail with ECANCELED instead of blocking.
  // Only pipes, FIFOs, sockets and terminals can block indefinitely: those wait in poll() on
  // both fds and move at most PIPE_BUF bytes per write, which never blocks once poll said so.
  void set_cancel_fd(int cancel_fd);
  // At most this many bytes per write (0: no limit).
  void set_max_write(std::size_t bytes) { max_write_ = bytes; }

 private:
  Result<> wait_ready(short events);
  int fd_;
  std::string name_;
  bool owns_fd_;
  int cancel_fd_ = -1;  // polled only for fds that can block indefinitely
  std::size_t max_write_ = 0;
};

// A pipe between two threads of this process, sized for throughput: 1 MiB where the system
// allows, written in pieces of a quarter of its size.
Result<std::pair<FdChannel, FdChannel>> make_pipe_channel();

// A connected pair of Unix stream sockets between two threads of this process, as QEMU
// migrates to a local destination (`migrate unix:PATH`); the first end reads, the second
// writes. The send buffer is 1 MiB where the system allows. On a 2-vCPU machine it carries a
// migration 1.3-2x faster than make_pipe_channel, whose writer and reader take turns under one
// lock (docs/benchmarks.md, "Fifth pass").
Result<std::pair<FdChannel, FdChannel>> make_socket_channel();

// An in-memory stream: writes append, reads consume from the front.
class MemoryChannel final : public Channel {
 public:
  MemoryChannel() = default;
  explicit MemoryChannel(std::vector<std::byte> data) : data_(std::move(data)) {}
  Result<std::size_t> write(std::span<const std::byte> data) override;
  Result<std::size_t> read(std::span<std::byte> data) override;
  const std::string& name() const override { return name_; }
  std::vector<std::byte>& data() { return data_; }
  void rewind() { read_pos_ = 0; }

 private:
  std::vector<std::byte> data_;
  std::size_t read_pos_ = 0;
  std::string name_ = "memory";
};

}  // namespace vfio
