// A lossless, editable view of a vfio-mig stream (docs/stream-format.md) for the fuzzers: the
// structure-aware mutator parses an input into header, sections and tagged items, edits one
// field, and writes it back with every CRC-32C recomputed, so that a mutation gets past the
// checksums and reaches the device. The corpus generator builds its edge cases with it too.
// Deliberately independent of core/container.cc: a second reading of the format, not a copy.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vfio::fuzz {

using Bytes = std::vector<std::uint8_t>;

// One tagged element of a device payload. `length` is what the stream claims and may differ
// from body.size(): a lying length is one of the things worth sending.
struct Item {
  std::uint64_t tag = 0;
  bool has_length = false;  // DATA and CONFIG carry a length and a body
  std::uint64_t length = 0;
  Bytes body;
};

struct Section {
  std::uint32_t type = 0;
  std::uint32_t device = 0;
  std::vector<Item> items;  // the payload, its terminating tag included when present
};

struct Stream {
  std::uint64_t magic = 0;
  std::uint32_t version = 0;
  std::uint32_t count = 0;  // as written; may disagree with ids.size()
  std::vector<std::string> ids;
  std::vector<Section> sections;  // the end section included
  Bytes tail;                     // whatever did not parse, kept verbatim
};

// A section-target input (harness.h run_section): a profile byte, then sections, each a type
// byte and its payload; the byte modulo 4 picks the type from kSectionTypes. Section::device is
// unused here.
constexpr std::array<std::uint32_t, 4> kSectionTypes = {1 /*setup*/, 5 /*iterate*/, 2 /*complete*/,
                                                        3 /*config*/};
struct SectionInput {
  std::uint8_t profile = 0;
  std::vector<Section> sections;
  Bytes tail;  // whatever did not parse, kept verbatim
};

// How serialisation treats checksums.
struct CrcPolicy {
  int corrupt_section = -1;  // index into sections to get a wrong CRC; -1 none
  bool corrupt_header = false;
};

// Items of a payload, read until END_OF_STATE or INIT_DATA_SENT (included; the latter ends a
// pre-copy section) or, when `to_end`, until the data
// runs out. Returns the bytes consumed; a truncated item stops the parse before it.
std::size_t parse_items(std::span<const std::uint8_t> data, bool to_end, std::vector<Item>& out);
void write_items(const std::vector<Item>& items, Bytes& out);

// Parses as far as the framing allows; nullopt when even the header does not parse (wrong
// magic, more than 64 ids, an id over 256 bytes, truncated). Checksums are not verified.
std::optional<Stream> parse_stream(std::span<const std::uint8_t> data);
// Just the header's device ids (magic checked, 0 to 64 of them), as views into `data`, into
// `ids` (cleared first; its storage reused); false if they do not parse.
bool parse_ids(std::span<const std::uint8_t> data, std::vector<std::string_view>& ids);
Bytes write_stream(const Stream& s, CrcPolicy crc = {});

// `data` must not be empty (its first byte is the profile).
SectionInput parse_section_input(std::span<const std::uint8_t> data);
Bytes write_section_input(const SectionInput& input);

// The profile a destination should use for a device id: the first simulator profile whose
// name appears in it, else mlx5 (the profile with the most framing to get wrong).
std::string profile_for_id(std::string_view id);

// Common builders for seeds and tests.
Item tag_item(std::uint64_t tag);
Item data_item(Bytes body);
Item config_item(Bytes body);
Section section(std::uint32_t type, std::uint32_t device, std::vector<Item> items);
Section end_section();

// The structure-aware mutation: edits one field of the parsed input (a tag, a length, a body,
// a section's type or device, the header) and re-serialises it with valid checksums (rarely
// a corrupted one). `plain` is libFuzzer's byte-level mutator, applied to a body in place.
// Returns the new size, or 0 when the input does not parse as `kind` (the caller then falls
// back to the plain mutator).
enum class Kind { kStream, kSection };
using PlainMutator = std::function<std::size_t(std::uint8_t*, std::size_t, std::size_t)>;
std::size_t mutate_structured(Kind kind, std::uint8_t* data, std::size_t size, std::size_t max_size,
                              std::uint32_t seed, const PlainMutator& plain);

// Crossover at section granularity: the header of `a`, a prefix of a's sections, a suffix
// of b's. Returns 0 when either does not parse.
std::size_t cross_over(Kind kind, std::span<const std::uint8_t> a, std::span<const std::uint8_t> b,
                       std::uint8_t* out, std::size_t max_size, std::uint32_t seed);

}  // namespace vfio::fuzz
