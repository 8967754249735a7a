#include "core/result.h"

#include <cerrno>
#include <cstring>

namespace vfio {

std::string Error::describe() const {
  if (code == 0) return message;
  return message + ": " + std::strerror(code);
}

std::unexpected<Error> fail_errno(std::string message) {
  return fail(errno, std::move(message));
}

}  // namespace vfio
