// main() for builds without libFuzzer (GCC, or AFL++ with `@@`): runs LLVMFuzzerTestOneInput
// once per file named on the command line (directories are walked), or once on stdin.
// Reproduces a crash without clang: build/release/tests/fuzz/stream_fuzzer crash-<sha1>.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

void run(std::istream& in, const std::string& name) {
  std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(data.data(), data.size());
  std::fprintf(stderr, "ran %s (%zu bytes)\n", name.c_str(), data.size());
}

void run_path(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(path)) {
      if (e.is_regular_file()) run_path(e.path());
    }
    return;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    std::exit(2);
  }
  run(f, path.string());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    run(std::cin, "stdin");
    return 0;
  }
  for (int i = 1; i < argc; ++i) run_path(argv[i]);
  return 0;
}
