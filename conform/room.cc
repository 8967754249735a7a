#include "conform/room.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace vfio::conform::detail {
namespace {

std::size_t page_size() {
  static const auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_up(std::size_t n) {
  return (n + page_size() - 1) / page_size() * page_size();
}

}  // namespace

Room::~Room() {
  if (at_) ::munmap(at_, mapped_);
}

bool Room::try_resize(std::size_t n) {
  if (n > mapped_) {
    // Doubling: a stream read into the room a chunk at a time grows it seldom.
    const std::size_t want = round_up(std::max(n, 2 * mapped_));
    // NORESERVE: only the pages written count against memory.
    void* at = at_ ? ::mremap(at_, mapped_, want, MREMAP_MAYMOVE)
                   : ::mmap(nullptr, want, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (at == MAP_FAILED) return false;
    at_ = static_cast<std::byte*>(at);
    mapped_ = want;
  }
  size_ = n;
  return true;
}

void Room::zero_from(std::size_t from) {
  if (from >= mapped_) return;
  const std::size_t page = std::min(round_up(from), mapped_);
  std::memset(at_ + from, 0, page - from);
  // A private anonymous page given back reads as zeros when next touched.
  if (page < mapped_ && ::madvise(at_ + page, mapped_ - page, MADV_DONTNEED) != 0)
    std::memset(at_ + page, 0, mapped_ - page);
}

}  // namespace vfio::conform::detail
