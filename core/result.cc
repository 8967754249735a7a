#include "core/result.h"

#include <cerrno>
#include <cstring>
#include <string_view>

namespace vfio {

std::string Error::describe() const {
  if (code == 0) return message;
  const std::string_view cause = std::strerror(code);
  std::string out;
  out.reserve(message.size() + 2 + cause.size());  // one allocation, not one per append
  out.append(message).append(": ").append(cause);
  return out;
}

std::unexpected<Error> fail_errno(std::string message) {
  return fail(errno, std::move(message));
}

}  // namespace vfio
