// Whether the bytes a source wrote are a well-formed vfio-mig stream (docs/stream-format.md)
// as far as they go: a stream cut short is fine, anything malformed before the cut is not.
#pragma once

#include <span>
#include <string>

namespace vfio::faults {

struct StreamCheck {
  bool well_formed = true;  // false: malformed content before the end
  bool complete = false;    // the END section and its checksum were read
  std::string problem;      // why not well formed, or where it was cut
};

StreamCheck check_stream(std::span<const std::byte> bytes);

}  // namespace vfio::faults
