// The fault matrix: for each scenario and profile, record a clean run's operation trace, then
// one case per (operation x applicable fault) on fresh devices, plus seeded random multi-fault
// cases; run them on a thread pool, each under a watchdog, and judge each with the oracles.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "faults/scenario.h"
#include "faults/watchdog.h"

namespace vfio::faults {

struct CaseResult {
  CaseSpec spec;
  CaseConfig config;
  Judgement judgement;
  std::vector<Fired> fired;
  std::string error;  // what the caller was told (empty on success)
  std::chrono::nanoseconds elapsed{};
  std::string repro;  // the command that runs this case alone
  bool hung = false;  // it did not end after it was cancelled: its thread is still running
};

// Runs one case under a watchdog: hangs are cancelled, a case that never ends is reported.
CaseResult run_watched(const CaseSpec& spec, const CaseConfig& cfg, const WatchdogOptions& w);

struct Enumeration {
  std::vector<CaseSpec> cases;
  std::vector<TraceEntry> trace;  // of the clean run
};

// The most random cases one enumeration makes: each is held in memory until it ran.
constexpr std::uint64_t kMaxRandomCases = 100'000;

// Records the clean run of `scenario` and derives its cases: the systematic sweep, then
// `random` seeded multi-fault cases (ids random.SEED.K; at most kMaxRandomCases).
Result<Enumeration> enumerate_cases(Scenario scenario, const CaseConfig& cfg, bool systematic,
                                    std::uint64_t random, std::uint64_t seed);

// SEED and K of "random.SEED.K"; anything else (an overflowing number too) is an error.
Result<std::pair<std::uint64_t, std::uint64_t>> parse_random_case_id(std::string_view id);

// The case with this id (systematic or random.SEED.K), without enumerating the others' runs.
Result<CaseSpec> find_case(Scenario scenario, const CaseConfig& cfg, const std::string& id);

// Cases per child process by default: figures in docs/faults.md (process isolation).
constexpr std::size_t kDefaultBatch = 32;

struct MatrixOptions {
  std::vector<Scenario> scenarios;
  std::vector<std::string> profiles;
  CaseConfig base;  // profile is replaced per profile
  bool systematic = true;
  std::uint64_t random = 0, seed = 1;
  std::optional<std::string> only_case;
  unsigned jobs = 0;  // 0: hardware threads
  std::size_t shard_index = 0, shard_count = 1;
  WatchdogOptions watchdog;
  // Cases run in child processes, this many per child (a crash ends the child and its case; the
  // child's other cases run in a new one). 0: on threads of this process, not isolated.
  std::size_t batch = kDefaultBatch;
  // After SIGKILL, how long a child has to go before it counts as stuck in the kernel.
  std::chrono::milliseconds kill_grace{2'000};
  // Tests only: runs in the child before each case (to crash or block a case on purpose).
  std::function<void(const CaseSpec&)> in_child;
  std::function<void(const CaseResult&, std::size_t done, std::size_t total)> on_result;
};

struct MatrixResult {
  std::vector<CaseResult> cases;  // those that ran, in matrix order
  // A case left a process stuck in the kernel: the run stopped there (why, with the reproduction
  // command) and this many cases did not run.
  std::string stopped;
  std::size_t not_run = 0;
  std::chrono::nanoseconds wall{};
  unsigned jobs = 0;
};

struct MatrixCase {
  CaseSpec spec;
  CaseConfig cfg;
};

// The cases `options` selects, in matrix order: each profile's scenarios (or only_case), then
// this shard's part. Enumerating runs each scenario once, clean, to record its operations.
Result<std::vector<MatrixCase>> list_cases(const MatrixOptions& options);

Result<MatrixResult> run_matrix(const MatrixOptions& options);

// "vfio-mig faults --matrix SCENARIO --profile P [non-default options] --case ID"
std::string repro_command(const CaseSpec& spec, const CaseConfig& cfg);

}  // namespace vfio::faults
