// The runtime side of a plan: decides, call by call, which rules fire (nth, every, after,
// state, prob, times), logs what fired, records the operation trace of a run, and lets hang
// and delay faults wait until the case is cancelled. One Injector may serve several
// decorators (source device, destination device, both channel ends) across threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "faults/plan.h"

namespace vfio::faults {

// One call as a decorator sees it. `op` is never kOpen or kAny.
struct Call {
  Side side = Side::kAny;
  Op op = Op::kAny;
  std::optional<uapi::Feature> feature{};  // get/set/probe
  std::optional<uapi::State> target{};     // SET MIG_DEVICE_STATE: the requested state
  std::size_t size = 0;                    // bytes asked for
  std::uint64_t offset = 0;                // config-read/config-write: where in the region
};

// Facts a rule may need, computed only when one does (each may cost a GET).
struct CallFacts {
  std::function<std::optional<uapi::State>()> current_state;
  std::function<bool()> opens_fd;  // a SET whose final arc opens a data fd
};

// Everything the rules that fired on one call ask for, merged.
struct Effects {
  std::optional<int> err;
  std::optional<uapi::State> land;
  std::optional<std::uint64_t> short_len;
  std::uint64_t corrupt = 0, drop = 0, dup = 0;
  std::chrono::nanoseconds delay{};
  bool async_reset = false, truncate = false, eof = false, hang = false, cancel = false;
};

struct Fired {
  std::string rule;  // the rule's text
  Side side;
  std::string op;         // e.g. "set:S>SC", "read"
  std::uint64_t call;     // the rule's matching-call number that fired (1-based)
  std::uint64_t op_call;  // the call's number among (side, op) calls, as in the trace
  std::string describe() const;
};

// One operation of a run, for `--record` and for building the matrix.
struct TraceEntry {
  Side side;
  Op op;
  std::string where;    // the most specific WHERE naming it: "set:S>SC", "get:data-size", "read"
  std::uint64_t index;  // 1-based among the same (side, where): what nth= counts
  std::uint64_t bytes;  // transferred (data and config calls)
  bool failed = false;
  std::optional<uapi::State> target;  // SET MIG_DEVICE_STATE: the requested state
  std::uint64_t offset = 0;           // config calls
};

class Injector {
 public:
  explicit Injector(Plan plan = {});

  struct Ticket {
    Effects effects;
    std::vector<std::size_t> matched;  // rules whose WHERE matched (for after=)
    std::size_t trace = std::numeric_limits<std::size_t>::max();
  };
  // Before a call: which faults act on it. Runs the cancel hook for `cancel` faults.
  Ticket begin(const Call& call, const CallFacts& facts);
  // After it: bytes moved (for after= and the trace) and whether it failed.
  void end(const Ticket& ticket, std::uint64_t bytes, bool failed);

  // Sleeps for the delay, then blocks for a hang until cancel(). An error when a hang ended.
  Result<> pause(const Effects& effects, std::string_view what);

  void set_recording(bool on) { recording_ = on; }
  // A trace keeps at most kMaxTrace operations, so that recording costs bounded memory whatever
  // the stream size; trace_overflowed() says whether the run had more.
  static constexpr std::size_t kMaxTrace = 100'000;
  std::vector<TraceEntry> trace() const;
  bool trace_overflowed() const;
  std::vector<Fired> fired() const;
  bool fired_kind(Side side, Kind kind) const;
  // Calls that reached the decorator, per side and operation (resets count even if failed).
  std::uint64_t count(Side side, Op op) const;

  // Called (outside the lock) when a `cancel` fault fires.
  void set_cancel_hook(std::function<void(Side)> hook) { cancel_hook_ = std::move(hook); }
  // Called (outside the lock) with every call as it arrives, before any rule acts on it: for a
  // watcher that needs the moment of a call (what else holds then), which the trace cannot give.
  void set_call_hook(std::function<void(const Call&)> hook) { call_hook_ = std::move(hook); }
  // Ends every current and future hang and delay.
  void cancel();
  bool cancelled() const;
  bool hanging() const;
  // From now on every call passes untouched and uncounted: the plan is over (a case's next
  // attempt runs through the same decorators, without faults).
  void disarm();
  // Whether any rule mentions a state (so decorators know the GET is needed).
  bool needs_state() const { return needs_state_; }

 private:
  struct RuleState {
    std::uint64_t matches = 0, fires = 0, bytes = 0;
    std::mt19937_64 rng;
  };
  bool where_matches(const Rule& r, const Call& call, const CallFacts& facts,
                     std::optional<std::optional<uapi::State>>& state) const;
  static std::string where_of(const Call& call, std::optional<uapi::State> from);

  Plan plan_;
  bool needs_state_ = false;
  bool recording_ = false;
  bool trace_overflowed_ = false;
  std::function<void(Side)> cancel_hook_;
  std::function<void(const Call&)> call_hook_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RuleState> states_;
  std::vector<Fired> fired_;
  std::vector<TraceEntry> trace_;
  std::vector<std::pair<std::pair<Side, std::string>, std::uint64_t>> where_counts_;
  std::uint64_t counts_[3][static_cast<int>(Op::kAny) + 1] = {};
  bool cancelled_ = false;
  bool disarmed_ = false;
  int hanging_ = 0;
};

}  // namespace vfio::faults
