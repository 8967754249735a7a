#include "tests/fuzz/harness.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "core/channel.h"
#include "core/migration.h"
#include "core/session.h"
#include "simdev/direct_device.h"
#include "simdev/profile.h"
#include "tests/fuzz/stream_model.h"

namespace vfio::fuzz {
namespace {

// The input as a channel, read in place: copying it into a MemoryChannel would cost an
// allocation the size of the input on every run and count against the allocation bound.
class InputChannel final : public Channel {
 public:
  explicit InputChannel(std::span<const std::uint8_t> data) : data_(data) {}
  Result<std::size_t> write(std::span<const std::byte>) override {
    return fail(EBADF, "fuzz input is read-only");
  }
  Result<std::size_t> read(std::span<std::byte> out) override {
    std::size_t n = std::min(out.size(), data_.size() - pos_);
    if (n > 0) std::memcpy(out.data(), data_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  const std::string& name() const override { return name_; }

 private:
  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  std::string name_ = "fuzz input";
};

struct Sim {
  std::shared_ptr<sim::SimDevice> model;
  std::unique_ptr<sim::DirectDevice> device;
  sim::Image image;                      // as created: restored before every input
  std::vector<std::byte> config;         // likewise
  std::unique_ptr<Migration> migration;  // run_section's, kept while it stays clean
};

// A destination for run_stream: one Session over pooled devices of these profiles.
struct Destination {
  std::vector<Sim*> sims;
  std::unique_ptr<Session> session;
  std::uint64_t last_used = 0;
};

// Devices are reused across inputs (building one per input was a third of the section
// target's time), and so are destinations (Migration::create per device, two feature calls
// and its allocations, took 13% of the stream target's time, most of it in inputs that name
// dozens of devices). Both are restored to the same state before every input, so that an
// input's outcome never depends on the inputs before it.
struct Pool {
  std::map<std::pair<const sim::Profile*, std::size_t>, Sim> sims;
  // By the profiles a stream's ids name, in order.
  std::map<std::vector<const sim::Profile*>, Destination> destinations;
  std::uint64_t clock = 0;
  // Enough for every profile list of a corpus (a few hundred inputs name about a hundred):
  // a destination built anew leaves more allocations than it frees, and libFuzzer runs every
  // such input twice, suspecting a leak.
  static constexpr std::size_t kMaxDestinations = 512;
};
Pool& pool() {
  static Pool pool;
  return pool;
}

// A device as created: image and config, nothing open, and without the account of its latest
// refusal (an input must not find its predecessor's, and it would be memory the input did not
// allocate, which libFuzzer's leak check reruns it for).
void restore(Sim& s) {
  s.model->restore(s.image, s.config);
}

// The device of `profile` at position `slot` of a stream (tells apart the devices of one
// multi-device stream), restored to its state as created.
Sim& pooled(const sim::Profile& profile, std::size_t slot) {
  auto [it, created] = pool().sims.try_emplace({&profile, slot});
  Sim& s = it->second;
  if (created) {
    sim::SimOptions options;
    options.state_size = 64;  // the destination's own image is overwritten by a resume
    s.model = std::make_shared<sim::SimDevice>(profile, options);
    s.device =
        std::make_unique<sim::DirectDevice>(s.model, fmt::format("dst{}:{}", slot, profile.name));
    s.image = s.model->image();
    s.config = s.model->config();
  }
  restore(s);
  return s;
}

// The destination for a stream naming `ids`, its devices restored: a Session with as many
// simulated devices as there are ids, each of the profile its id names. The destination's own
// names for its devices are the devices' (a loader only counts the stream's ids), so one
// destination serves every id list naming the same profiles.
Destination& destination(const std::vector<std::string_view>& ids) {
  static std::vector<const sim::Profile*> profiles;  // the key; reused, so as not to allocate it
  profiles.clear();
  for (const auto& id : ids) profiles.push_back(sim::find_profile(profile_for_id(id)));
  Pool& p = pool();
  auto it = p.destinations.find(profiles);
  if (it != p.destinations.end()) {
    for (Sim* s : it->second.sims) restore(*s);
  } else {
    if (p.destinations.size() == Pool::kMaxDestinations) {
      // The less recently used half at once: mutated headers name new profile lists on about 2%
      // of the inputs, and a pass over all destinations for each of them cost 1% of the time.
      std::vector<std::uint64_t> uses;
      for (const auto& [key, d] : p.destinations) uses.push_back(d.last_used);
      auto median = uses.begin() + static_cast<std::ptrdiff_t>(uses.size() / 2);
      std::nth_element(uses.begin(), median, uses.end());
      std::erase_if(p.destinations, [&](const auto& d) { return d.second.last_used < *median; });
    }
    it = p.destinations.try_emplace(profiles).first;
    Destination& d = it->second;
    SessionOptions options;
    options.stream_buffer_size = kStreamBufferSize;
    d.session = std::make_unique<Session>(options);
    for (std::size_t i = 0; i < profiles.size(); ++i) {
      d.sims.push_back(&pooled(*profiles[i], i));
      d.session->add_device(*d.sims[i]->device, d.sims[i]->device->name());
    }
  }
  it->second.last_used = ++p.clock;
  return it->second;
}

// What a load leaves in a device for the next input to clear: its account of the latest
// refusal. Cleared at once, so that an input frees what it allocated (libFuzzer reruns one
// that does not as a leak suspect).
void settle(const std::vector<Sim*>& sims) {
  for (Sim* s : sims) (void)s->model->take_refusal(0);
}

// After any load, accepted or not, a device is RUNNING with no data session left open; the
// only excuse is a fatal error (a reset failed).
void check_devices(const std::vector<Sim*>& sims, const Result<>& result, Outcome& out) {
  bool fatal = !result && result.error().fatal;
  for (std::size_t i = 0; i < sims.size() && out.violation.empty(); ++i) {
    auto state = sims[i]->model->state();
    if (state != uapi::State::kRunning && !fatal) {
      out.violation = fmt::format("device {} left in {} after the load ({})", i,
                                  uapi::state_name(state), result ? "accepted" : out.error);
    } else if (auto open = sims[i]->model->open_sessions(); open != 0) {
      out.violation = fmt::format("device {} has {} data session(s) still open", i, open);
    }
  }
}

void record(const Result<>& result, Outcome& out) {
  out.accepted = result.has_value();
  if (result) return;
  out.error = result.error().describe();
  if (result.error().message.empty()) out.violation = "rejected with an empty error message";
}

// The grammar's constants, spelled out again (as in stream_model.cc) rather than shared.
constexpr std::uint32_t kSetup = 1, kComplete = 2, kConfig = 3, kIterate = 5, kEnd = 0x454e44;
constexpr std::uint32_t kNoDevice = 0xffffffff;
constexpr std::uint64_t kTagEnd = 0xffffffffef100001ULL, kTagConfig = 0xffffffffef100002ULL,
                        kTagSetup = 0xffffffffef100003ULL, kTagData = 0xffffffffef100004ULL,
                        kTagInitDataSent = 0xffffffffef100005ULL;
// The destination's devices: a 256-byte config region (SimOptions), no switchover-ack.
constexpr std::uint64_t kDestinationConfigSize = 256;

bool has_precopy(const std::string& id) {
  return sim::find_profile(profile_for_id(id))->mig_flags & uapi::kMigrationPreCopy;
}

}  // namespace

std::optional<std::string> grammar_violation(std::span<const std::uint8_t> bytes) {
  auto parsed = parse_stream(bytes);
  if (!parsed) return "header";
  const Stream& s = *parsed;
  if (!s.tail.empty()) return "bytes that are no section";
  const Bytes again = write_stream(s);
  if (!std::equal(again.begin(), again.end(), bytes.begin(), bytes.end())) return "checksum";
  if (s.version != 1 || s.count == 0 || s.count != s.ids.size()) return "header fields";
  std::vector<int> last(s.count, -1);  // per device: the rank of its latest section
  int phase = 0;
  for (std::size_t i = 0; i < s.sections.size(); ++i) {
    const Section& sec = s.sections[i];
    if (sec.type == kEnd) {
      if (sec.device != kNoDevice || !sec.items.empty()) return "end section fields";
      if (i + 1 != s.sections.size()) return "sections after the end";
      for (int l : last)
        if (l != 3) return "end before a device is complete";
      return std::nullopt;
    }
    if (sec.device >= s.count) return "device index";
    const int rank = sec.type == kSetup      ? 0
                     : sec.type == kIterate  ? 1
                     : sec.type == kComplete ? 2
                     : sec.type == kConfig   ? 3
                                             : -1;
    if (rank < 0) return "section type";
    int& l = last[sec.device];
    const bool follows = (l == -1 && rank == 0) || (l == 0 && (rank == 1 || rank == 2)) ||
                         (l == 1 && (rank == 1 || rank == 2)) || (l == 2 && rank == 3);
    if (!follows || rank < phase) return "section order";
    if (rank == 1 && !has_precopy(s.ids[sec.device])) return "iterate for a stop-copy device";
    l = phase = rank;
    const auto& it = sec.items;
    auto data_ok = [](const Item& x) { return x.tag == kTagData && x.length >= 1; };
    switch (sec.type) {
      case kSetup:
        if (it.size() != 2 || it[0].tag != kTagSetup || it[1].tag != kTagEnd) return "setup";
        break;
      case kConfig:
        if (it.size() != 2 || it[0].tag != kTagConfig || it[1].tag != kTagEnd) return "config";
        // Policy of this destination: config restored, into a 256-byte region.
        if (it[0].length == 0 || it[0].length > kDestinationConfigSize) return "config length";
        break;
      case kIterate:
        if (it.empty() || it.size() > 2 || (it.size() == 2 && !data_ok(it[0]))) return "iterate";
        if (it.back().tag == kTagInitDataSent) return "INIT_DATA_SENT without switchover-ack";
        if (it.back().tag != kTagEnd) return "iterate end";
        break;
      default:  // complete
        for (std::size_t k = 0; k + 1 < it.size(); ++k)
          if (!data_ok(it[k])) return "complete";
        if (it.empty() || it.back().tag != kTagEnd) return "complete end";
    }
  }
  return "no end section";
}

Outcome run_stream(std::span<const std::uint8_t> input) {
  // As many devices as the header claims (the loader rejects a mismatch before anything
  // interesting), bounded by the format's 64; one when the header does not even parse.
  static std::vector<std::string_view> ids;  // reused, so as not to allocate it per input
  if (!parse_ids(input, ids) || ids.empty()) ids.assign(1, "mlx5");
  Destination& dst = destination(ids);
  Session& session = *dst.session;
  const std::vector<Sim*>& sims = dst.sims;

  Outcome out;
  InputChannel channel(input);
  auto report = session.load(channel);
  Result<> result = report ? Result<>{} : std::unexpected(std::move(report).error());
  record(result, out);
  // The loader's contract (docs/stream-format.md): what breaks the grammar is refused, and a
  // refusal says where. The grammar is only read again for the rarer accepted inputs.
  if (report) {
    if (auto why = grammar_violation(input))
      out.violation = "accepted a stream that breaks the grammar: " + *why;
  } else if (out.error.find("stream offset ") == std::string::npos &&
             out.error.find("truncated after ") == std::string::npos &&
             out.error.find("whole stream, ") == std::string::npos) {
    out.violation = "a refusal that names no stream offset";
  }
  if (report && report->stream_bytes > input.size()) {
    out.violation = fmt::format("load claims {} stream bytes of a {}-byte input",
                                report->stream_bytes, input.size());
  }
  if (out.violation.empty()) check_devices(sims, result, out);
  settle(sims);
  // Reused only when left as a new one would be: every device RUNNING with no data session
  // (check_devices), none broken by a failed reset. Anything else is built again.
  if (!out.violation.empty() || (!result && result.error().fatal)) {
    auto& all = pool().destinations;
    all.erase(
        std::find_if(all.begin(), all.end(), [&](const auto& d) { return &d.second == &dst; }));
  }
  return out;
}

Outcome run_section(std::span<const std::uint8_t> input) {
  auto profiles = sim::all_profiles();
  const sim::Profile& profile = profiles[input.empty() ? 0 : input[0] % profiles.size()];
  if (!input.empty()) input = input.subspan(1);

  Sim& sim = pooled(profile, 0);
  Outcome out;
  if (!sim.migration) {
    auto created = Migration::create(*sim.device);
    if (!created) {
      out.violation = "Migration::create failed: " + created.error().describe();
      return out;
    }
    sim.migration = std::move(*created);
  }
  Migration& m = *sim.migration;
  if (auto r = m.load_setup(); !r) {
    out.violation = "load_setup failed: " + r.error().describe();
    return out;
  }

  InputChannel channel(input);
  StreamReader in(channel, kStreamBufferSize);
  Result<> result;
  while (result && !in.at_end()) {
    std::byte type;
    in.get_buffer(std::span(&type, 1));
    const auto section = static_cast<container::SectionType>(
        kSectionTypes[std::to_integer<std::size_t>(type) % kSectionTypes.size()]);
    result = m.load_state(in, section);
  }
  if (result) result = m.commit_config();
  m.load_cleanup();
  if (result) result = m.vm_state_change(true);
  record(result, out);
  if (!result) {
    auto a = m.abandon();
    if (!a && !a.error().fatal) out.violation = "abandon failed: " + a.error().describe();
  }
  if (out.violation.empty()) check_devices({&sim}, result, out);
  settle({&sim});
  // Reused only in the state a fresh one would have; anything else is rebuilt.
  if (m.device_state() != uapi::State::kRunning || m.data_fd() != -1 || m.broken())
    sim.migration.reset();
  return out;
}

std::vector<std::uint8_t> saved_stream(std::string_view profile, std::uint64_t size,
                                       std::uint64_t seed, MigrationOptions options) {
  sim::SimOptions sim_options;
  sim_options.state_size = size;
  sim_options.seed = seed;
  auto model = std::make_shared<sim::SimDevice>(*sim::find_profile(profile), sim_options);
  sim::DirectDevice device(model, fmt::format("{}#{}", profile, seed));
  SessionOptions session_options;
  session_options.migration = std::move(options);
  Session session(session_options);
  session.add_device(device, device.name());
  MemoryChannel channel;
  if (auto r = session.save(channel); !r) {
    std::fprintf(stderr, "saving a %s stream failed: %s\n", device.name().c_str(),
                 r.error().describe().c_str());
    std::abort();
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(channel.data().data());
  return {p, p + channel.data().size()};
}

void enforce(const Outcome& outcome, const char* target) {
  if (outcome.violation.empty()) return;
  std::fprintf(stderr, "%s: oracle violated: %s\n", target, outcome.violation.c_str());
  std::abort();
}

}  // namespace vfio::fuzz
