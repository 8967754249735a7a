// Reporting a matrix run: the terminal tables (per scenario and profile, and per operation and
// fault), the failures with their reproduction commands, the summary line, JUnit and JSON.
#pragma once

#include <cstdio>
#include <string>

#include "faults/matrix.h"

namespace vfio::faults {

struct Tally {
  std::size_t cases = 0, passed = 0, failed = 0, state_lost = 0;
  std::size_t crashed = 0, timed_out = 0, kernel_hang = 0;  // of the failed
  // Passed without their fault: a plan that never fired (a named device did not repeat the clean
  // run's calls, or a random rule's prob= never drew): they exercised nothing.
  std::size_t never_fired = 0;
  void add(Verdict v);
};
Tally tally(const MatrixResult& r);

// "faults: N cases, N passed, N failed[ (N crashed, N timeout, N kernel-hang)][, N state-lost]
// [, N never fired]"
std::string summary_line(const Tally& t);

// Tables, failures (each with its reproduction command), then the summary line.
void print_report(std::FILE* out, const MatrixResult& r, bool verbose);
// One case in detail: the plan, what fired, what the caller was told, the verdict.
void print_case(std::FILE* out, const CaseResult& c);

Result<> write_junit(const MatrixResult& r, const std::string& path);
Result<> write_json(const MatrixResult& r, const std::string& path);
// The cases a run would run (`--list --json`), for a CI job that plans its shards.
Result<> write_case_list(const std::vector<MatrixCase>& cases, std::size_t shard_index,
                         std::size_t shard_count, const std::string& path);

}  // namespace vfio::faults
