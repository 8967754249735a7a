// The structure-aware mutator's model: lossless on real streams, and mutations that keep the
// framing valid so they reach the device. Also a short deterministic mutation run through
// both targets, so GCC builds exercise the mutator and the oracles without libFuzzer.
#include "tests/fuzz/stream_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include "core/session.h"
#include "simdev/profile.h"
#include "tests/fuzz/harness.h"

namespace vfio::fuzz {
namespace {

// In 4 KiB DATA chunks, so that streams of a few KiB have several.
Bytes chunked_stream(std::string_view profile, std::uint64_t size) {
  MigrationOptions options;
  options.data_buffer_size = 4096;
  return saved_stream(profile, size, 1, options);
}

// Stands in for LLVMFuzzerMutate: flips, inserts or drops a byte.
PlainMutator byte_mutator(std::minstd_rand& rng) {
  return [&rng](std::uint8_t* data, std::size_t size, std::size_t max_size) {
    std::size_t at = rng() % size;
    switch (rng() % 3) {
      case 0:
        data[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        return size;
      case 1:
        if (size == max_size) return size;
        std::memmove(data + at + 1, data + at, size - at);
        data[at] = static_cast<std::uint8_t>(rng());
        return size + 1;
      default:
        if (size == 1) return size;
        std::memmove(data + at, data + at + 1, size - at - 1);
        return size - 1;
    }
  };
}

TEST(StreamModel, RoundTripsRealStreams) {
  for (const auto& p : sim::all_profiles()) {
    Bytes stream = chunked_stream(p.name, 10000);
    auto parsed = parse_stream(stream);
    ASSERT_TRUE(parsed) << p.name;
    EXPECT_TRUE(parsed->tail.empty());
    ASSERT_GE(parsed->sections.size(), 4u);  // setup, [iterate...], complete, config, end
    EXPECT_EQ(parsed->sections.back().type, 0x454e44u);
    auto complete = std::find_if(parsed->sections.begin(), parsed->sections.end(),
                                 [](const Section& s) { return s.type == 2; });
    ASSERT_NE(complete, parsed->sections.end());
    EXPECT_GT(complete->items.size(), 2u);  // chunked DATA
    EXPECT_EQ(write_stream(*parsed), stream) << p.name;
    std::vector<std::string_view> ids = {"left over"};
    ASSERT_TRUE(parse_ids(stream, ids));
    EXPECT_EQ(ids, std::vector<std::string_view>{std::string(p.name) + "#1"});
    EXPECT_EQ(profile_for_id(parsed->ids[0]), p.name);
  }
}

TEST(StreamModel, KeepsWhatDoesNotParseAsTail) {
  Bytes stream = chunked_stream("mtty", 100);
  Bytes cut(stream.begin(), stream.end() - 7);
  auto parsed = parse_stream(cut);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(write_stream(*parsed), cut);
  EXPECT_FALSE(parse_stream(Bytes(stream.begin(), stream.begin() + 10)));
  std::vector<std::string_view> ids;
  EXPECT_FALSE(parse_ids(Bytes{1, 2, 3}, ids));
}

// The crossover splices bytes rather than models; it must give what splicing the parsed
// streams and writing them back gives: a's header and first sections, b's last sections and
// tail, every checksum recomputed (a wrong one in either input comes out right).
TEST(StreamModel, CrossOverSplicesAsTheModelDoes) {
  Bytes two = [] {
    Stream s = *parse_stream(chunked_stream("p2p", 5000));
    s.ids.push_back("p2p#2");
    s.count = 2;
    for (std::size_t i = 0, n = s.sections.size() - 1; i < n; ++i) {
      s.sections.push_back(s.sections[i]);
      s.sections.back().device = 1;
    }
    std::stable_sort(s.sections.begin(), s.sections.end(),
                     [](const Section& a, const Section& b) { return a.type < b.type; });
    return write_stream(s, CrcPolicy{.corrupt_section = 2, .corrupt_header = true});
  }();
  Bytes cut = chunked_stream("mlx5", 9000);
  cut.resize(cut.size() - 30);  // a tail that is no section
  const std::vector<Bytes> inputs = {chunked_stream("mtty", 300), two, cut, Bytes{1, 2, 3}};
  int spliced = 0;
  for (const Bytes& a : inputs) {
    for (const Bytes& b : inputs) {
      for (std::uint32_t seed = 1; seed < 40; ++seed) {
        Bytes out(a.size() + b.size());
        const std::size_t n = cross_over(Kind::kStream, a, b, out.data(), out.size(), seed);
        auto sa = parse_stream(a), sb = parse_stream(b);
        if (!sa || !sb) {
          EXPECT_EQ(n, 0u);
          continue;
        }
        std::minstd_rand rng(seed);
        sa->sections.resize(rng() % (sa->sections.size() + 1));
        const std::size_t from = rng() % (sb->sections.size() + 1);
        sa->sections.insert(sa->sections.end(), sb->sections.begin() + static_cast<long>(from),
                            sb->sections.end());
        sa->tail = sb->tail;
        const Bytes want = write_stream(*sa);
        ASSERT_EQ(Bytes(out.begin(), out.begin() + static_cast<long>(n)), want) << seed;
        EXPECT_EQ(cross_over(Kind::kStream, a, b, out.data(), want.size() - 1, seed), 0u);
        ++spliced;
      }
    }
  }
  EXPECT_EQ(spliced, 9 * 39);
}

// Most structured mutations must get past the checksums: that is their point.
TEST(StreamModel, MutationsKeepChecksumsValid) {
  Bytes seed = chunked_stream("mlx5", 3000);
  std::minstd_rand rng(1);
  auto plain = byte_mutator(rng);
  int checksum_failures = 0, runs = 400, mutated = 0;
  for (int i = 0; i < runs; ++i) {
    Bytes buf = seed;
    buf.resize(seed.size() + 8192);
    std::size_t n = mutate_structured(Kind::kStream, buf.data(), seed.size(), buf.size(),
                                      static_cast<std::uint32_t>(i), plain);
    if (n == 0) continue;  // grew past max_size: libFuzzer's own mutator takes over
    ++mutated;
    buf.resize(n);
    Outcome out = run_stream(buf);
    EXPECT_EQ(out.violation, "");
    checksum_failures += out.error.find("checksum mismatch") != std::string::npos;
  }
  // Edits that put an END before other items, or lie about a length, still fail here.
  EXPECT_GT(mutated, runs * 9 / 10);
  EXPECT_LT(checksum_failures, runs / 4);
}

// The stricter grammar (docs/stream-format.md) refuses far more than checksums; the structured
// mutator must still hand the loader mostly well-formed streams, so that inputs reach the
// devices rather than stop at the framing.
TEST(StreamModel, MutationsMostlyKeepTheGrammar) {
  std::minstd_rand rng(3);
  auto plain = byte_mutator(rng);
  const std::vector<Bytes> seeds = {chunked_stream("mlx5", 3000), chunked_stream("mtty", 500),
                                    chunked_stream("stopcopy", 200)};
  int well_formed = 0, runs = 600, mutated = 0;
  for (int i = 0; i < runs; ++i) {
    const Bytes& seed = seeds[static_cast<std::size_t>(i) % seeds.size()];
    Bytes buf = seed;
    buf.resize(seed.size() + 8192);
    std::size_t n = mutate_structured(Kind::kStream, buf.data(), seed.size(), buf.size(),
                                      static_cast<std::uint32_t>(i), plain);
    if (n == 0) continue;
    ++mutated;
    buf.resize(n);
    well_formed += !grammar_violation(buf).has_value();
  }
  std::printf("structured stream mutations: %d of %d well formed\n", well_formed, mutated);
  EXPECT_GT(mutated, runs * 9 / 10);
  EXPECT_GT(well_formed, mutated / 2);
}

// A few thousand mutation generations per target, feeding accepted-or-not outputs back in:
// a pocket fuzzer with fixed seeds, so the oracles also run in GCC builds.
TEST(StreamModel, DeterministicMutationRun) {
  for (Kind kind : {Kind::kStream, Kind::kSection}) {
    std::minstd_rand rng(kind == Kind::kStream ? 7 : 8);
    auto plain = byte_mutator(rng);
    std::vector<Bytes> pool;
    for (const auto& p : sim::all_profiles()) {
      Bytes s = chunked_stream(p.name, 200);
      if (kind == Kind::kStream) {
        pool.push_back(s);
      } else {
        auto parsed = parse_stream(s);
        SectionInput in{static_cast<std::uint8_t>(pool.size()), parsed->sections, {}};
        in.sections.pop_back();  // the end section
        pool.push_back(write_section_input(in));
      }
    }
    int accepted = 0;
    for (int i = 0; i < 1500; ++i) {
      Bytes buf = pool[rng() % pool.size()];
      std::size_t size = buf.size();
      buf.resize(size + 4096);
      std::size_t n = mutate_structured(kind, buf.data(), size, buf.size(),
                                        static_cast<std::uint32_t>(rng()), plain);
      if (n == 0) n = plain(buf.data(), size, buf.size());
      buf.resize(n);
      Outcome out = kind == Kind::kStream ? run_stream(buf) : run_section(buf);
      ASSERT_EQ(out.violation, "") << "iteration " << i;
      if (!out.accepted) {
        ASSERT_NE(out.error, "");
      }
      accepted += out.accepted;
      if (pool.size() < 64) pool.push_back(std::move(buf));
    }
    EXPECT_GT(accepted, 0);
  }
}

}  // namespace
}  // namespace vfio::fuzz
