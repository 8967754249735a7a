// Running the vfio-mig program in process for tests: exit code and captured output, plus a
// fixture with a private temporary directory per test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace vfio::cli::testing {

struct Run {
  int code;
  std::string out, err;
};

inline Run run(std::vector<std::string> args) {
  // As main() does (cli/main.cc): a destination that stops reading early must reach the source
  // as EPIPE, not kill the test.
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  int code = run_program(args);
  std::string out = ::testing::internal::GetCapturedStdout();
  std::string err = ::testing::internal::GetCapturedStderr();
  return {code, out, err};
}

// A file's whole text ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A parameterised test's name ("Load/3") holds a slash: one directory level, not two, so
    // that TearDown removes all it made.
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = std::filesystem::temp_directory_path() /
           ("vfio-mig-cli-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

}  // namespace vfio::cli::testing
