#include "tests/fuzz/counting_new.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<bool> counting{false};
std::atomic<std::size_t> largest{0};
std::atomic<std::size_t> count{0};
std::atomic<std::size_t> aligned{0};
std::atomic<std::size_t> released{0};
// Signed: memory allocated before counting began may be freed during it.
std::atomic<std::int64_t> live{0};
std::atomic<std::int64_t> peak{0};

void note(void* p, std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) {
    std::size_t prev = largest.load(std::memory_order_relaxed);
    while (n > prev && !largest.compare_exchange_weak(prev, n)) {
    }
    count.fetch_add(1, std::memory_order_relaxed);
    std::int64_t now = live.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p))) +
                       static_cast<std::int64_t>(malloc_usable_size(p));
    std::int64_t top = peak.load(std::memory_order_relaxed);
    while (now > top && !peak.compare_exchange_weak(top, now)) {
    }
  }
}

void* allocate(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  note(p, n);
  return p;
}

void* allocate_aligned(std::size_t alignment, std::size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, std::max(alignment, sizeof(void*)), n == 0 ? 1 : n) != 0) return nullptr;
  note(p, n);
  return p;
}

void release(void* p) noexcept {
  if (p && counting.load(std::memory_order_relaxed)) {
    live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)));
    released.fetch_add(1, std::memory_order_relaxed);
  }
  std::free(p);
}

}  // namespace

// The unaligned forms; new[], nothrow and sized deletes forward to these in libstdc++. Only
// memory that was counted may be uncounted: release() checks the same flag note() does, so a
// block allocated before a counter started and freed during it makes `live` dip, not wrap.
void* operator new(std::size_t n) {
  return allocate(n);
}
void operator delete(void* p) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t) noexcept {
  release(p);
}
// Under ASan the sanitizer's runtime defines the nothrow form itself instead of forwarding it,
// so it must be replaced too or its blocks come back through our delete (std::stable_sort's
// temporary buffer does that).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p) note(p, n);
  return p;
}

void* operator new(std::size_t n, std::align_val_t a) {
  void* p = allocate_aligned(static_cast<std::size_t>(a), n);
  if (!p) throw std::bad_alloc();
  return p;
}
void operator delete(void* p, std::align_val_t) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  release(p);
}

// Page-aligned data buffers (core/aligned_buffer.h) come from aligned_alloc. Their free() is
// not seen (replacing free would fight the sanitizers), so they count as never released:
// the heap-growth figure errs high, never low.
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  if (counting.load(std::memory_order_relaxed)) aligned.fetch_add(1, std::memory_order_relaxed);
  return allocate_aligned(alignment, n);
}

namespace vfio::fuzz {

AllocationCounter::AllocationCounter() {
  largest = 0;
  count = 0;
  aligned = 0;
  released = 0;
  live = 0;
  peak = 0;
  counting = true;
}

AllocationCounter::~AllocationCounter() {
  counting = false;
}

AllocationStats AllocationCounter::stats() const {
  return {largest.load(), peak.load(), count.load(), aligned.load(), released.load()};
}

}  // namespace vfio::fuzz
