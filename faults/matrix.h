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
  std::function<void(const CaseResult&, std::size_t done, std::size_t total)> on_result;
};

struct MatrixResult {
  std::vector<CaseResult> cases;
  std::chrono::nanoseconds wall{};
  unsigned jobs = 0;
};

Result<MatrixResult> run_matrix(const MatrixOptions& options);

// "vfio-mig faults --matrix SCENARIO --profile P [non-default options] --case ID"
std::string repro_command(const CaseSpec& spec, const CaseConfig& cfg);

}  // namespace vfio::faults
