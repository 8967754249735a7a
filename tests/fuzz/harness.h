// What one fuzz input does, shared by the libFuzzer entry points, the standalone replayer and
// the corpus replay test: the real loader (Session / Migration) against simulated devices
// behind DirectDevice, in memory, with the oracles a crash-free run must also satisfy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/migration.h"

namespace vfio::fuzz {

// The stream reader's buffer in the harness. Small on purpose: every 4 KiB is a refill, so
// inputs of a few KiB already cross buffer boundaries, and a run allocates little.
constexpr std::size_t kStreamBufferSize = 4096;

// The documented allocation bound: no single allocation while loading one input may reach
// this (libFuzzer: -malloc_limit_mb=1; the replay test counts operator new).
constexpr std::size_t kMaxSingleAllocation = 1 << 20;
// And the heap in use may grow by at most this much during one input (replay test).
constexpr std::size_t kMaxHeapGrowth = 4 << 20;

struct Outcome {
  bool accepted = false;
  std::string error;      // the loader's message when it rejected the input
  std::string violation;  // an oracle that failed; empty when all is well
};

// The whole incoming stream: a destination Session with as many simulated devices as the
// header names (1 when the header does not parse), each of the profile its id names (see
// profile_for_id), then Session::load. The Session and its devices are kept for the next
// input naming the same ids, restored as they were created (a load that leaves one otherwise
// is an oracle violation, and drops it).
Outcome run_stream(std::span<const std::uint8_t> input);

// One device's sections: byte 0 picks the profile (modulo the profile count), then each
// section is a type byte (stream_model.h kSectionTypes) and its payload, fed to
// Migration::load_state on a device in RESUMING until the input ends or one fails; then the
// config commit, cleanup and RESUMING -> STOP -> RUNNING, where the device validates what it
// received. The order of sections is not checked here (that is Session's, stream_fuzzer's).
Outcome run_section(std::span<const std::uint8_t> input);

// The stream grammar (docs/stream-format.md) read again, independently of core/ (over the
// stream model): why run_stream's destination must refuse `input`, or nothing for a well-formed
// stream it may take (its devices can still refuse the data). Includes the destination's own
// settings: config space restored into a 256-byte region, no switchover-ack. run_stream checks
// every accepted input against it.
std::optional<std::string> grammar_violation(std::span<const std::uint8_t> input);

// A real saved stream: what `vfio-mig save` writes for one simulated device of `profile` with
// `size` bytes of state, seeded `seed` and named "<profile>#<seed>". Aborts if the save fails
// (a broken build, not an input).
std::vector<std::uint8_t> saved_stream(std::string_view profile, std::uint64_t size,
                                       std::uint64_t seed = 1, MigrationOptions options = {});

// For the entry points: prints the violation and aborts, so the fuzzer records a crash.
void enforce(const Outcome& outcome, const char* target);

}  // namespace vfio::fuzz
