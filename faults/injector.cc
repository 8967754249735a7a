#include "faults/injector.h"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

namespace vfio::faults {
namespace {

void merge(Effects& e, const Action& a) {
  switch (a.kind) {
    case Kind::kErrno:
      if (!e.err) e.err = static_cast<int>(a.amount);
      break;
    case Kind::kShort:
      e.short_len = std::min(e.short_len.value_or(a.amount), a.amount);
      break;
    case Kind::kDelay:
      e.delay += a.delay;
      break;
    case Kind::kLand:
      e.land = a.state;
      break;
    case Kind::kAsyncReset:
      e.async_reset = true;
      break;
    case Kind::kCorrupt:
      e.corrupt += a.amount;
      break;
    case Kind::kDrop:
      e.drop += a.amount;
      break;
    case Kind::kDup:
      e.dup += a.amount;
      break;
    case Kind::kTruncate:
      e.truncate = true;
      break;
    case Kind::kEof:
      e.eof = true;
      break;
    case Kind::kHang:
      e.hang = true;
      break;
    case Kind::kCancel:
      e.cancel = true;
      break;
  }
}

int side_index(Side s) {
  return static_cast<int>(s);
}

}  // namespace

std::string Fired::describe() const {
  return fmt::format("fired '{}' on {} {} (call {}, {} #{})", rule, side_name(side), op, call, op,
                     op_call);
}

Injector::Injector(Plan plan) : plan_(std::move(plan)), states_(plan_.rules.size()) {
  for (std::size_t i = 0; i < plan_.rules.size(); ++i) {
    // One generator per rule: a rule's draws do not depend on other rules' calls.
    states_[i].rng.seed(plan_.seed * 0x9e3779b97f4a7c15ULL + i);
    const Rule& r = plan_.rules[i];
    needs_state_ |= r.when.state || r.where.from || r.where.op == Op::kOpen;
  }
}

std::string Injector::where_of(const Call& call, std::optional<uapi::State> from) {
  if (call.op == Op::kSet && call.target) {
    if (from)
      return fmt::format("set:{}>{}", uapi::state_short_name(*from),
                         uapi::state_short_name(*call.target));
    return fmt::format("set:{}", uapi::state_short_name(*call.target));
  }
  if (call.feature) return fmt::format("{}:{}", op_name(call.op), feature_name(*call.feature));
  return std::string(op_name(call.op));
}

bool Injector::where_matches(const Rule& r, const Call& call, const CallFacts& facts,
                             std::optional<std::optional<uapi::State>>& state) const {
  auto current = [&] {
    if (!state) state = facts.current_state ? facts.current_state() : std::nullopt;
    return *state;
  };
  if (r.when.side != Side::kAny && r.when.side != call.side) return false;
  const Where& w = r.where;
  switch (w.op) {
    case Op::kAny:
      for (const auto& a : r.actions)
        if (!applies(a.kind, call.op)) return false;
      break;
    case Op::kOpen:
      if (call.op != Op::kSet || call.feature != uapi::Feature::kMigDeviceState) return false;
      if (!facts.opens_fd || !facts.opens_fd()) return false;
      break;
    case Op::kGet:
    case Op::kSet:
    case Op::kProbe:
      if (call.op != w.op) return false;
      if (w.feature && call.feature != w.feature) return false;
      if (w.to && call.target != w.to) return false;
      if (w.from && current() != w.from) return false;
      break;
    default:
      if (call.op != w.op) return false;
  }
  if (r.when.state && current() != r.when.state) return false;
  return true;
}

void Injector::disarm() {
  std::lock_guard lock(mu_);
  disarmed_ = true;
}

Injector::Ticket Injector::begin(const Call& call, const CallFacts& facts) {
  if (call_hook_) call_hook_(call);
  Ticket t;
  {
    std::lock_guard lock(mu_);
    if (disarmed_) return t;
  }
  std::optional<std::optional<uapi::State>> state;
  // A SET is named by its arc (trace, logs): ask for the state before the lock (a GET).
  if (call.op == Op::kSet && call.target && facts.current_state) state = facts.current_state();
  bool cancel = false;
  std::uint64_t t_index = 0;
  {
    std::lock_guard lock(mu_);
    ++counts_[side_index(call.side)][static_cast<int>(call.op)];
    std::string where = where_of(call, state ? *state : std::nullopt);
    std::uint64_t index = 1;
    auto it = std::find_if(where_counts_.begin(), where_counts_.end(), [&](auto& p) {
      return p.first == std::pair{call.side, where};
    });
    if (it == where_counts_.end())
      where_counts_.push_back({{call.side, where}, 1});
    else
      index = ++it->second;
    if (recording_ && trace_.size() == kMaxTrace) {
      trace_overflowed_ = true;
    } else if (recording_) {
      t.trace = trace_.size();
      trace_.push_back(
          {call.side, call.op, std::move(where), index, 0, false, call.target, call.offset});
    }
    t_index = index;
  }
  for (std::size_t i = 0; i < plan_.rules.size(); ++i) {
    const Rule& r = plan_.rules[i];
    if (!where_matches(r, call, facts, state)) continue;  // may GET: outside the lock
    std::lock_guard lock(mu_);
    RuleState& s = states_[i];
    t.matched.push_back(i);
    const std::uint64_t n = ++s.matches;
    const When& w = r.when;
    if (w.nth && n < *w.nth) continue;
    if (w.every && n % *w.every != 0) continue;
    if (w.after && s.bytes < *w.after) continue;
    const std::uint64_t limit = w.times.value_or(w.nth ? 1 : ~0ULL);
    if (s.fires >= limit) continue;
    if (w.prob && std::uniform_real_distribution<double>(0, 1)(s.rng) >= *w.prob) continue;
    ++s.fires;
    for (const auto& a : r.actions) merge(t.effects, a);
    fired_.push_back(
        {r.text, call.side, where_of(call, state ? *state : std::nullopt), n, t_index});
    cancel |= t.effects.cancel;
  }
  if (t.effects.land && !t.effects.err) t.effects.err = EIO;
  if (cancel && cancel_hook_) cancel_hook_(call.side);
  return t;
}

void Injector::end(const Ticket& ticket, std::uint64_t bytes, bool failed) {
  std::lock_guard lock(mu_);
  for (std::size_t i : ticket.matched) states_[i].bytes += bytes;
  if (ticket.trace < trace_.size()) {
    trace_[ticket.trace].bytes = bytes;
    trace_[ticket.trace].failed = failed;
  }
}

Result<> Injector::pause(const Effects& effects, std::string_view what) {
  std::unique_lock lock(mu_);
  if (effects.delay.count() > 0) cv_.wait_for(lock, effects.delay, [&] { return cancelled_; });
  if (!effects.hang) return {};
  ++hanging_;
  cv_.wait(lock, [&] { return cancelled_; });
  --hanging_;
  return fail(ECANCELED, fmt::format("{}: injected hang ended by cancellation", what));
}

std::vector<TraceEntry> Injector::trace() const {
  std::lock_guard lock(mu_);
  return trace_;
}

bool Injector::trace_overflowed() const {
  std::lock_guard lock(mu_);
  return trace_overflowed_;
}

std::vector<Fired> Injector::fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

bool Injector::fired_kind(Side side, Kind kind) const {
  std::lock_guard lock(mu_);
  for (const auto& f : fired_) {
    if (f.side != side) continue;
    for (const auto& r : plan_.rules) {
      if (r.text != f.rule) continue;
      for (const auto& a : r.actions)
        if (a.kind == kind) return true;
    }
  }
  return false;
}

std::uint64_t Injector::count(Side side, Op op) const {
  std::lock_guard lock(mu_);
  return counts_[side_index(side)][static_cast<int>(op)];
}

void Injector::cancel() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

bool Injector::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool Injector::hanging() const {
  std::lock_guard lock(mu_);
  return hanging_ > 0;
}

}  // namespace vfio::faults
