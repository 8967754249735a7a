// Internal to conform/: a check's second thread, joined within a deadline or abandoned. A
// thread stuck in the kernel cannot be killed; conform reports it (kernel-hang) and goes on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace vfio::conform::detail {

class Worker {
 public:
  // `work` runs on a new thread. It must own what it touches (copies, shared_ptr) except the
  // device: an abandoned thread may outlive the check and the Checker.
  explicit Worker(std::function<void()> work) : done_(std::make_shared<Done>()) {
    std::thread([done = done_, work = std::move(work)] {
      work();
      {
        std::lock_guard lock(done->mu);
        done->flag = true;
      }
      done->cv.notify_all();
    }).detach();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Whether the thread finished by `deadline`; if not, it is left to itself.
  bool join_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(done_->mu);
    return done_->cv.wait_until(lock, deadline, [&] { return done_->flag; });
  }

 private:
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool flag = false;
  };
  std::shared_ptr<Done> done_;
};

}  // namespace vfio::conform::detail
