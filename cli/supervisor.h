// A command's verdict must reach its caller even when a thread of the command is stuck in the
// kernel for good (Linux 6.12 spins for ever in vfio_mig_get_next_state on SC->PC). Such a
// process can never be waited for: exit_group ends every thread but the stuck one, and a
// thread-group leader is not reaped while any thread of its group lives, so the shell that
// started it would wait for ever. So the device work runs in a child process, which reports its
// exit code through a pipe before it exits; the parent (the process the caller started) exits
// with that code without waiting for the child to be reaped.
//
// The child stays in the caller's process group, so a terminal's Ctrl-C and timeout(1) reach it
// as they would reach the command itself; the parent ignores SIGINT, SIGTERM and SIGHUP (the
// child reports how they ended it). Before it reports, the child flushes its output and puts
// /dev/null in place of its stdin, stdout and stderr, so that a reader of the command's output
// sees its end once the parent exits, even while the child's stuck thread holds its files.
#pragma once

#include <functional>
#include <string_view>

namespace vfio::cli {

// Runs `work` in a child process and returns its exit code; 128+N when the child died of signal
// N before it reported. A child that has not ended 2 s after it reported is left behind, with a
// line on stderr naming its threads that are still in the kernel.
int run_supervised(std::string_view command, const std::function<int()>& work);

}  // namespace vfio::cli
