#include "faults/stream_check.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "core/container.h"
#include "core/payload.h"

namespace vfio::faults {
namespace {

using container::SectionType;

// The payload of one device section, held to the loader's grammar, without a device to write
// the data into.
Result<> skip_payload(StreamReader& in, SectionType type) {
  std::vector<std::byte> sink(64 * 1024);
  auto skip = [&](StreamReader& r, std::uint64_t n, std::uint64_t) -> Result<> {
    while (n > 0 && r.status()) {
      auto chunk = std::min<std::uint64_t>(n, sink.size());
      r.get_buffer(std::span(sink).first(static_cast<std::size_t>(chunk)));
      n -= chunk;
    }
    return r.status();
  };
  auto payload = read_payload(in, type, skip);
  if (!payload) return std::unexpected(payload.error());
  return {};
}

Result<bool> walk(StreamReader& in) {
  auto header = container::read_header(in);
  if (!header) return std::unexpected(header.error());
  for (;;) {
    auto section = container::read_section_start(in, header->device_ids.size());
    if (!section) return std::unexpected(section.error());
    if (section->type != SectionType::kEnd) {
      if (auto p = skip_payload(in, section->type); !p) return std::unexpected(p.error());
    }
    if (auto c = container::verify_section_end(in); !c) return std::unexpected(c.error());
    if (section->type == SectionType::kEnd) return true;
  }
}

}  // namespace

// The bytes between feed() and the walker: a ring of fixed size, read as a Channel.
class StreamChecker::Window final : public Channel {
 public:
  Result<std::size_t> write(std::span<const std::byte>) override {
    return fail(EBADF, "the checker's window is read-only");
  }
  // Blocks until bytes arrive or the stream ended (then 0).
  Result<std::size_t> read(std::span<std::byte> out) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return used_ > 0 || ended_; });
    const std::size_t n = std::min({out.size(), used_, ring_.size() - head_});
    std::copy_n(ring_.begin() + static_cast<std::ptrdiff_t>(head_), n, out.begin());
    head_ = (head_ + n) % ring_.size();
    used_ -= n;
    cv_.notify_all();
    return n;
  }
  const std::string& name() const override { return name_; }

  void put(std::span<const std::byte> bytes) {
    std::unique_lock lock(mu_);
    fed_ += bytes.size();
    while (!bytes.empty()) {
      cv_.wait(lock, [&] { return used_ < ring_.size() || walker_done_; });
      if (walker_done_) return;  // it has its verdict; only the count matters now
      const std::size_t tail = (head_ + used_) % ring_.size();
      const std::size_t n = std::min({bytes.size(), ring_.size() - used_, ring_.size() - tail});
      std::copy_n(bytes.begin(), n, ring_.begin() + static_cast<std::ptrdiff_t>(tail));
      used_ += n;
      bytes = bytes.subspan(n);
      cv_.notify_all();
    }
  }
  void end() {
    std::lock_guard lock(mu_);
    ended_ = true;
    cv_.notify_all();
  }
  void walker_done() {
    std::lock_guard lock(mu_);
    walker_done_ = true;
    cv_.notify_all();
  }
  std::uint64_t fed() {
    std::lock_guard lock(mu_);
    return fed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::byte> ring_ = std::vector<std::byte>(256 * 1024);
  std::size_t head_ = 0, used_ = 0;
  std::uint64_t fed_ = 0;
  bool ended_ = false, walker_done_ = false;
  std::string name_ = "stream check";
};

StreamChecker::StreamChecker() : window_(std::make_unique<Window>()) {
  walker_ = std::thread([this] {
    StreamReader in(*window_, 64 * 1024);
    walked_ = walk(in);
    // After the end section only EOF may follow: at_end() waits for either.
    trailing_ = walked_ && !in.at_end();
    cut_ = !walked_ && in.error().has_value();
    bytes_read_ = in.bytes_read();
    window_->walker_done();
  });
}

StreamChecker::~StreamChecker() {
  (void)finish();
}

void StreamChecker::feed(std::span<const std::byte> bytes) {
  window_->put(bytes);
}

StreamCheck StreamChecker::finish() {
  if (walker_.joinable()) {
    window_->end();
    walker_.join();
  }
  const std::uint64_t fed = window_->fed();
  StreamCheck out;
  if (walked_) {
    out.complete = true;
    if (trailing_) {
      out.well_formed = false;
      out.problem = fmt::format("{} bytes after the end section", fed - bytes_read_);
    }
  } else if (cut_ && bytes_read_ == fed) {
    // Ran out of bytes while everything read so far made sense: a truncated tail.
    out.problem = fmt::format("cut after {} bytes", fed);
  } else {
    out.well_formed = false;
    out.problem = walked_.error().describe();
  }
  return out;
}

StreamCheck check_stream(std::span<const std::byte> bytes) {
  StreamChecker checker;
  checker.feed(bytes);
  return checker.finish();
}

Result<std::size_t> CheckedChannel::write(std::span<const std::byte> data) {
  auto n = inner_.write(data);
  if (n) checker_.feed(data.first(*n));
  return n;
}

Result<std::size_t> CheckedChannel::read(std::span<std::byte> data) {
  auto n = inner_.read(data);
  if (n) checker_.feed(data.first(*n));
  return n;
}

}  // namespace vfio::faults
