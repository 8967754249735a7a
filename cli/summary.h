// What a finished command prints: a human summary on stdout, and with --json FILE the same
// facts for CI.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/session.h"

namespace vfio::cli {

struct Summary {
  explicit Summary(std::string name) : command(std::move(name)) {}
  std::string command;
  std::optional<Error> error;
  std::optional<Report> source;       // save side
  std::optional<Report> destination;  // load side
  std::optional<bool> verified;       // byte-for-byte comparison, when one ran
  std::uint64_t verified_bytes = 0;
  std::vector<std::pair<std::string, std::string>> facts;  // extra key/value lines (probe)
};

void print_summary(const Summary& s);
// Writes the summary as one JSON object; errors name the file.
Result<> write_json(const Summary& s, const std::string& path);

}  // namespace vfio::cli
