// Errors as values. Every fallible call at the device seam, in the stream and in the engine
// returns Result<T>: a value, or an Error carrying an errno and a sentence for the user.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace vfio {

struct Error {
  int code = 0;         // a positive errno value
  std::string message;  // what failed, for a human; never empty when returned
  bool fatal = false;   // the device is unusable (e.g. a reset failed): stop using it
  // The device's own account of a refusal, when it gives one (the simulator does, on either
  // transport; a kernel driver only logs to dmesg). Already part of `message`; kept apart for
  // callers that rebuild the message around it.
  std::string reason = {};

  // "message: strerror(code)"
  std::string describe() const;
};

template <class T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(int code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

// Builds an Error from errno after a failed syscall.
std::unexpected<Error> fail_errno(std::string message);

}  // namespace vfio
