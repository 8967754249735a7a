#include "tests/fuzz/stream_model.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <random>

#include "core/checksum.h"

namespace vfio::fuzz {
namespace {

// The format's constants, spelled out again on purpose (see the header).
constexpr std::uint64_t kMagic = 0x5646494f2d4d4947ULL;
constexpr std::uint32_t kMaxDevices = 64;
constexpr std::uint32_t kMaxIdLength = 256;
constexpr std::uint32_t kTypeSetup = 1, kTypeComplete = 2, kTypeConfig = 3, kTypeIterate = 5,
                        kTypeEnd = 0x454e44;
constexpr std::uint32_t kNoDevice = 0xffffffff;
constexpr std::uint64_t kEnd = 0xffffffffef100001ULL;
constexpr std::uint64_t kConfig = 0xffffffffef100002ULL;
constexpr std::uint64_t kSetup = 0xffffffffef100003ULL;
constexpr std::uint64_t kData = 0xffffffffef100004ULL;
// Ends a pre-copy (iterate) section in place of END_OF_STATE (switchover-ack).
constexpr std::uint64_t kInitDataSent = 0xffffffffef100005ULL;

constexpr std::array<std::string_view, 5> kProfileNames = {"mtty", "mlx5", "stopcopy", "p2p",
                                                           "plain"};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> data) : data_(data) {}
  std::size_t pos() const { return pos_; }
  std::size_t left() const { return data_.size() - pos_; }
  bool get(std::uint64_t& v, int bytes) {
    if (left() < static_cast<std::size_t>(bytes)) return false;
    v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | data_[pos_++];
    return true;
  }
  bool get64(std::uint64_t& v) { return get(v, 8); }
  bool get32(std::uint32_t& v) {
    std::uint64_t w;
    if (!get(w, 4)) return false;
    v = static_cast<std::uint32_t>(w);
    return true;
  }
  // The next `n` bytes, in place.
  std::optional<std::span<const std::uint8_t>> take(std::size_t n) {
    if (left() < n) return std::nullopt;
    pos_ += n;
    return data_.subspan(pos_ - n, n);
  }

 private:
  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
};

void put(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(Bytes& out, std::uint64_t v) {
  put(out, v, 8);
}
void put32(Bytes& out, std::uint32_t v) {
  put(out, v, 4);
}

// The header up to (not including) its checksum, its ids appended to `ids` (strings, or views
// into the data).
template <class Ids>
bool read_header(Reader& r, Stream& s, Ids& ids) {
  if (!r.get64(s.magic) || s.magic != kMagic || !r.get32(s.version) || !r.get32(s.count) ||
      s.count > kMaxDevices)
    return false;
  for (std::uint32_t i = 0; i < s.count; ++i) {
    std::uint32_t length;
    if (!r.get32(length) || length > kMaxIdLength) return false;
    auto id = r.take(length);
    if (!id) return false;
    ids.emplace_back(reinterpret_cast<const char*>(id->data()), id->size());
  }
  return true;
}

std::uint32_t crc_of(const Bytes& out, std::size_t from) {
  return crc32c(0, std::as_bytes(std::span(out).subspan(from)));
}

bool has_length(std::uint64_t tag) {
  return tag == kData || tag == kConfig;
}

bool ends_section(std::uint64_t tag) {
  return tag == kEnd || tag == kInitDataSent;
}

// What parse_items reads, with the items' bodies copied into `out` only when it is given.
struct ItemRun {
  std::size_t consumed = 0;
  bool ended = false;  // the last item read ends a section
};
ItemRun read_items(std::span<const std::uint8_t> data, bool to_end, std::vector<Item>* out) {
  Reader r(data);
  ItemRun run;
  for (;;) {
    std::uint64_t tag, length = 0;
    if (!r.get64(tag)) break;
    std::span<const std::uint8_t> body;
    if (has_length(tag)) {
      if (!r.get64(length) || length > r.left()) break;
      body = *r.take(static_cast<std::size_t>(length));
    }
    if (out) out->push_back(Item{tag, has_length(tag), length, Bytes(body.begin(), body.end())});
    run.consumed = r.pos();
    run.ended = ends_section(tag);
    if (!to_end && run.ended) break;
  }
  return run;
}

// Where a stream's header and its whole sections lie, without copying them: what parse_stream
// reads, as byte offsets.
struct Framing {
  std::size_t header_end = 0;       // after the header's checksum
  std::vector<std::size_t> starts;  // of each section; the next one's start is its end
  std::size_t end = 0;              // of the last whole section: the tail follows
};
// Frames `data` into `f`, reusing its storage (the mutators frame one or two inputs per call),
// the header's fields into `header` and its ids into `ids`; false when the header does not parse.
template <class Ids>
bool frame_stream(std::span<const std::uint8_t> data, Stream& header, Ids& ids, Framing& f) {
  Reader r(data);
  std::uint32_t crc;
  if (!read_header(r, header, ids) || !r.get32(crc)) return false;
  f.starts.clear();
  f.header_end = f.end = r.pos();
  for (;;) {
    std::uint32_t type, device;
    if (!r.get32(type) || !r.get32(device)) break;
    if (type != kTypeEnd) {
      ItemRun run = read_items(data.subspan(r.pos()), false, nullptr);
      if (!run.ended) break;
      r.take(run.consumed);
    }
    if (!r.get32(crc)) break;
    f.starts.push_back(f.end);
    f.end = r.pos();
  }
  return true;
}

// Ids for a caller that only needs the framing: none kept, none allocated.
struct NoIds {
  void emplace_back(const char*, std::size_t) {}
};

// Where a section type comes in a stream; unknown types last but before the end.
int phase(const Section& s) {
  switch (s.type) {
    case kTypeSetup:
      return 0;
    case kTypeIterate:
      return 1;
    case kTypeComplete:
      return 2;
    case kTypeConfig:
      return 3;
    case kTypeEnd:
      return 5;
  }
  return 4;
}

// ---- mutation ----

using Rng = std::minstd_rand;

std::size_t below(Rng& rng, std::size_t n) {
  return n == 0 ? 0 : static_cast<std::size_t>(rng() % n);
}
bool one_in(Rng& rng, std::size_t n) {
  return below(rng, n) == 0;
}

std::uint64_t interesting_length(Rng& rng, std::uint64_t actual) {
  static constexpr std::array<std::uint64_t, 16> kValues = {
      0,     1,          7,          8,          4095,       4096,       4097,  65535,
      65536, 1ULL << 20, 0x7fffffff, 0xffffffff, 1ULL << 32, 1ULL << 63, ~0ULL, 64ULL << 30,
  };
  switch (below(rng, 4)) {
    case 0:
      return actual + 1;
    case 1:
      return actual - 1;
    default:
      return kValues[below(rng, kValues.size())];
  }
}

std::uint64_t interesting_tag(Rng& rng, std::uint64_t current) {
  static constexpr std::array<std::uint64_t, 8> kTags = {
      kEnd, kConfig, kSetup, kData, kInitDataSent, 0, ~0ULL, 0xffffffffef100006ULL};
  if (one_in(rng, 4)) return current ^ (1ULL << below(rng, 64));
  return kTags[below(rng, kTags.size())];
}

Item random_item(Rng& rng) {
  switch (below(rng, 5)) {
    case 0:
      return tag_item(kEnd);
    case 1:
      return tag_item(kSetup);
    case 2:
      return config_item(Bytes(below(rng, 2) ? 256 : below(rng, 64), 0));
    case 3:
      return data_item(Bytes(below(rng, 64), static_cast<std::uint8_t>(rng())));
    default:
      return tag_item(interesting_tag(rng, kData));
  }
}

// Runs the byte-level mutator on `body` (or its first `limit` bytes), keeping the length honest.
void mutate_body(Item& item, std::size_t limit, std::size_t max_size, const PlainMutator& plain,
                 Rng& rng) {
  std::size_t head = std::min(item.body.size(), limit);
  Bytes buf(item.body.begin(), item.body.begin() + static_cast<std::ptrdiff_t>(head));
  std::size_t cap = std::min(max_size, head + 64 + head / 2);
  std::size_t n;
  if (head == 0) {  // nothing for the byte mutator to start from
    buf.assign(below(rng, 16) + 1, static_cast<std::uint8_t>(rng()));
    n = buf.size();
  } else {
    buf.resize(std::max(cap, head));
    n = std::min(plain(buf.data(), head, buf.size()), buf.size());
  }
  buf.resize(n);
  buf.insert(buf.end(), item.body.begin() + static_cast<std::ptrdiff_t>(head), item.body.end());
  item.body = std::move(buf);
  if (item.has_length) item.length = item.body.size();
}

// Joins a section's DATA bodies and cuts them again at random points: chunk boundaries are
// where incremental parsers (the simulator's resume validator) go wrong.
void rechunk(std::vector<Item>& items, Rng& rng) {
  Bytes all;
  std::vector<Item> rest;
  std::size_t first = items.size();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].tag == kData) {
      all.insert(all.end(), items[i].body.begin(), items[i].body.end());
      first = std::min(first, i);
    } else {
      rest.push_back(std::move(items[i]));
    }
  }
  if (first == items.size()) return;
  std::vector<Item> chunks;
  for (std::size_t at = 0; at < all.size();) {
    std::size_t n =
        std::min(all.size() - at, below(rng, 3) == 0 ? below(rng, 64) + 1 : below(rng, 8192) + 1);
    chunks.push_back(data_item(Bytes(all.begin() + static_cast<std::ptrdiff_t>(at),
                                     all.begin() + static_cast<std::ptrdiff_t>(at + n))));
    at += n;
  }
  rest.insert(rest.begin() + static_cast<std::ptrdiff_t>(std::min(first, rest.size())),
              chunks.begin(), chunks.end());
  items = std::move(rest);
}

// One edit of an item list; returns false when it had nothing to act on.
bool mutate_items(std::vector<Item>& items, std::size_t max_size, const PlainMutator& plain,
                  Rng& rng) {
  if (items.empty()) {
    items.push_back(random_item(rng));
    return true;
  }
  Item& item = items[below(rng, items.size())];
  switch (below(rng, 10)) {
    case 0:  // a different tag; the length field follows the new tag's rule
      item.tag = interesting_tag(rng, item.tag);
      item.has_length = has_length(item.tag);
      if (item.has_length) item.length = item.body.size();
      if (!item.has_length) item.body.clear();
      return true;
    case 1:  // a lying length
      if (!item.has_length) return false;
      item.length = interesting_length(rng, item.body.size());
      return true;
    case 2:  // payload bytes, anywhere
      if (!item.has_length) return false;
      mutate_body(item, item.body.size(), max_size, plain, rng);
      return true;
    case 3:  // payload bytes near the start, where the device's own header lives
      if (!item.has_length) return false;
      mutate_body(item, 64, max_size, plain, rng);
      return true;
    case 4:  // truncate or extend the body, honestly
      if (!item.has_length) return false;
      item.body.resize(one_in(rng, 2) ? below(rng, item.body.size() + 1)
                                      : item.body.size() + below(rng, 4096) + 1,
                       static_cast<std::uint8_t>(rng()));
      item.length = item.body.size();
      return true;
    case 5: {  // usually before the final END, where the loader will still read it
      std::size_t at = below(rng, items.size() + (one_in(rng, 4) ? 1 : 0));
      items.insert(items.begin() + static_cast<std::ptrdiff_t>(at), random_item(rng));
      return true;
    }
    case 6:
      items.erase(items.begin() + static_cast<std::ptrdiff_t>(below(rng, items.size())));
      return true;
    case 7: {
      Item copy = items[below(rng, items.size())];
      items.insert(items.begin() + static_cast<std::ptrdiff_t>(below(rng, items.size() + 1)),
                   std::move(copy));
      return true;
    }
    case 8:
      rechunk(items, rng);
      return true;
    default:  // swap neighbours
      if (items.size() < 2) return false;
      {
        std::size_t i = below(rng, items.size() - 1);
        std::swap(items[i], items[i + 1]);
      }
      return true;
  }
}

std::uint32_t interesting_type(Rng& rng) {
  static constexpr std::array<std::uint32_t, 8> kTypes = {
      kTypeSetup, kTypeComplete, kTypeConfig, kTypeEnd, kTypeIterate, 0, 4, 0xffffffff};
  return kTypes[below(rng, kTypes.size())];
}

// More or fewer devices: a new one gets a copy of device 0's sections, the last one leaves
// with its own.
bool add_or_remove_device(Stream& s, Rng& rng) {
  if (s.ids.empty()) return false;
  if (one_in(rng, 2) && s.ids.size() < kMaxDevices) {
    std::uint32_t dev = static_cast<std::uint32_t>(s.ids.size());
    s.ids.push_back(s.ids[below(rng, s.ids.size())]);
    std::vector<Section> copies;
    for (const auto& sec : s.sections) {
      if (sec.type != kTypeEnd && sec.device == 0) {
        copies.push_back(sec);
        copies.back().device = dev;
      }
    }
    s.sections.insert(s.sections.end(), copies.begin(), copies.end());
    // Back into the phases the loader wants: all setups, iterates, completes, configs, end.
    std::stable_sort(s.sections.begin(), s.sections.end(),
                     [](const Section& a, const Section& b) { return phase(a) < phase(b); });
  } else {
    if (s.ids.size() == 1) return false;
    const auto gone = static_cast<std::uint32_t>(s.ids.size() - 1);
    s.ids.pop_back();
    std::erase_if(s.sections, [&](const Section& sec) { return sec.device == gone; });
  }
  s.count = static_cast<std::uint32_t>(s.ids.size());
  return true;
}

// An edit that keeps the stream well formed (docs/stream-format.md): device bytes, chunk
// boundaries, the number of chunks, which profile an id names, the number of devices. What
// such a stream meets is the devices' own checks, the deep part of a load.
bool edit_keeping_grammar(Stream& s, std::size_t max_size, const PlainMutator& plain, Rng& rng) {
  std::vector<Item*> bodies;  // DATA and CONFIG items
  std::vector<Section*> completes;
  for (auto& sec : s.sections) {
    for (auto& item : sec.items)
      if (item.has_length && item.length == item.body.size()) bodies.push_back(&item);
    if (sec.type == kTypeComplete) completes.push_back(&sec);
  }
  switch (below(rng, 8)) {
    case 0:
    case 1:
    case 2: {  // device bytes, often near the start where the device's own header lives
      if (bodies.empty()) return false;
      Item& item = *bodies[below(rng, bodies.size())];
      mutate_body(item, one_in(rng, 2) ? 64 : item.body.size(), max_size, plain, rng);
      if (item.body.empty()) item.body.push_back(static_cast<std::uint8_t>(rng()));
      // A config blob stays within a PCI config space.
      if (item.tag == kConfig && item.body.size() > 256) item.body.resize(256);
      item.length = item.body.size();
      return true;
    }
    case 3:
      if (completes.empty()) return false;
      rechunk(completes[below(rng, completes.size())]->items, rng);
      return true;
    case 4: {  // a DATA chunk twice, or one fewer
      if (completes.empty()) return false;
      auto& items = completes[below(rng, completes.size())]->items;
      if (items.size() < 2) return false;
      std::size_t i = below(rng, items.size() - 1);  // never the END
      if (one_in(rng, 2))
        items.insert(items.begin() + static_cast<std::ptrdiff_t>(i), Item(items[i]));
      else
        items.erase(items.begin() + static_cast<std::ptrdiff_t>(i));
      return true;
    }
    case 5: {  // a DATA body cut short or grown, honestly
      if (bodies.empty()) return false;
      Item& item = *bodies[below(rng, bodies.size())];
      if (item.tag != kData) return false;
      item.body.resize(one_in(rng, 2) ? below(rng, item.body.size()) + 1
                                      : item.body.size() + below(rng, 4096) + 1,
                       static_cast<std::uint8_t>(rng()));
      item.length = item.body.size();
      return true;
    }
    case 6: {  // the data goes to a device of another profile
      if (s.ids.empty()) return false;
      static constexpr std::array<std::string_view, 5> kIds = {"mtty#1", "mlx5#1", "stopcopy#1",
                                                               "p2p#1", "plain#1"};
      s.ids[below(rng, s.ids.size())] = std::string(kIds[below(rng, kIds.size())]);
      return true;
    }
    default:
      return add_or_remove_device(s, rng);
  }
}

bool mutate_stream(Stream& s, CrcPolicy& crc, std::size_t max_size, const PlainMutator& plain,
                   Rng& rng) {
  // Three in four edits keep the grammar; the rest break it on purpose (framing, order, tags).
  if (!one_in(rng, 4)) return edit_keeping_grammar(s, max_size, plain, rng);
  std::size_t pick = below(rng, 16);
  if (pick < 8) {
    // An end section carries no payload: editing one would only break its checksum.
    std::vector<Section*> with_payload;
    for (auto& sec : s.sections) {
      if (sec.type != kTypeEnd) with_payload.push_back(&sec);
    }
    if (with_payload.empty()) return false;
    return mutate_items(with_payload[below(rng, with_payload.size())]->items, max_size, plain, rng);
  }
  switch (pick) {
    case 8:  // drop, duplicate or move a section: ordering rules
      if (s.sections.empty()) return false;
      {
        std::size_t i = below(rng, s.sections.size());
        switch (below(rng, 3)) {
          case 0:
            s.sections.erase(s.sections.begin() + static_cast<std::ptrdiff_t>(i));
            break;
          case 1:
            s.sections.insert(
                s.sections.begin() + static_cast<std::ptrdiff_t>(below(rng, s.sections.size() + 1)),
                Section(s.sections[i]));
            break;
          default:
            std::swap(s.sections[i], s.sections[below(rng, s.sections.size())]);
        }
      }
      return true;
    case 9:
      if (s.sections.empty()) return false;
      s.sections[below(rng, s.sections.size())].type = interesting_type(rng);
      return true;
    case 10:  // a device index: in range, just out, the end marker, anything
      if (s.sections.empty()) return false;
      {
        std::uint32_t options[] = {static_cast<std::uint32_t>(below(rng, s.count + 1)), s.count,
                                   kNoDevice, static_cast<std::uint32_t>(rng())};
        s.sections[below(rng, s.sections.size())].device = options[below(rng, 4)];
      }
      return true;
    case 11:
      return add_or_remove_device(s, rng);
    case 12:  // the header's count disagrees with its ids, or an id changes
      if (one_in(rng, 2)) {
        std::uint32_t options[] = {0, 1, 2, kMaxDevices, kMaxDevices + 1, s.count + 1};
        s.count = options[below(rng, 6)];
      } else if (!s.ids.empty()) {
        static constexpr std::array<std::string_view, 6> kIds = {"mtty#1", "mlx5#1",  "stopcopy#1",
                                                                 "p2p#1",  "plain#1", ""};
        std::string& id = s.ids[below(rng, s.ids.size())];
        id = one_in(rng, 4) ? std::string(kMaxIdLength, 'x') : std::string(kIds[below(rng, 6)]);
      }
      return true;
    case 13:  // header fields the loader checks first
      if (one_in(rng, 2))
        s.version = one_in(rng, 2) ? 1 : static_cast<std::uint32_t>(below(rng, 3) * 2);
      else
        s.magic = one_in(rng, 2) ? kMagic : kMagic ^ (1ULL << below(rng, 64));
      return true;
    case 14:  // a wrong checksum somewhere
      if (one_in(rng, 3) || s.sections.empty())
        crc.corrupt_header = true;
      else
        crc.corrupt_section = static_cast<int>(below(rng, s.sections.size()));
      return true;
    default:  // what follows the last section: nothing, or junk
      if (s.tail.empty())
        s.tail.assign(below(rng, 32) + 1, static_cast<std::uint8_t>(rng()));
      else
        s.tail.clear();
      return true;
  }
}

std::uint8_t section_byte(std::uint32_t type) {
  auto it = std::find(kSectionTypes.begin(), kSectionTypes.end(), type);
  return static_cast<std::uint8_t>(it == kSectionTypes.end() ? 0 : it - kSectionTypes.begin());
}

bool mutate_section_input(SectionInput& in, std::size_t max_size, const PlainMutator& plain,
                          Rng& rng) {
  if (!one_in(rng, 4)) {  // as for streams: mostly edits that keep each payload well formed
    Stream view;
    view.sections = std::move(in.sections);
    const bool edited = edit_keeping_grammar(view, max_size, plain, rng);
    in.sections = std::move(view.sections);
    if (edited) return true;
  }
  auto& secs = in.sections;
  switch (below(rng, 12)) {
    case 0:
      in.profile = static_cast<std::uint8_t>(rng());
      return true;
    case 1:  // a payload under another section type
      if (secs.empty()) return false;
      secs[below(rng, secs.size())].type = kSectionTypes[below(rng, kSectionTypes.size())];
      return true;
    case 2:  // drop, duplicate or move a section
      if (secs.empty()) return false;
      {
        std::size_t i = below(rng, secs.size());
        switch (below(rng, 3)) {
          case 0:
            secs.erase(secs.begin() + static_cast<std::ptrdiff_t>(i));
            break;
          case 1:
            secs.insert(secs.begin() + static_cast<std::ptrdiff_t>(below(rng, secs.size() + 1)),
                        Section(secs[i]));
            break;
          default:
            std::swap(secs[i], secs[below(rng, secs.size())]);
        }
      }
      return true;
    case 3:  // what follows the last section: nothing, or junk
      if (in.tail.empty())
        in.tail.assign(below(rng, 16) + 1, static_cast<std::uint8_t>(rng()));
      else
        in.tail.clear();
      return true;
    default:
      if (secs.empty()) {
        secs.push_back(section(kTypeComplete, 0, {}));
      }
      return mutate_items(secs[below(rng, secs.size())].items, max_size, plain, rng);
  }
}

std::size_t deliver(const Bytes& out, std::uint8_t* data, std::size_t max_size) {
  if (out.empty() || out.size() > max_size) return 0;
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace

std::size_t parse_items(std::span<const std::uint8_t> data, bool to_end, std::vector<Item>& out) {
  return read_items(data, to_end, &out).consumed;
}

void write_items(const std::vector<Item>& items, Bytes& out) {
  for (const auto& item : items) {
    put64(out, item.tag);
    if (!item.has_length) continue;
    put64(out, item.length);
    out.insert(out.end(), item.body.begin(), item.body.end());
  }
}

std::optional<Stream> parse_stream(std::span<const std::uint8_t> data) {
  Stream s;
  thread_local Framing framing;
  if (!frame_stream(data, s, s.ids, framing)) return std::nullopt;
  s.sections.reserve(framing.starts.size());
  for (std::size_t start : framing.starts) {
    Reader r(data.subspan(start));
    Section& sec = s.sections.emplace_back();
    r.get32(sec.type);
    r.get32(sec.device);
    if (sec.type != kTypeEnd) read_items(data.subspan(start + r.pos()), false, &sec.items);
  }
  s.tail.assign(data.begin() + static_cast<std::ptrdiff_t>(framing.end), data.end());
  return s;
}

bool parse_ids(std::span<const std::uint8_t> data, std::vector<std::string_view>& ids) {
  ids.clear();
  Reader r(data);
  Stream s;
  return read_header(r, s, ids);
}

SectionInput parse_section_input(std::span<const std::uint8_t> data) {
  SectionInput in;
  in.profile = data[0];
  std::size_t done = 1;
  while (done < data.size()) {
    Section sec{kSectionTypes[data[done] % kSectionTypes.size()], 0, {}};
    std::size_t used = parse_items(data.subspan(done + 1), false, sec.items);
    if (sec.items.empty() || !ends_section(sec.items.back().tag)) break;
    in.sections.push_back(std::move(sec));
    done += 1 + used;
  }
  in.tail.assign(data.begin() + static_cast<std::ptrdiff_t>(done), data.end());
  return in;
}

Bytes write_section_input(const SectionInput& in) {
  Bytes out{in.profile};
  for (const auto& sec : in.sections) {
    out.push_back(section_byte(sec.type));
    write_items(sec.items, out);
  }
  out.insert(out.end(), in.tail.begin(), in.tail.end());
  return out;
}

Bytes write_stream(const Stream& s, CrcPolicy crc) {
  // Sized first: grown as it is written, a long stream was copied a dozen times.
  std::size_t size = 20 + s.tail.size();
  for (const auto& id : s.ids) size += 4 + id.size();
  for (const auto& sec : s.sections) {
    size += 12;
    for (const auto& item : sec.items) size += item.has_length ? 16 + item.body.size() : 8;
  }
  Bytes out;
  out.reserve(size);
  put64(out, s.magic);
  put32(out, s.version);
  put32(out, s.count);
  for (const auto& id : s.ids) {
    put32(out, static_cast<std::uint32_t>(id.size()));
    out.insert(out.end(), id.begin(), id.end());
  }
  put32(out, crc_of(out, 0) ^ (crc.corrupt_header ? 1u : 0u));
  for (std::size_t i = 0; i < s.sections.size(); ++i) {
    std::size_t start = out.size();
    put32(out, s.sections[i].type);
    put32(out, s.sections[i].device);
    write_items(s.sections[i].items, out);
    put32(out, crc_of(out, start) ^ (static_cast<int>(i) == crc.corrupt_section ? 1u : 0u));
  }
  out.insert(out.end(), s.tail.begin(), s.tail.end());
  return out;
}

std::string profile_for_id(std::string_view id) {
  for (auto name : kProfileNames) {
    if (id.find(name) != std::string_view::npos) return std::string(name);
  }
  return "mlx5";
}

Item tag_item(std::uint64_t tag) {
  return Item{tag, false, 0, {}};
}
Item data_item(Bytes body) {
  std::uint64_t n = body.size();
  return Item{kData, true, n, std::move(body)};
}
Item config_item(Bytes body) {
  std::uint64_t n = body.size();
  return Item{kConfig, true, n, std::move(body)};
}
Section section(std::uint32_t type, std::uint32_t device, std::vector<Item> items) {
  return Section{type, device, std::move(items)};
}
Section end_section() {
  return Section{kTypeEnd, kNoDevice, {}};
}

std::size_t mutate_structured(Kind kind, std::uint8_t* data, std::size_t size, std::size_t max_size,
                              std::uint32_t seed, const PlainMutator& plain) {
  Rng rng(seed);
  auto input = std::span<const std::uint8_t>(data, size);
  if (kind == Kind::kSection) {
    if (size == 0) return 0;
    SectionInput in = parse_section_input(input);
    for (int tries = 0; tries < 4 && !mutate_section_input(in, max_size, plain, rng); ++tries) {
    }
    return deliver(write_section_input(in), data, max_size);
  }
  auto s = parse_stream(input);
  if (!s) return 0;
  CrcPolicy crc;
  int edits = 1 + static_cast<int>(one_in(rng, 4) ? below(rng, 3) : 0);
  for (int i = 0; i < edits; ++i) {
    for (int tries = 0; tries < 4 && !mutate_stream(*s, crc, max_size, plain, rng); ++tries) {
    }
  }
  return deliver(write_stream(*s, crc), data, max_size);
}

std::size_t cross_over(Kind kind, std::span<const std::uint8_t> a, std::span<const std::uint8_t> b,
                       std::uint8_t* out, std::size_t max_size, std::uint32_t seed) {
  Rng rng(seed);
  if (kind == Kind::kSection) {
    if (a.empty() || b.empty()) return 0;
    SectionInput ia = parse_section_input(a), ib = parse_section_input(b);
    ia.sections.resize(below(rng, ia.sections.size() + 1));
    ia.sections.insert(
        ia.sections.end(),
        ib.sections.begin() + static_cast<std::ptrdiff_t>(below(rng, ib.sections.size() + 1)),
        ib.sections.end());
    ia.tail = ib.tail;
    return deliver(write_section_input(ia), out, max_size);
  }
  // What parsing both, splicing the section lists and writing the result would give, done on
  // the bytes: a section's bytes do not change, only every checksum is recomputed.
  Stream header_a, header_b;
  NoIds no_ids;
  thread_local Framing fa, fb;
  if (!frame_stream(a, header_a, no_ids, fa) || !frame_stream(b, header_b, no_ids, fb)) return 0;
  const std::size_t keep = below(rng, fa.starts.size() + 1);
  const std::size_t from = below(rng, fb.starts.size() + 1);
  const std::size_t a_end = keep < fa.starts.size() ? fa.starts[keep] : fa.end;
  const std::size_t b_start = from < fb.starts.size() ? fb.starts[from] : fb.end;
  const std::size_t size = a_end + (b.size() - b_start);
  if (size > max_size) return 0;
  std::memcpy(out, a.data(), a_end);
  std::memcpy(out + a_end, b.data() + b_start, b.size() - b_start);
  // Every checksum covers the bytes from its part's start to itself.
  auto seal = [&](std::size_t start, std::size_t end) {
    const std::uint32_t crc = crc32c(0, std::as_bytes(std::span(out + start, end - 4 - start)));
    for (int i = 0; i < 4; ++i) out[end - 4 + i] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
  };
  seal(0, fa.header_end);
  for (std::size_t i = 0; i < keep; ++i)
    seal(fa.starts[i], i + 1 < fa.starts.size() ? fa.starts[i + 1] : fa.end);
  for (std::size_t i = from, at = a_end; i < fb.starts.size(); ++i) {
    const std::size_t end = i + 1 < fb.starts.size() ? fb.starts[i + 1] : fb.end;
    seal(at, at + end - fb.starts[i]);
    at += end - fb.starts[i];
  }
  return size;
}

}  // namespace vfio::fuzz
