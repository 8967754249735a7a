// Replays every file under corpus/ (seeds and regressions) through both fuzz targets' logic:
// no crash (ASan+UBSan in the asan preset), no oracle violation, allocation within the
// documented bound, bounded time, and every rejection explained by a non-empty message.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "tests/fuzz/counting_new.h"
#include "tests/fuzz/harness.h"
#include "tests/fuzz/qemu_harness.h"
#include "tests/fuzz/stream_model.h"

namespace vfio::fuzz {
namespace {

namespace fs = std::filesystem;

// Generous: the largest seed loads in milliseconds even in a Debug ASan build.
constexpr auto kMaxTimePerInput = std::chrono::seconds(5);

struct CorpusFile {
  fs::path path;
  std::vector<std::uint8_t> data;
};

std::vector<CorpusFile> corpus_files() {
  std::vector<CorpusFile> out;
  for (const auto& e : fs::recursive_directory_iterator(VFIO_MIG_CORPUS_DIR)) {
    if (!e.is_regular_file()) continue;
    auto ext = e.path().extension();
    if (ext == ".md" || ext == ".dict") continue;
    std::ifstream f(e.path(), std::ios::binary);
    out.push_back({e.path(), std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)),
                                                       std::istreambuf_iterator<char>())});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return out;
}

// The directory a file was made for: corpus/<target>/ or corpus/regressions/<target>/.
bool belongs_to(const fs::path& path, std::string_view target) {
  return path.parent_path().filename() == target;
}

using Runner = Outcome (*)(std::span<const std::uint8_t>);

// Runs one input under the allocation counter and the clock, checking every oracle.
Outcome replay(Runner run, const CorpusFile& file) {
  SCOPED_TRACE(file.path.string());
  AllocationStats stats;
  auto start = std::chrono::steady_clock::now();
  Outcome out;
  {
    AllocationCounter counter;
    out = run(file.data);
    stats = counter.stats();
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(out.violation, "");
  if (!out.accepted) {
    EXPECT_NE(out.error, "") << "rejected without a message";
  }
  EXPECT_GT(stats.count, 0u) << "the allocation counter saw nothing";
  EXPECT_LT(stats.largest, kMaxSingleAllocation) << "largest single allocation";
  EXPECT_LE(stats.peak_growth, static_cast<std::int64_t>(kMaxHeapGrowth)) << "peak heap growth";
  EXPECT_LT(elapsed, kMaxTimePerInput);
  if (std::getenv("VFIO_FUZZ_REPLAY_VERBOSE")) {
    std::printf("%-50s %8s largest %7zu peak %8lld allocs %5zu  %s\n", file.path.filename().c_str(),
                out.accepted ? "accepted" : "rejected", stats.largest,
                static_cast<long long>(stats.peak_growth), stats.count,
                out.error.substr(0, 80).c_str());
  }
  return out;
}

TEST(CorpusReplay, CorpusIsThere) {
  auto files = corpus_files();
  std::size_t streams = 0, sections = 0;
  for (const auto& f : files) {
    streams += belongs_to(f.path, "stream");
    sections += belongs_to(f.path, "section");
  }
  EXPECT_GT(streams, 50u);
  EXPECT_GT(sections, 30u);
}

// Every file through the stream loader: its own seeds must load (the real saved ones) or fail
// for the reason they were made for; every other file is just arbitrary bytes to survive.
TEST(CorpusReplay, StreamTarget) {
  // Real saves: "<profile>-<size>[-variant]" and the multi-device streams built from them.
  const std::regex real(R"((mtty|mlx5|stopcopy|p2p|plain)-\d+(-chunked|-precopy)?|multi-\d+)");
  const std::vector<std::pair<std::string, std::string>> reasons = {
      {"empty", "truncated"},
      {"wrong-magic", "not a vfio-mig stream"},
      {"wrong-version", "version 2 is not supported"},
      {"count-65", "claims 65 devices"},
      {"id-257", "exceeds the 256-byte limit"},
      {"bad-header-crc", "checksum mismatch"},
      {"bad-complete-crc", "checksum mismatch"},
      {"complete-before-setup", "complete section where a setup section was expected"},
      {"complete-before-setup-of-another", "after another device's config section"},
      {"device-1-of-1", "names device 0x1"},
      {"section-type-4", "unknown section type 0x4"},
      {"no-end", "truncated"},
      {"config-4097", "exceeds the 4096-byte limit"},
      {"complete-unknown-tag", "DEV_INIT_DATA_SENT at stream offset"},
      // The grammar (docs/stream-format.md): each of these loaded before the loader held
      // streams to it (corpus/regressions/stream/).
      {"stream-twice", "bytes follow the end section"},
      {"extra-byte", "bytes follow the end section"},
      {"end-twice", "bytes follow the end section"},
      {"trailing-garbage", "bytes follow the end section"},
      {"config-after-end", "bytes follow the end section"},
      {"config-twice", "config section where nothing"},
      {"config-end-only", "END_OF_STATE at stream offset 266, where the config section holds"},
      {"config-4096", "larger than the device's config region"},
      {"data-in-setup", "DEV_DATA_STATE at stream offset 38, where the setup section holds"},
      {"data-in-config", "DEV_DATA_STATE at stream offset 86, where the config section holds"},
      {"stopcopy-iterate", "the device has no PRE_COPY"},
      {"iterate-two-blocks", "where the iterate section holds at most one"},
      {"init-data-sent-in-complete", "DEV_INIT_DATA_SENT at stream offset"},
      {"complete-data-0", "empty DEV_DATA_STATE chunk at stream offset"},
      {"data-size-0x8000000000000000", "chunk of 9223372036854775808 bytes at stream offset 66"},
      {"data-flipped-byte", "rejected the loaded data: the arc RESUMING -> STOP failed"},
      {"wrong-profile-data",
       "rejected the loaded data: the arc RESUMING -> STOP failed (on the "
       "way to RUNNING_P2P): resume stream header malformed"},
      {"mlx5-100-no-config", "saved with --no-config"},
  };
  for (const auto& file : corpus_files()) {
    Outcome out = replay(run_stream, file);
    if (!belongs_to(file.path, "stream")) continue;
    std::string name = file.path.stem().string();
    if (std::regex_match(name, real)) {
      EXPECT_TRUE(out.accepted) << name << ": " << out.error;
    }
    for (const auto& [seed, reason] : reasons) {
      if (name != seed) continue;
      EXPECT_FALSE(out.accepted) << name;
      EXPECT_NE(out.error.find(reason), std::string::npos) << name << ": " << out.error;
    }
  }
}

TEST(CorpusReplay, SectionTarget) {
  const std::regex real(
      R"((mtty|mlx5|stopcopy|p2p|plain)-(\d+-complete|2000-chunked|all-sections))");
  for (const auto& file : corpus_files()) {
    Outcome out = replay(run_section, file);
    if (!belongs_to(file.path, "section")) continue;
    std::string name = file.path.stem().string();
    if (std::regex_match(name, real)) {
      EXPECT_TRUE(out.accepted) << name << ": " << out.error;
    }
    static const std::vector<std::pair<std::string, std::string>> reasons = {
        {"data-flipped-byte", "rejected the loaded data"},
        {"tag-unknown", "unknown tag 0x0 at stream offset"},
        {"setup-holding-data", "DEV_DATA_STATE at stream offset 1, where the setup section"},
        {"config-end-only", "END_OF_STATE at stream offset 1, where the config section"},
        {"iterate-two-blocks", "where the iterate section holds at most one"},
        {"iterate-init-data-sent", "switchover-ack is not in use"},
        {"tag-data-0", "empty DEV_DATA_STATE chunk"},
    };
    for (const auto& [seed, reason] : reasons) {
      if (name != seed) continue;
      EXPECT_FALSE(out.accepted) << name;
      EXPECT_NE(out.error.find(reason), std::string::npos) << name << ": " << out.error;
    }
  }
}

// Every file through the QEMU stream reader: the real QEMU streams and the seeds built from
// them (corpus/qemu/) are read whole; every other file (corpus/regressions/qemu/ too) is
// arbitrary bytes to survive.
TEST(CorpusReplay, QemuTarget) {
  std::size_t qemu = 0;
  for (const auto& file : corpus_files()) {
    Outcome out = replay(run_qemu, file);
    if (file.path.parent_path() != fs::path(VFIO_MIG_CORPUS_DIR) / "qemu") continue;
    ++qemu;
    EXPECT_TRUE(out.accepted) << file.path << ": " << out.error;
  }
  EXPECT_GE(qemu, 1u);
}

// The targets reuse devices and destinations between inputs; an input's outcome must not
// depend on what ran before it. Every file, in two orders, with each stream input also run
// straight after a 5-device one and after a device-refusing one: the same outcome each time.
// Data fd numbers are the one thing allowed to differ: a device hands out a new one per
// session, as the kernel does.
TEST(CorpusReplay, OutcomesDoNotDependOnEarlierInputs) {
  auto files = corpus_files();
  const auto outcome = [](Runner run, const std::vector<std::uint8_t>& data) {
    Outcome o = run(data);
    return std::make_pair(o.accepted, std::regex_replace(o.error, std::regex("fd \\d+"), "fd N"));
  };
  const auto by_name = [&](std::string_view name) {
    return std::find_if(files.begin(), files.end(),
                        [&](const auto& f) { return f.path.filename() == name; })
        ->data;
  };
  const std::vector<std::vector<std::uint8_t>> stream_before = {by_name("multi-5.bin"),
                                                                by_name("data-flipped-byte.bin")};
  for (Runner run : {run_stream, run_section}) {
    std::vector<std::pair<bool, std::string>> first;
    for (const auto& f : files) first.push_back(outcome(run, f.data));
    for (std::size_t i = files.size(); i-- > 0;) {
      EXPECT_EQ(outcome(run, files[i].data), first[i]) << files[i].path;
      if (run != run_stream) continue;
      for (const auto& before : stream_before) {
        (void)run(before);
        EXPECT_EQ(outcome(run, files[i].data), first[i]) << files[i].path;
      }
    }
  }
}

// libFuzzer counts the mallocs and frees of every run and runs again any input that made more
// allocations than it freed, suspecting a leak (and does a full leak check when the rerun does
// too). An input that leaves memory behind for its successor to free (a device's last refusal,
// an uncommitted config blob) therefore costs two runs. Each input here follows a predecessor
// on the same destination that leaves nothing (a real saved stream, which loads, for one
// device; the input's header alone for several) and must free as many blocks as it allocates.
TEST(CorpusReplay, InputsReleaseWhatTheyAllocate) {
  for (const auto& file : corpus_files()) {
    if (!belongs_to(file.path, "stream")) continue;
    Bytes before;  // no header: the default destination's predecessor is the empty input
    if (auto s = parse_stream(file.data); s && s->ids.size() == 1) {
      before = saved_stream(profile_for_id(s->ids[0]), 100);
    } else if (s) {
      s->sections.clear();
      s->tail.clear();
      before = write_stream(*s);
    }
    (void)run_stream(file.data);  // builds its destination
    (void)run_stream(before);
    AllocationStats stats;
    {
      AllocationCounter counter;
      (void)run_stream(file.data);
      stats = counter.stats();
    }
    EXPECT_LE(stats.count - stats.aligned, stats.released) << file.path;
  }
}

// What an execution costs under the sanitizers is largely its allocations (ASan's allocator,
// stack depot and quarantine, libFuzzer's malloc hooks): the loader, the simulated devices and
// this harness keep their storage across inputs (a Session's read buffer and header, the
// devices' session tables, the harness's id list). Pinned here so that it cannot creep back:
// every stream file run once more, on destinations already built, allocates at most this many
// blocks per input on average (20.2 before, 8.4 when this was written; what is left is mostly
// the grammar oracle's model of each accepted stream, and the refusals' text the oracles read).
constexpr double kMaxAllocationsPerInput = 10;

TEST(CorpusReplay, StreamInputsAllocateLittle) {
  std::vector<CorpusFile> streams;
  for (auto& f : corpus_files())
    if (belongs_to(f.path, "stream")) streams.push_back(std::move(f));
  for (const auto& f : streams) (void)run_stream(f.data);  // builds the destinations
  std::size_t total = 0;
  for (const auto& f : streams) {
    AllocationStats stats;
    {
      AllocationCounter counter;
      (void)run_stream(f.data);
      stats = counter.stats();
    }
    total += stats.count;
    if (std::getenv("VFIO_FUZZ_REPLAY_VERBOSE"))
      std::printf("%-50s allocs %3zu\n", f.path.filename().c_str(), stats.count);
  }
  const double per_input = static_cast<double>(total) / static_cast<double>(streams.size());
  std::printf("%zu stream inputs: %.2f allocations per input\n", streams.size(), per_input);
  EXPECT_LE(per_input, kMaxAllocationsPerInput);
}

}  // namespace
}  // namespace vfio::fuzz
