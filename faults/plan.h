// A fault plan: rules of where (which operation), when (which of its calls) and what (the
// fault). One text format for plan files, the CLI's --fault and the tests; docs/faults.md
// describes it. Parsing only: matching lives in injector.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/uapi.h"

namespace vfio::faults {

// Every operation a decorator sees. kAny only appears in rules.
enum class Op {
  kGet,
  kSet,
  kProbe,
  kReset,
  kRead,
  kWrite,
  kPrecopyInfo,
  kOpen,  // a SET whose final arc opens a data fd; calls are kSet, rules may say kOpen
  kClose,
  kConfigRead,
  kConfigWrite,
  kSend,
  kRecv,
  kAny,
};
std::string_view op_name(Op op);
// Ops that move stream bytes (count towards after=, accept short=, corrupt=...).
bool is_data_op(Op op);
bool is_channel_op(Op op);

// Which device a call hit: the migration source, the destination, or either.
enum class Side { kAny, kSource, kDestination };
std::string_view side_name(Side side);  // "src", "dst", "any"

std::string_view feature_name(uapi::Feature f);  // "migration", "state", "data-size", ...

struct Where {
  Op op = Op::kAny;
  std::optional<uapi::Feature> feature;  // get:/set:/probe:FEATURE
  std::optional<uapi::State> from;       // set:FROM>TO
  std::optional<uapi::State> to;         // set:STATE, set:FROM>TO
};

struct When {
  std::optional<std::uint64_t> nth, every, after;
  std::optional<uapi::State> state;
  std::optional<double> prob;
  std::optional<std::uint64_t> times;
  Side side = Side::kAny;  // extension: side=src|dst
};

enum class Kind {
  kErrno,
  kShort,
  kDelay,
  kLand,
  kAsyncReset,
  kCorrupt,
  kDrop,
  kDup,
  kTruncate,
  kEof,
  kHang,
  kCancel,  // extension: the migration is cancelled, then the call proceeds
};
std::string_view kind_name(Kind kind);

struct Action {
  Kind kind;
  std::uint64_t amount = 0;  // errno value, short K, corrupt/drop/dup N
  std::chrono::nanoseconds delay{};
  uapi::State state = uapi::State::kError;  // land=
};

// Whether a correct caller absorbs the fault, so that the migration must still succeed: a short
// transfer of at least one byte, a delay, EINTR or EAGAIN. Anything else may fail it cleanly.
bool tolerable(const Action& action);

struct Rule {
  std::string text;  // as written, trimmed: quoted in logs
  std::size_t line = 0;
  Where where;
  When when;
  std::vector<Action> actions;
};

struct Plan {
  std::uint64_t seed = 1;
  std::vector<Rule> rules;
};

// Parses a plan. Rules are separated by newlines or ';'. Errors read
// "<origin>:LINE:COL: what is wrong", columns 1-based.
Result<Plan> parse_plan(std::string_view text, std::string_view origin = "plan");

// A plan file's text. Plans are short: a file over kMaxPlanBytes (1 MiB) is refused after
// reading at most one byte more, so /dev/zero or a huge file costs no memory. A directory is an
// error too (EISDIR).
constexpr std::size_t kMaxPlanBytes = 1 << 20;
Result<std::string> read_plan_file(const std::string& path);

// Whether an action can act on this operation (eof only on read/recv, ...). Used by the
// parser for concrete WHEREs and by the matcher for `any`.
bool applies(Kind kind, Op op);

// Helpers shared with the CLI: "64K", "1M"; "10ms", "2s"; "EIO" or "5".
std::optional<std::uint64_t> parse_byte_size(std::string_view text);
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);
std::optional<int> parse_errno(std::string_view text);
std::string errno_name(int code);  // "EIO", or the number

}  // namespace vfio::faults
