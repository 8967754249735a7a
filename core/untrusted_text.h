// Text that came from a stream or a device (device ids, messages quoting them) is untrusted: a
// hostile id must not drive the terminal (ESC ] 0 ; ... BEL retitles it), break a JSON report or
// turn one error into a 16 KB line. These make such text safe to show. JSON quoting is in
// core/json_text.h and shares the UTF-8 rules below.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace vfio {

// The length of the well-formed UTF-8 sequence at the start of `s` (1 to 4), or 0 if there is
// none: a stray continuation byte, a cut sequence, an overlong form, a surrogate or a code point
// above U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s);

// `s` with control characters (C0, DEL, C1) and bytes that are not well-formed UTF-8 written as
// \xNN, everything else kept. Applying it twice changes nothing more.
std::string printable(std::string_view s);

// printable(s), cut to at most `max_bytes` of the original (on a character boundary) with
// "..." appended when it was longer.
std::string printable_prefix(std::string_view s, std::size_t max_bytes);

// The most ids id_list shows, and the most bytes of each.
constexpr std::size_t kListedIds = 4;
constexpr std::size_t kListedIdBytes = 64;

// Ids for a message: each quoted, printable and cut to kListedIdBytes; after kListedIds of them
// "... (+N more)". "'a', 'b', 'c', 'd', ... (+60 more)".
std::string id_list(std::span<const std::string> ids);

}  // namespace vfio
