// Command-line parsing for vfio-mig: each subcommand declares its options; anything else is a
// usage error (exit code 2) with a one-line message.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/units.h"

namespace vfio::cli {

struct OptionSpec {
  std::string_view name;        // without the leading "--"
  std::string_view value_name;  // empty: a flag without a value
  std::string_view help;
  char short_name = 0;  // e.g. 'o' for -o
};

struct CommandSpec {
  std::string_view name;
  std::string_view positionals;  // for the usage line, e.g. "SRC DST"
  std::size_t min_positionals = 0;
  std::size_t max_positionals = 0;
  // The first line is the overview's one-line summary, a whole sentence; 'COMMAND --help' shows
  // all of it.
  std::string_view summary;
  std::vector<OptionSpec> options;
};

class ParsedArgs {
 public:
  std::vector<std::string> positionals;
  std::map<std::string, std::string, std::less<>> values;  // flags map to ""

  bool has(std::string_view name) const { return values.contains(name); }
  std::optional<std::string> value(std::string_view name) const;
};

// Parses `args` (without the program and subcommand names). `--help` is left to the caller
// as the flag "help". Errors have code EINVAL and a message fit for one line (the caller names
// the command). A value option given twice is an error.
Result<ParsedArgs> parse_args(const CommandSpec& spec, std::span<const std::string> args);

// The usage text for one command.
std::string command_help(std::string_view program, const CommandSpec& spec);

}  // namespace vfio::cli
