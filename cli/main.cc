#include <csignal>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/interrupt.h"

int main(int argc, char** argv) {
  // A destination that goes away must surface as EPIPE on the stream, not kill the source.
  std::signal(SIGPIPE, SIG_IGN);
  vfio::cli::interrupt::install();
  std::vector<std::string> args(argv + 1, argv + argc);
  return vfio::cli::run_program(args);
}
