// The kernel-health oracle: the kernel log lines, new since a mark, that report trouble (WARN,
// BUG, Oops, KASAN, UBSAN, lockdep, soft lockup, RCU stall, hung task, refcount; the list is
// core/kernel_trouble.patterns, shared with the kernel lane's dmesg check), less those a
// user-given regex accepts as known noise.
//
// The log is read in /dev/kmsg's record format, "PRI,SEQ,USEC,FLAGS;MESSAGE" with continuation
// lines starting with a space, from /dev/kmsg itself or from a file in that format (tests).
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/result.h"

namespace vfio {

struct KernelTrouble {
  std::string kind;     // "warning", "lockdep", ...
  std::string message;  // the record's message
};

// Which kind of trouble a kernel log message reports, if any.
std::optional<std::string> kernel_trouble_kind(const std::string& message);

// A --kernel-log-ignore regex (ECMAScript syntax); EINVAL with the reason when it is not one.
Result<std::regex> parse_kernel_log_ignore(const std::string& regex);

class KernelLog {
 public:
  // Opens the log with its mark at the current end. `ignore` (ECMAScript syntax) drops the
  // messages it matches anywhere; a bad regex is EINVAL.
  static Result<KernelLog> open(const std::string& path = "/dev/kmsg",
                                const std::optional<std::string>& ignore = std::nullopt);
  KernelLog(KernelLog&& other) noexcept;
  KernelLog& operator=(KernelLog&&) = delete;
  ~KernelLog();

  // The troubles logged since the mark (or the previous call), then moves the mark to the end.
  Result<std::vector<KernelTrouble>> since_mark();

 private:
  KernelLog(int fd, std::optional<std::regex> ignore) : fd_(fd), ignore_(std::move(ignore)) {}
  int fd_ = -1;
  std::optional<std::regex> ignore_;
  std::string partial_;  // a record not yet complete (files are read in chunks)
};

}  // namespace vfio
