#include "bench/migrate_bench.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "bench/bench_support.h"
#include "bench/grid.h"
#include "bench/stages.h"
#include "core/aligned_buffer.h"
#include "core/cpu_pin.h"
#include "core/feature.h"
#include "core/local_migration.h"

namespace vfio::bench {
namespace {

using Seconds = std::chrono::duration<double>;
constexpr double kGiB = 1 << 30;

double rate(std::uint64_t bytes, Seconds elapsed) {
  return elapsed.count() > 0 ? static_cast<double>(bytes) / elapsed.count() : 0;
}

struct Stage {
  const char* name;
  std::uint64_t bytes = 0;  // device bytes this stage alone moved in `elapsed`
  Seconds elapsed{};
  Seconds cpu{};  // the process's CPU time in `elapsed`
  double rate() const { return bench::rate(bytes, elapsed); }
  double cpu_per_byte() const { return bytes ? cpu.count() / static_cast<double>(bytes) : 0; }
  // One pass of the stage, counted as `moved` device bytes.
  void add(std::uint64_t moved, const StagePass& pass) {
    bytes += moved;
    elapsed += pass.elapsed;
    cpu += pass.cpu;
  }
};

// `vfio-mig migrate --buffer-size <buffer>`: what transfer_setup and precopy_setup make of it.
SessionOptions migrate_options(std::uint64_t buffer) {
  SessionOptions o;
  o.migration.data_buffer_size = buffer;
  o.migration.config_state = true;
  o.migration.precopy = true;
  return o;
}

struct Migrated {
  LocalMigrationReport report;
  Seconds elapsed;  // both sides, from the first device query to the destination's start
  Seconds cpu;      // the process's CPU time in `elapsed`
};

// The migration's two sides run at the same time, each on its own CPU, as two VMMs would; the
// socket ceiling is measured in that placement (writer where the source runs, reader where the
// destination runs). Left to the scheduler, the placement and with it the rate change between
// runs. The socket on one CPU, where its copy in and copy out run back to back in one cache, is
// measured too: a comparison, not a ceiling for two sides running at once. Unpinned when the
// process may use only one CPU.
ThreadPlacement migration_placement() {
  const auto cpus = allowed_cpus(2);
  if (cpus.empty()) return {};
  return {cpus[0], cpus[1]};
}

bool pinned(const ThreadPlacement& p) {
  return p.source_cpu >= 0;
}

struct ChannelCeiling {
  StagePass ceiling;  // in the migration's placement
  StagePass one_cpu;
};

// The channel migrate_locally uses (make_socket_channel), in the placement of its sides.
Result<ChannelCeiling> socket_ceiling(const ThreadPlacement& sides, std::size_t write_size,
                                      std::size_t read_size, std::uint64_t total) {
  const auto placement = pinned(sides) ? ChannelPlacement::kTwoCpus : ChannelPlacement::kOneCpu;
  auto stage = [&](ChannelPlacement where) {
    return channel_stage(ChannelKind::kSocket, write_size, read_size, total, where);
  };
  auto ceiling = stage(placement);
  if (!ceiling) return std::unexpected(ceiling.error());
  if (placement == ChannelPlacement::kOneCpu) return ChannelCeiling{*ceiling, *ceiling};
  auto one = stage(ChannelPlacement::kOneCpu);
  if (!one) return std::unexpected(one.error());
  return ChannelCeiling{*ceiling, *one};
}

Result<Migrated> migrate_once(MigratePair& pair, Device& src, Device& dst, std::uint64_t buffer,
                              ThreadPlacement placement) {
  Session source(migrate_options(buffer)), destination(migrate_options(buffer));
  source.add_device(src, src.name());
  destination.add_device(dst, dst.name(), pair.destination.config_restore);
  const auto start = std::chrono::steady_clock::now();
  const auto cpu_start = process_cpu_time();
  auto r = migrate_locally(source, destination, placement);
  const Seconds elapsed = std::chrono::steady_clock::now() - start;
  const Seconds cpu = process_cpu_time() - cpu_start;
  if (!r) return std::unexpected(r.error());
  if (pair.source.model && pair.destination.model &&
      pair.source.model->image() != pair.destination.model->image())
    return fail(EIO, "the destination's state differs from the source's");
  // The source is stopped (the VM moved); the next iteration starts from RUNNING again.
  if (auto resumed = source.resume_vm(); !resumed) return std::unexpected(resumed.error());
  return Migrated{*r, elapsed, cpu};
}

void measure_migrate(benchmark::State& state, const PairFactory& open, std::uint64_t buffer) {
  const ThreadPlacement placement = migration_placement();
  auto pair = open(placement);
  if (!pair) return state.SkipWithError(pair.error().describe().c_str());
  Device& src = *pair->source.device;
  Device& dst = *pair->destination.device;
  CountingDevice src_calls(src), dst_calls(dst);
  // The stages drive the devices directly: learn their state before acting, as migrate does.
  for (Device* d : {&src, &dst}) {
    auto s = query_device_state(*d);
    if (!s) return state.SkipWithError(s.error().describe().c_str());
    if (*s != uapi::State::kRunning)
      return state.SkipWithError(
          fmt::format("{} is in {}, not RUNNING: not measured", d->name(), uapi::state_name(*s))
              .c_str());
  }
  AlignedBuffer block(buffer);
  // The read and write stages run where migrate's source and destination run.
  auto on_source = [&](auto stage) {
    CpuPin pin(placement.source_cpu);
    return stage();
  };
  auto on_destination = [&](auto stage) {
    CpuPin pin(placement.destination_cpu);
    return stage();
  };
  // What the write stage writes: the source's own data, as the migration delivers it.
  std::vector<std::byte> data;
  if (auto r = on_source([&] { return read_stage(src, block.span(), &data); }); !r)
    return state.SkipWithError(r.error().describe().c_str());

  // The first migration into a fresh destination faults its state's memory in: untimed.
  if (auto warm = migrate_once(*pair, src, dst, buffer, placement); !warm)
    return state.SkipWithError(warm.error().describe().c_str());

  std::array<Stage, 3> stages{Stage{"read"}, Stage{"socket"}, Stage{"write"}};
  std::uint64_t bytes = 0;
  Seconds migrating{}, migrating_cpu{};
  Seconds source_thread{}, destination_thread{};  // each side's own thread's CPU time
  Stage socket_one_cpu{"socket_one_cpu"};
  for (auto _ : state) {
    auto m = migrate_once(*pair, src_calls, dst_calls, buffer, placement);
    if (!m) return state.SkipWithError(m.error().describe().c_str());
    const Report& sent = m->report.source;
    state.SetIterationTime(m->elapsed.count());
    migrating += m->elapsed;
    migrating_cpu += m->cpu;
    source_thread += m->report.source.cpu;
    destination_thread += m->report.destination.cpu;
    bytes += sent.device_bytes;
    // Each ceiling in device bytes per second. The socket carries the framing too, in the
    // stream writer's and reader's pieces: blocks gathered up to the stream buffer, larger
    // blocks whole.
    auto read = on_source([&] { return read_stage(src, block.span()); });
    const std::size_t stream_buffer = migrate_options(buffer).stream_buffer_size;
    auto socket = socket_ceiling(placement, std::max<std::size_t>(buffer, stream_buffer),
                                 stream_buffer, sent.stream_bytes);
    if (!socket) return state.SkipWithError(socket.error().describe().c_str());
    auto write = on_destination([&] { return write_stage(dst, data, buffer); });
    for (auto* p : {&read, &write})
      if (!*p) return state.SkipWithError(p->error().describe().c_str());
    stages[0].add(read->bytes, *read);
    stages[1].add(sent.device_bytes, socket->ceiling);
    socket_one_cpu.add(sent.device_bytes, socket->one_cpu);
    stages[2].add(write->bytes, *write);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  // Both devices' calls (data-fd reads and writes, state changes) per MiB migrated.
  state.counters["calls_per_MiB"] =
      bytes ? static_cast<double>(src_calls.calls() + dst_calls.calls()) /
                  (static_cast<double>(bytes) / (1 << 20))
            : 0;
  const Stage* slowest = &stages[0];
  double seconds_per_byte = 0;  // the stages one after another
  double cpu_per_byte = 0;      // the least CPU work the stages need, wherever it runs
  for (const auto& s : stages) {
    state.counters[fmt::format("{}_GiBps", s.name)] = s.rate() / kGiB;
    if (s.rate() < slowest->rate()) slowest = &s;
    seconds_per_byte += s.rate() > 0 ? 1 / s.rate() : 0;
    cpu_per_byte += s.cpu_per_byte();
  }
  // On one CPU the socket needs no wake-ups of another CPU, so usually less CPU per byte.
  cpu_per_byte -=
      stages[1].cpu_per_byte() - std::min(stages[1].cpu_per_byte(), socket_one_cpu.cpu_per_byte());
  const double socket_one_cpu_rate = socket_one_cpu.rate();
  state.counters["socket_one_cpu_GiBps"] = socket_one_cpu_rate / kGiB;
  state.counters["cpus"] = usable_cpus();
  state.counters["pinned_cpus"] = pinned(placement) ? 2 : 0;
  const double migrate_rate = rate(bytes, migrating);
  auto share = [migrate_rate](double ceiling) { return ceiling > 0 ? migrate_rate / ceiling : 0; };
  state.counters["of_socket_one_cpu"] = share(socket_one_cpu_rate);
  state.counters["ceiling_GiBps"] = slowest->rate() / kGiB;
  state.counters["of_ceiling"] = share(slowest->rate());
  const double serial = seconds_per_byte > 0 ? 1 / seconds_per_byte : 0;
  state.counters["serial_GiBps"] = serial / kGiB;
  state.counters["of_serial"] = share(serial);
  // Each side hands a buffer on before it takes the next, as the reference's save and load loops
  // do: the source's chain is its read stage and the socket's copy in, the destination's the copy
  // out and its write stage (each taken as half the one-CPU socket). However well the two sides
  // overlap, the longer chain bounds the migration.
  const double half_socket = socket_one_cpu_rate > 0 ? 0.5 / socket_one_cpu_rate : 0;
  auto chain = [half_socket](const Stage& s) {
    return s.rate() > 0 ? 1 / (1 / s.rate() + half_socket) : 0;
  };
  const double chain_bound = std::min(chain(stages[0]), chain(stages[2]));
  state.counters["chain_GiBps"] = chain_bound / kGiB;
  state.counters["of_chain"] = share(chain_bound);
  // The stages' own CPU work spread over every CPU this process may use: no migration of them
  // can go faster on this machine, however well they overlap.
  const double cpu_bound = cpu_per_byte > 0 ? usable_cpus() / cpu_per_byte : 0;
  state.counters["cpu_bound_GiBps"] = cpu_bound / kGiB;
  state.counters["of_cpu_bound"] = share(cpu_bound);
  // Migrate's CPU per byte against the stages' sum: above 1 is work the engine adds.
  state.counters["cpu_of_stages"] =
      bytes && cpu_per_byte > 0 ? migrating_cpu.count() / static_cast<double>(bytes) / cpu_per_byte
                                : 0;
  // Each side is one thread, as in the reference (QEMU saves and loads a device's state on its
  // migration thread): at its own CPU time per byte, a side that never waited would still go
  // no faster than this. The slower side bounds the migration however the stages overlap.
  const double source_bound = rate(bytes, source_thread);
  const double destination_bound = rate(bytes, destination_thread);
  state.counters["source_thread_GiBps"] = source_bound / kGiB;
  state.counters["destination_thread_GiBps"] = destination_bound / kGiB;
  state.counters["of_thread_bound"] = share(std::min(source_bound, destination_bound));
  state.SetLabel(fmt::format("slowest stage: {}", slowest->name));
}

void migrate(benchmark::State& state, PairFactory open, std::uint64_t buffer, AfterMigrate after) {
  measure_migrate(state, open, buffer);
  if (after) after(state);
}

}  // namespace

void register_migrate_benchmark(const std::string& name, PairFactory open, std::uint64_t buffer,
                                AfterMigrate after) {
  benchmark::RegisterBenchmark(fmt::format("migrate/{}/buffer:{}", name, buffer).c_str(), migrate,
                               std::move(open), buffer, std::move(after))
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

void register_migrate_benchmarks(const Grid& grid) {
  for (const auto& transport : grid.transports) {
    for (const auto& profile : grid.profiles) {
      for (auto state_size : grid.states) {
        // Each device's FUSE server on its side's CPU, as a driver runs on its caller's.
        PairFactory open = [=](ThreadPlacement where) -> Result<MigratePair> {
          auto src = make_device(transport, profile, state_size, 1, where.source_cpu);
          if (!src) return std::unexpected(src.error());
          auto dst = make_device(transport, profile, state_size, 2, where.destination_cpu);
          if (!dst) return std::unexpected(dst.error());
          return MigratePair{std::move(*src), std::move(*dst)};
        };
        for (auto buffer : grid.buffers)
          register_migrate_benchmark(fmt::format("{}/{}/state:{}", transport, profile, state_size),
                                     open, buffer);
      }
    }
  }
}

}  // namespace vfio::bench
