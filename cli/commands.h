// The vfio-mig subcommands. Each returns the process exit code: 0 success, 1 the operation
// failed, 2 bad usage.
#pragma once

#include <span>
#include <string>

#include "cli/args.h"

namespace vfio::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Command {
  CommandSpec spec;
  int (*run)(const ParsedArgs& args);
};

std::span<const Command> all_commands();

// The whole program: argv without argv[0].
int run_program(std::span<const std::string> args);

// Subcommands.
int run_demo(const ParsedArgs& args);
int run_probe(const ParsedArgs& args);
int run_save(const ParsedArgs& args);
int run_load(const ParsedArgs& args);
int run_migrate(const ParsedArgs& args);
int run_faults(const ParsedArgs& args);
int run_conform(const ParsedArgs& args);
int run_fuzz_resume(const ParsedArgs& args);
int run_inspect(const ParsedArgs& args);

// Prints "vfio-mig CMD: message" on stderr, the message made printable (core/untrusted_text.h:
// it may quote a stream or a device).
void print_error(std::string_view command, std::string_view message);
// print_error(command, e.message), then returns kExitUsage.
int usage_error(std::string_view command, const Error& e);

}  // namespace vfio::cli
