// The simulated VFIO migration device: the model behind every transport (DirectDevice calls it
// in-process, the FUSE server serves it as a character device). It does no I/O and knows nothing
// about fds: a new data channel is a SessionId, which the transport turns into an fd number.
// Every method is thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
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
  // The guest writing device state, so that pre-copy has dirty data to chase: bytes per second
  // while the device runs (R, RP, PC, PCP), and bytes before every data read in PC/PCP (the
  // deterministic form, for tests and the fault matrix).
  std::uint64_t dirty_rate = 0;
  std::uint64_t dirty_per_read = 0;
  // Frame pre-copy sessions with a preamble and a trailer (simdev/profile.h), so that a resume
  // missing the last dirty records is refused. Implied by either dirty rate; without it a
  // pre-copy session streams exactly as the real drivers do.
  bool framed_precopy = false;
  // Seeds the pages the device DMA-writes into guest memory (simulate_dma).
  std::uint64_t dma_seed = 1;
  // Whether the device keeps its migration state when its last user closes it; unset: the
  // profile's keeps_state_on_close (mtty keeps it, the vfio-pci drivers return to RUNNING).
  std::optional<bool> keep_state = std::nullopt;
  // SET STOP_COPY -> PRE_COPY or PRE_COPY_P2P blocks the caller, as Linux 6.12 spins for ever in
  // vfio_mig_get_next_state on it: for at most kHangLimit (or until release_hangs()), then
  // EINVAL. Each one is counted (hung_arcs()), so tests can prove no command sends it.
  bool hang_stop_copy_to_precopy = false;
};

class SimDevice {
 public:
  using SessionId = std::uint64_t;
  // How long a simulated kernel hang (SimOptions::hang_stop_copy_to_precopy) blocks at most:
  // generous, so that only a test that would otherwise hang for ever ever reaches it.
  static constexpr std::chrono::seconds kHangLimit{60};
  // Turns a new session into the fd number the SET reports in data_fd.
  using FdOpener = std::function<Result<int>(SessionId)>;

  SimDevice(const Profile& profile, SimOptions options);

  const Profile& profile() const { return *profile_; }
  uapi::State state() const;
  Image image() const;  // the committed device state
  void set_image(Image image);
  // The guest changed device state. Applies only while the device runs (R, RP, PC, PCP);
  // returns whether it did. A rewrite during a save session is not tracked: the session keeps
  // its snapshot.
  bool mutate();
  // The guest wrote `bytes` of device state (Image::written), while the device runs; returns
  // whether it did. An open pre-copy session sends them as dirty data.
  bool guest_write(std::uint64_t bytes);
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
  // Back to a snapshot in one step (the fuzz targets reuse a device for every input): reset,
  // then `image` and `config` (from offset 0) installed and the latest refusal dropped.
  void restore(const Image& image, std::span<const std::byte> config);

  // A user (a DirectDevice, an open device file on the FUSE mount) opened or closed the
  // device. When the last one closes it the device is reset, unless it keeps its state
  // (SimOptions::keep_state).
  void open_device();
  void close_device();
  // Waits until no user holds the device, at most `limit`; whether none does. A FUSE file's
  // release reaches the server after close() has returned: a reopen waits for it, as the
  // kernel's open waits for the last close_device.
  bool wait_unused(std::chrono::milliseconds limit) const;

  // SETs that arrived in the simulated kernel hang (SimOptions::hang_stop_copy_to_precopy).
  std::size_t hung_arcs() const;
  // Lets every blocked hanging SET return (EINVAL), and every later one at once.
  void release_hangs();

  // The PCI config region.
  Result<std::size_t> config_read(std::uint64_t offset, std::span<std::byte> buf) const;
  Result<std::size_t> config_write(std::uint64_t offset, std::span<const std::byte> buf);
  std::vector<std::byte> config() const;

  // Test hook standing in for device DMA: marks the page holding `iova` dirty if logging is on
  // and `iova` lies in a logged range.
  void mark_dirty(std::uint64_t iova);
  // The device DMA-writes `count` pages of the logged ranges, picked by a generator seeded with
  // SimOptions::dma_seed; returns their iovas (page-aligned, in write order). Nothing when
  // logging is off.
  std::vector<std::uint64_t> simulate_dma(std::uint64_t count);

  // Fault-injection hooks (faults/sim_hooks.h). force_state: the device is now in `state`, as a
  // failing arc can leave it; a save or resume session survives only in a state that has one.
  void force_state(uapi::State state);
  // Data sessions issued and not yet released: a leak check after a migration.
  std::size_t open_sessions() const;
  // Whether DMA logging runs: a leak check after a migration, like open_sessions.
  bool dma_logging() const;

  // Why the latest feature call or data write failed, if it did with errno `code`; taken, so a
  // later failure never inherits it. For transports that carry only an errno (the FUSE mount):
  // the device wrapper asks right after the failed syscall (KernelDevice::set_explainer).
  std::optional<std::string> take_refusal(int code);

 private:
  // A save session streams the image as it was when the session opened (the initial data),
  // then dirty records of the guest's writes since, one record at a time.
  // A session opened in PRE_COPY adds a preamble before and a trailer after (profile.h).
  struct SaveSession {
    enum class Piece { kInitial, kRecords, kTrailer, kDone };
    SessionId id;
    Image image;  // snapshot taken when the session opened
    bool precopy = false;
    std::uint64_t initial_length = 0;  // preamble and stream of `image`
    Piece piece = Piece::kInitial;
    std::uint64_t offset = 0;  // into the current piece
    DirtyRange record;         // the dirty record being read (length 0: none)
    std::uint64_t sent = 0;    // writes up to this cursor are covered by data already cut
    bool not_ready = false;    // nonblock_eagain: the next O_NONBLOCK read finds nothing yet
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

  Result<> feature_call(std::span<std::byte> arg, const FdOpener& open_fd);
  Result<std::size_t> write_call(SessionId id, std::span<const std::byte> buf);
  // Records the outcome of a feature call or data write for take_refusal.
  template <class T>
  Result<T> noted(Result<T> r);

  // Applies one arc's effect on the data stream; returns the session it opened, if any. The one
  // place a later fault-injection issue hooks to make an arc fail.
  ArcResult apply_arc(uapi::State from, uapi::State to);
  // Where the device lands when the arc from `from` failed in a request that began at `start`.
  void land_after_failed_arc(uapi::State start, uapi::State from);

  Result<> feature_device_state(std::span<std::byte> payload, std::uint32_t flags,
                                const FdOpener& open_fd);
  void reset_locked();
  // Whether a SET to `target` from the current state is the arc Linux 6.12 hangs on.
  bool hangs_locked(uapi::State target) const;
  Result<> dma_logging_start(std::span<std::byte> payload);
  Result<> dma_logging_report(std::span<std::byte> payload);
  std::uint64_t data_size_locked() const;
  // Guest writes since the last call, at dirty_rate, while the device runs.
  void accrue_locked();
  // Initial bytes left, and dirty bytes (current record and writes not cut yet) of save_.
  std::uint64_t initial_left_locked() const;
  // Where reading the initial data stops for now: its end, or in pre-copy on a
  // precopy_header_only profile the end of the stream header.
  std::uint64_t initial_end_locked() const;
  std::uint64_t dirty_left_locked() const;
  // The next record of writes not yet cut; length 0 when there are none.
  DirtyRange next_record_locked() const;
  SessionId new_session_locked();
  // ENODEV for a stale session, EBADF for one never issued or already released.
  Result<> check_session_locked(SessionId id, const char* op) const;

  const Profile* profile_;
  SimOptions options_;
  mutable std::mutex mu_;
  std::condition_variable hang_released_cv_;
  mutable std::condition_variable unused_cv_;  // users_ fell to 0
  bool hang_released_ = false;
  std::size_t hung_arcs_ = 0;
  std::size_t users_ = 0;  // open_device() minus close_device()
  std::chrono::steady_clock::time_point accrued_at_;
  std::uint64_t dma_draws_ = 0;
  uapi::State state_ = uapi::State::kRunning;
  Image image_;
  std::vector<std::byte> config_;
  SessionId next_session_ = 1;
  // Issued and not yet released: a handful at most. A vector keeps its capacity, so issuing a
  // session allocates nothing once one was (the fuzz targets open one per device and input).
  std::vector<SessionId> open_;
  std::optional<SaveSession> save_;
  std::optional<ResumeSession> resume_;
  bool logging_ = false;
  std::uint64_t log_page_size_ = 0;
  std::vector<DmaRange> log_ranges_;
  std::set<std::uint64_t> dirty_;  // page-aligned (log_page_size_) iovas
  std::optional<Error> refusal_;   // the latest feature call or write, if it failed
};

}  // namespace vfio::sim
