// Hostile streams, generated from small valid ones: truncation at every offset, bit flips in
// the framing (checksums as they fall, and recomputed), lying lengths, every reordering,
// duplicate and type-mismatched sections, trailing bytes, ids with control bytes. Each goes
// through the real loader (harness.h run_stream) and is judged against an independent reading
// of the grammar (harness.h grammar_violation): a stream that breaks it must be refused, a refusal
// must name a stream offset, a stream that keeps it may only be refused by the device itself.
// Memory stays bounded throughout.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/session.h"
#include "simdev/profile.h"
#include "tests/fuzz/counting_new.h"
#include "tests/fuzz/harness.h"
#include "tests/fuzz/stream_model.h"

namespace vfio::fuzz {
namespace {

constexpr std::uint32_t kSetup = 1, kComplete = 2, kConfig = 3, kIterate = 5, kEnd = 0x454e44;
constexpr std::uint64_t kTagEnd = 0xffffffffef100001ULL, kTagData = 0xffffffffef100004ULL,
                        kTagInitDataSent = 0xffffffffef100005ULL;
constexpr long kMaxRssGrowthKib = 64 * 1024;

Bytes save(std::string_view profile, std::uint64_t size, bool precopy = false) {
  MigrationOptions options;
  options.precopy = precopy;
  options.data_buffer_size = precopy ? 64 : 0;  // several iterate sections
  return saved_stream(profile, size, 1, options);
}

// Two devices of different profiles, sections interleaved as a source writes them.
Bytes two_devices() {
  Stream a = *parse_stream(save("mtty", 20)), b = *parse_stream(save("p2p", 20));
  Stream s = a;
  s.ids = {a.ids[0], b.ids[0]};
  s.count = 2;
  s.sections.clear();
  for (std::uint32_t type : {kSetup, kComplete, kConfig}) {
    for (std::uint32_t dev = 0; dev < 2; ++dev) {
      for (const auto& sec : (dev ? b : a).sections) {
        if (sec.type != type) continue;
        s.sections.push_back(sec);
        s.sections.back().device = dev;
      }
    }
  }
  s.sections.push_back(end_section());
  return write_stream(s);
}

// Offsets of the bytes that frame a stream (everything but ids and DATA/CONFIG bodies).
std::vector<std::size_t> framing_offsets(const Stream& s) {
  std::vector<std::size_t> out;
  std::size_t at = 0;
  auto field = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out.push_back(at++);
  };
  field(16);  // magic, version, count
  for (const auto& id : s.ids) {
    field(4);
    at += id.size();
  }
  field(4);
  for (const auto& sec : s.sections) {
    field(8);
    for (const auto& item : sec.items) {
      field(item.has_length ? 16 : 8);
      at += item.body.size();
    }
    field(4);
  }
  return out;
}

long max_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

struct Tally {
  std::size_t tried = 0, refused = 0, accepted = 0, by_device = 0;
  long rss_growth_kib = 0;  // the largest peak-RSS growth over one test
  std::map<std::string, std::size_t> families;
};

class HostileStreams : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bases_ = new std::vector<std::pair<std::string, Bytes>>{
        {"mlx5", save("mlx5", 100)},
        {"mlx5-precopy", save("mlx5", 200, /*precopy=*/true)},
        {"stopcopy", save("stopcopy", 60)},
        {"two-devices", two_devices()},
    };
    for (const auto& [name, bytes] : *bases_) {
      ASSERT_EQ(grammar_violation(bytes), std::nullopt) << name;
      ASSERT_TRUE(run_stream(bytes).accepted) << name << ": " << run_stream(bytes).error;
    }
    const std::vector<Section> precopy = parse_stream(bases_->at(1).second)->sections;
    ASSERT_TRUE(std::any_of(precopy.begin(), precopy.end(), [](const Section& sec) {
      return sec.type == kIterate;
    })) << "no iterate section";
  }
  static void TearDownTestSuite() {
    delete bases_;
    std::printf(
        "hostile streams: %zu tried, %zu refused (%zu of them by a device), %zu accepted;"
        " peak RSS %ld KiB, grew by at most %ld KiB in a test\n",
        tally_.tried, tally_.refused, tally_.by_device, tally_.accepted, max_rss_kib(),
        tally_.rss_growth_kib);
    for (const auto& [family, n] : tally_.families) std::printf("  %-28s %zu\n", family.c_str(), n);
  }

  // The family's memory: the peak RSS may grow by at most kMaxRssGrowthKib over a test.
  void SetUp() override { rss_before_ = max_rss_kib(); }
  void TearDown() override {
    const long growth = max_rss_kib() - rss_before_;
    tally_.rss_growth_kib = std::max(tally_.rss_growth_kib, growth);
#ifndef __SANITIZE_ADDRESS__
    EXPECT_LT(growth, kMaxRssGrowthKib) << "peak RSS grew by " << growth << " KiB";
#endif
    // Under ASan freed blocks wait in its quarantine (256 MiB by default), so RSS measures the
    // sanitizer; the per-stream allocation bound in check() holds in every build.
  }

  // One stream through the loader, judged.
  void check(const std::string& family, const Bytes& bytes) {
    ++tally_.tried;
    ++tally_.families[family];
    AllocationStats stats;
    Outcome out;
    {
      AllocationCounter counter;
      out = run_stream(bytes);
      stats = counter.stats();
    }
    const auto why = grammar_violation(bytes);
    SCOPED_TRACE(family + " (" + std::to_string(bytes.size()) +
                 " bytes): " + (why ? "breaks the grammar: " + *why : "well formed"));
    ASSERT_EQ(out.violation, "");
    ASSERT_LT(stats.largest, kMaxSingleAllocation);
    ASSERT_LE(stats.peak_growth, static_cast<std::int64_t>(kMaxHeapGrowth));
    if (out.accepted) {
      ++tally_.accepted;
      ASSERT_EQ(why, std::nullopt) << "accepted";
      return;
    }
    ++tally_.refused;
    static const std::regex offset(
        R"(stream offset \d+|truncated after \d+ bytes|whole stream, \d+ bytes)");
    ASSERT_TRUE(std::regex_search(out.error, offset)) << "no offset: " << out.error;
    const bool device = out.error.find("rejected the loaded data") != std::string::npos ||
                        out.error.find("the device refused it") != std::string::npos;
    tally_.by_device += device;
    if (!why) {
      ASSERT_TRUE(device) << "a well-formed stream refused: " << out.error;
    }
  }

  static std::vector<std::pair<std::string, Bytes>>* bases_;
  static Tally tally_;
  long rss_before_ = 0;
};

std::vector<std::pair<std::string, Bytes>>* HostileStreams::bases_ = nullptr;
Tally HostileStreams::tally_;

TEST_F(HostileStreams, TruncatedAtEveryOffset) {
  for (const auto& [name, good] : *bases_) {
    for (std::size_t n = 0; n < good.size(); ++n) {
      check("truncated", Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(HostileStreams, FramingBitFlips) {
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    for (std::size_t at : framing_offsets(s)) {
      for (int bit = 0; bit < 8; ++bit) {
        Bytes bytes = good;
        bytes[at] ^= static_cast<std::uint8_t>(1u << bit);
        check("flip, checksums as they fall", bytes);
        if (HasFatalFailure()) return;
      }
    }
    // The same fields edited in the model and written back with every checksum recomputed, so
    // that the flip itself is what the loader meets.
    auto flips = [&](auto&& field_of, int bits) {
      for (std::size_t i = 0; i < s.sections.size(); ++i) {
        for (std::size_t k = 0; k < std::max<std::size_t>(1, s.sections[i].items.size()); ++k) {
          for (int bit = 0; bit < bits; ++bit) {
            Stream m = s;
            if (!field_of(m, i, k, bit)) break;
            check("flip, checksums fixed", write_stream(m));
            if (HasFatalFailure()) return;
          }
        }
      }
    };
    flips(
        [](Stream& m, std::size_t i, std::size_t k, int bit) {
          if (k > 0) return false;
          m.sections[i].type ^= 1u << bit;
          return true;
        },
        32);
    flips(
        [](Stream& m, std::size_t i, std::size_t k, int bit) {
          if (k > 0) return false;
          m.sections[i].device ^= 1u << bit;
          return true;
        },
        32);
    flips(
        [](Stream& m, std::size_t i, std::size_t k, int bit) {
          if (k >= m.sections[i].items.size()) return false;
          m.sections[i].items[k].tag ^= 1ULL << bit;
          return true;
        },
        64);
    flips(
        [](Stream& m, std::size_t i, std::size_t k, int bit) {
          if (k >= m.sections[i].items.size() || !m.sections[i].items[k].has_length) return false;
          m.sections[i].items[k].length ^= 1ULL << bit;
          return true;
        },
        64);
    for (int bit = 0; bit < 32; ++bit) {
      Stream m = s;
      m.count ^= 1u << bit;
      check("flip, checksums fixed", write_stream(m));
      m = s;
      m.version ^= 1u << bit;
      check("flip, checksums fixed", write_stream(m));
    }
  }
}

TEST_F(HostileStreams, LyingLengths) {
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    for (std::size_t i = 0; i < s.sections.size(); ++i) {
      for (std::size_t k = 0; k < s.sections[i].items.size(); ++k) {
        const Item& item = s.sections[i].items[k];
        if (!item.has_length) continue;
        for (std::uint64_t length : {std::uint64_t{0}, ~std::uint64_t{0}, std::uint64_t{1} << 63,
                                     std::uint64_t{item.body.size() + 1},
                                     std::uint64_t{item.body.size() - 1}, std::uint64_t{4097}}) {
          Stream m = s;
          m.sections[i].items[k].length = length;
          check("lying length", write_stream(m));
          if (HasFatalFailure()) return;
        }
        // Honest lengths the loader must still refuse: empty chunks and blobs.
        Stream m = s;
        m.sections[i].items[k].body.clear();
        m.sections[i].items[k].length = 0;
        check("empty item", write_stream(m));
      }
    }
  }
}

TEST_F(HostileStreams, EveryReorderingDropAndDuplicate) {
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    const std::size_t n = s.sections.size();
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = i + 1; j < n; ++j) {
        Stream m = s;
        std::swap(m.sections[i], m.sections[j]);
        check("swapped", write_stream(m));
      }
      Stream dropped = s;
      dropped.sections.erase(dropped.sections.begin() + static_cast<std::ptrdiff_t>(i));
      check("dropped", write_stream(dropped));
      for (std::size_t at = 0; at <= n; ++at) {
        Stream m = s;
        m.sections.insert(m.sections.begin() + static_cast<std::ptrdiff_t>(at), s.sections[i]);
        check("duplicated", write_stream(m));
      }
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(HostileStreams, TypeMismatchedSections) {
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    for (std::size_t i = 0; i + 1 < s.sections.size(); ++i) {
      for (std::uint32_t type : {kSetup, kComplete, kConfig, kIterate, kEnd, 4u, 0u}) {
        Stream m = s;
        m.sections[i].type = type;
        check("retyped", write_stream(m));
      }
      if (HasFatalFailure()) return;
    }
    // The issue's cases: a config section of only END_OF_STATE; all device data in the setup or
    // the config section with an empty complete section; INIT_DATA_SENT where it has no place.
    for (std::size_t i = 0; i < s.sections.size(); ++i) {
      if (s.sections[i].type == kConfig) {
        Stream m = s;
        m.sections[i].items = {tag_item(kTagEnd)};
        check("config holding END only", write_stream(m));
      }
      if (s.sections[i].type != kComplete) continue;
      for (std::uint32_t into : {kSetup, kConfig}) {
        Stream m = s;
        auto data = m.sections[i].items;
        data.pop_back();
        m.sections[i].items = {tag_item(kTagEnd)};
        for (auto& sec : m.sections) {
          if (sec.device == s.sections[i].device && sec.type == into)
            sec.items.insert(sec.items.begin(), data.begin(), data.end());
        }
        check("data moved out of complete", write_stream(m));
      }
      Stream m = s;
      m.sections[i].items.back() = tag_item(kTagInitDataSent);
      check("INIT_DATA_SENT in complete", write_stream(m));
      // Device data as pre-copy blocks, one per iterate section (refused for stop-copy devices).
      Stream moved = s;
      std::vector<Section> iterates;
      for (const auto& item : s.sections[i].items) {
        if (item.tag == kTagData)
          iterates.push_back(section(kIterate, s.sections[i].device, {item, tag_item(kTagEnd)}));
      }
      moved.sections[i].items = {tag_item(kTagEnd)};
      moved.sections.insert(moved.sections.begin() + static_cast<std::ptrdiff_t>(i),
                            iterates.begin(), iterates.end());
      check("data as iterate sections", write_stream(moved));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(HostileStreams, TrailingBytes) {
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    for (std::size_t extra : {1, 4, 8, 13}) {
      Bytes bytes = good;
      bytes.resize(good.size() + extra, 0);
      check("trailing bytes", bytes);
    }
    Bytes twice = good;
    twice.insert(twice.end(), good.begin(), good.end());
    check("stream twice", twice);
    Stream m = s;
    m.sections.push_back(end_section());
    check("second end", write_stream(m));
    m = s;
    m.sections.push_back(s.sections[s.sections.size() - 2]);
    check("section after the end", write_stream(m));
  }
}

TEST_F(HostileStreams, IdsWithControlBytes) {
  const std::vector<std::string> ids = {std::string("mlx5\x1b]0;owned\x07", 13),
                                        std::string("mlx5\0nul", 8), "mlx5\r\nforged line",
                                        "mlx5\xff\xfe not utf-8", std::string(256, '\x1b')};
  for (const auto& [name, good] : *bases_) {
    const Stream s = *parse_stream(good);
    for (const auto& id : ids) {
      Stream m = s;
      m.ids[0] = id;
      check("id with control bytes", write_stream(m));
      m.count += 1;  // and refused, so that the id reaches a message
      check("id with control bytes", write_stream(m));
    }
  }
}

}  // namespace
}  // namespace vfio::fuzz
