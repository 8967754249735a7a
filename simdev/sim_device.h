// The simulated VFIO migration device: the model behind every transport (DirectDevice calls it
// in-process, the FUSE server serves it as a character device). It does no I/O and knows nothing
// about fds: a new data channel is a SessionId, which the transport turns into an fd number.
// Every method is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "core/result.h"
#include "core/uapi.h"
#include "simdev/image.h"
#include "simdev/profile.h"

namespace vfio::sim {

struct SimOptions {
  std::optional<std::uint64_t> state_size;  // body bytes; unset = the profile's default
  std::uint64_t seed = 1;
  std::uint32_t config_size = 256;
};

class SimDevice {
 public:
  using SessionId = std::uint64_t;
  // Turns a new session into the fd number the SET reports in data_fd.
  using FdOpener = std::function<Result<int>(SessionId)>;

  SimDevice(const Profile& profile, SimOptions options);

  const Profile& profile() const { return *profile_; }
  uapi::State state() const;
  Image image() const;  // the committed device state
  void set_image(Image image);
  // The guest changed device state. Applies only while the device runs (R, RP, PC, PCP);
  // returns whether it did.
  bool mutate();
  std::uint64_t stream_size() const;  // stream length of the current image

  // VFIO_DEVICE_FEATURE on `arg` (header + payload), with the kernel's checks and errnos.
  // `open_fd` is called (without the device lock held) when a SET produces a data channel.
  Result<> feature(std::span<std::byte> arg, const FdOpener& open_fd);

  // The data channel.
  Result<std::size_t> read(SessionId id, std::span<std::byte> buf, bool nonblock);
  Result<std::size_t> write(SessionId id, std::span<const std::byte> buf);
  Result<> precopy_info(SessionId id, uapi::PrecopyInfo& info);
  // The fd was closed. Data already written or produced stays with the device; state unchanged.
  void release(SessionId id);

  // VFIO_DEVICE_RESET: RUNNING, every session stale, DMA logging stopped. The image is kept.
  Result<> reset();

  // The PCI config region.
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) const;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf);
  std::vector<std::byte> config() const;

  // Test hook standing in for device DMA: marks the page holding `iova` dirty if logging is on
  // and `iova` lies in a logged range.
  void mark_dirty(std::uint64_t iova);

  // Fault-injection hooks (faults/sim_hooks.h). force_state: the device is now in `state`, as a
  // failing arc can leave it; a save or resume session survives only in a state that has one.
  void force_state(uapi::State state);
  // Data sessions issued and not yet released: a leak check after a migration.
  std::size_t open_sessions() const;

 private:
  struct SaveSession {
    SessionId id;
    Image image;  // snapshot taken when the session opened
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    // End of the initial precopy data; today the whole stream. Dirty data produced during
    // precopy (a later issue) will be reported and read beyond it.
    std::uint64_t initial_end = 0;
    bool not_ready = false;  // nonblock_eagain: the next O_NONBLOCK read finds nothing yet
  };
  struct ResumeSession {
    SessionId id;
    ResumeValidator validator;
    bool write_failed = false;  // for sticky_write_error
  };
  struct DmaRange {
    std::uint64_t iova, length;
  };

  using ArcResult = Result<std::optional<SessionId>>;

  // Applies one arc's effect on the data stream; returns the session it opened, if any. The one
  // place a later fault-injection issue hooks to make an arc fail.
  ArcResult apply_arc(uapi::State from, uapi::State to);
  // Where the device lands when the arc from `from` failed in a request that began at `start`.
  void land_after_failed_arc(uapi::State start, uapi::State from);

  Result<> feature_device_state(std::span<std::byte> payload, std::uint32_t flags,
                                const FdOpener& open_fd);
  Result<> dma_logging_start(std::span<std::byte> payload);
  Result<> dma_logging_report(std::span<std::byte> payload);
  std::uint64_t data_size_locked() const;
  SessionId new_session_locked();
  // ENODEV for a stale session, EBADF for one never issued or already released.
  Result<> check_session_locked(SessionId id, const char* op) const;

  const Profile* profile_;
  mutable std::mutex mu_;
  uapi::State state_ = uapi::State::kRunning;
  Image image_;
  std::vector<std::byte> config_;
  SessionId next_session_ = 1;
  std::set<SessionId> open_;  // issued and not yet released
  std::optional<SaveSession> save_;
  std::optional<ResumeSession> resume_;
  bool logging_ = false;
  std::uint64_t log_page_size_ = 0;
  std::vector<DmaRange> log_ranges_;
  std::set<std::uint64_t> dirty_;  // page-aligned (log_page_size_) iovas
};

}  // namespace vfio::sim
