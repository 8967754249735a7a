// The byte-level faults shared by the device and channel decorators: a read or write that
// transfers fewer bytes, corrupted bytes, dropped or duplicated bytes. Sticky truncation and
// early EOF are the callers' (they own the per-fd state).
#pragma once

#include <functional>
#include <span>

#include "faults/injector.h"

namespace vfio::faults {

using ReadFn = std::function<Result<std::size_t>(std::span<std::byte>)>;
using WriteFn = std::function<Result<std::size_t>(std::span<const std::byte>)>;

// short=K asks the inner read for at most K bytes; dup=N reserves room and repeats the first
// N bytes read; drop=N removes N bytes (never all of them: 0 would mean end of stream);
// corrupt=N flips N bytes spread over what was read.
Result<std::size_t> faulty_read(const Effects& e, std::span<std::byte> buf, const ReadFn& inner);

// short=K hands the inner write at most K bytes; corrupt=N flips N bytes of a copy; drop=N
// leaves out the last N bytes but reports them written; dup=N writes the first N bytes twice.
Result<std::size_t> faulty_write(const Effects& e, std::span<const std::byte> buf,
                                 const WriteFn& inner);

// Flips `n` bytes spread evenly over `bytes`.
void corrupt_bytes(std::span<std::byte> bytes, std::uint64_t n);

}  // namespace vfio::faults
