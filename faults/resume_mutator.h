// The inputs of fuzz-resume: damaged copies of a device's own saved payload. Structure-aware for
// the payloads we know (the simulator's profiles, simdev/profile.h; the real mtty's struct
// mtty_data, docs/fidelity.md), byte-level for the rest. Seeded and portable: the same seed gives
// the same inputs on every machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vfio::faults {

// A little-endian integer field (size 1, 2, 4 or 8) or a byte range (any other size) of a
// payload we know.
struct PayloadField {
  std::string name;  // "nr_ports", "port1.head", "sim.size" ...
  std::size_t offset = 0;
  std::size_t size = 0;
};

struct PayloadLayout {
  std::string name;  // "mtty" (the kernel's mtty), "sim:mtty", "sim:plain", "sim:mlx5", "bytes"
  std::vector<PayloadField> fields;
};

// Recognizes a payload from its own bytes (magic numbers, and sizes that agree with the header).
PayloadLayout recognize_payload(std::span<const std::byte> payload);

class ResumeMutator {
 public:
  explicit ResumeMutator(std::uint64_t seed) : state_(seed) {}

  struct Mutant {
    std::vector<std::byte> bytes;  // never equal to the base it came from
    std::string how;               // "nr_ports = 0xffffffff", "bit 3 of byte 40 flipped" ...
  };
  // A damaged copy of `base`: one to three mutations, field-wise when the layout has fields;
  // `other` (another seed of the corpus, may be empty) is spliced in now and then. Inputs grow
  // to at most 2 * base.size() + 4096 bytes.
  Mutant mutate(std::span<const std::byte> base, const PayloadLayout& layout,
                std::span<const std::byte> other);

  std::uint64_t next();                  // splitmix64
  std::uint64_t below(std::uint64_t n);  // in [0, n), n > 0

 private:
  std::string mutate_field(std::vector<std::byte>& b, const PayloadField& f);
  std::string mutate_bytes(std::vector<std::byte>& b, std::span<const std::byte> other,
                           std::size_t limit);
  std::uint64_t state_;
};

}  // namespace vfio::faults
