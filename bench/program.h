// vfio_mig_bench as a function, so that the tests can run it in process (a FUSE-served device
// answers only its own process).
#pragma once

namespace vfio::bench {

// Exit codes: 0; 1 a device failed (not RUNNING after, a call stuck in the kernel: the process
// exits there); 2 usage, or a device refused before anything was sent to it (not RUNNING).
// The JSON's context (benchmark::AddCustomContext) keeps the first value of a key for the whole
// process, and benchmark::Shutdown() (main's) ends it: a process measures one set of devices.
int bench_main(int argc, char** argv);

}  // namespace vfio::bench
