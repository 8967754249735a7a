// Waiting in tests for something another thread (or the FUSE server) does, without timing
// assumptions: polls until it holds. The bound only keeps a broken test from hanging.
#pragma once

#include <chrono>
#include <thread>

namespace vfio::testing {

template <class Done>
bool eventually(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace vfio::testing
