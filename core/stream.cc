#include "core/stream.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/checksum.h"
#include "core/retry.h"

namespace vfio {
namespace {

template <class T>
T to_big_endian(T v) {
  if constexpr (std::endian::native == std::endian::little) return std::byteswap(v);
  return v;
}

}  // namespace

StreamWriter::StreamWriter(Channel& channel, std::size_t buffer_size)
    : channel_(channel), buffer_(std::max<std::size_t>(buffer_size, 16)) {}

StreamWriter::~StreamWriter() {
  (void)flush();
}

void StreamWriter::set_error(Error e) {
  if (!error_) error_ = std::move(e);
}

Result<> StreamWriter::status() const {
  if (error_) return std::unexpected(*error_);
  return {};
}

void StreamWriter::write_out(std::span<const std::byte> data) {
  while (!data.empty() && !error_) {
    auto n = retry_transient([&] { return channel_.write(data); });
    if (!n) {
      set_error(n.error());
    } else if (*n == 0) {
      set_error(Error{EIO, channel_.name() + ": write accepted no bytes"});
    } else {
      data = data.subspan(*n);
    }
  }
}

Result<> StreamWriter::flush() {
  if (used_ > 0) {
    write_out(std::span(buffer_).first(used_));
    used_ = 0;
  }
  return status();
}

void StreamWriter::put_buffer(std::span<const std::byte> data) {
  if (error_ || data.empty()) return;  // an empty span may hold a null pointer memcpy must not see
  crc_ = crc32c(crc_, data);
  bytes_ += data.size();
  if (used_ + data.size() <= buffer_.size()) {
    std::memcpy(buffer_.data() + used_, data.data(), data.size());
    used_ += data.size();
    return;
  }
  // Too large to buffer: send what is queued, then the data itself without a copy.
  (void)flush();
  write_out(data);
}

void StreamWriter::put_be32(std::uint32_t v) {
  v = to_big_endian(v);
  put_buffer(std::as_bytes(std::span(&v, 1)));
}

void StreamWriter::put_be64(std::uint64_t v) {
  v = to_big_endian(v);
  put_buffer(std::as_bytes(std::span(&v, 1)));
}

StreamReader::StreamReader(Channel& channel, std::size_t buffer_size)
    : StreamReader(channel, own_, buffer_size) {}

StreamReader::StreamReader(Channel& channel, AlignedBuffer& buffer, std::size_t buffer_size)
    : channel_(channel), buffer_(buffer) {
  buffer_size = std::max<std::size_t>(buffer_size, 16);
  if (buffer_.size() != buffer_size) buffer_.resize(buffer_size);
}

void StreamReader::set_error(Error e) {
  if (!error_) error_ = std::move(e);
}

Result<> StreamReader::status() const {
  if (error_) return std::unexpected(*error_);
  return {};
}

bool StreamReader::fill() {
  if (error_ || eof_) return false;
  begin_ = end_ = 0;
  auto n = retry_transient([&] { return channel_.read(buffer_.span()); });
  if (!n) {
    set_error(n.error());
    return false;
  }
  if (*n == 0) {
    eof_ = true;
    return false;
  }
  end_ = *n;
  return true;
}

void StreamReader::set_truncated() {
  set_error(
      Error{EIO, fmt::format("{}: stream truncated after {} bytes", channel_.name(), bytes_)});
}

std::span<const std::byte> StreamReader::take(std::size_t max) {
  if (begin_ == end_ && !fill()) {
    set_truncated();
    return {};
  }
  std::size_t n = std::min(max, end_ - begin_);
  auto chunk = std::as_const(buffer_).span().subspan(begin_, n);
  begin_ += n;
  bytes_ += n;
  crc_ = crc32c(crc_, chunk);
  return chunk;
}

bool StreamReader::at_end() {
  return begin_ == end_ && !fill() && !error_;
}

std::size_t StreamReader::get_buffer(std::span<std::byte> out) {
  std::size_t stored = 0;
  while (stored < out.size() && !error_) {
    auto chunk = take(out.size() - stored);
    if (!chunk.empty()) std::memcpy(out.data() + stored, chunk.data(), chunk.size());
    stored += chunk.size();
  }
  return stored;
}

std::uint64_t StreamReader::get_be(std::size_t size) {
  std::uint64_t v = 0;
  for (std::size_t got = 0; got < size && !error_;) {
    auto chunk = take(size - got);
    for (std::byte b : chunk) v = v << 8 | std::to_integer<std::uint64_t>(b);
    got += chunk.size();
  }
  return error_ ? 0 : v;
}

std::uint32_t StreamReader::get_be32() {
  return static_cast<std::uint32_t>(get_be(sizeof(std::uint32_t)));
}

std::uint64_t StreamReader::get_be64() {
  return get_be(sizeof(std::uint64_t));
}

Result<> StreamReader::copy_to_device(Device& dev, int data_fd, std::uint64_t size) {
  while (size > 0 && !error_) {
    auto chunk = take(static_cast<std::size_t>(std::min<std::uint64_t>(size, buffer_.size())));
    size -= chunk.size();
    while (!chunk.empty()) {
      auto n = retry_transient([&] { return dev.write(data_fd, chunk); });
      if (!n) return std::unexpected(std::move(n).error());
      if (*n == 0) return fail(EIO, dev.name() + ": data fd accepted no bytes");
      chunk = chunk.subspan(*n);
    }
  }
  return status();
}

}  // namespace vfio
