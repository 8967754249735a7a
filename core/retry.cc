#include "core/retry.h"

#include <atomic>

namespace vfio {
namespace {

std::atomic<int> g_limit{kMaxTransientRetries};

}  // namespace

int transient_retry_limit() {
  return g_limit.load(std::memory_order_relaxed);
}

void set_transient_retry_limit(int limit) {
  g_limit.store(limit, std::memory_order_relaxed);
}

}  // namespace vfio
