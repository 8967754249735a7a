#include "simdev/profile.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "core/uapi.h"

namespace vfio::sim {
namespace {

constexpr std::uint64_t kAllFlags =
    uapi::kMigrationStopCopy | uapi::kMigrationP2p | uapi::kMigrationPreCopy;

constexpr std::array kProfiles = {
    Profile{
        .name = "mtty",
        .description =
            "kernel sample mtty: 96-byte state, header-only precopy, EFAULT on bad header",
        .mig_flags = kAllFlags,
        .default_state_size = 72,
        // Real mtty sets log_ops (no-ops): DMA logging is advertised and argument-checked.
        .dma_logging = true,
        .format = StreamFormat::kMtty,
        .precopy_eof_returns_zero = true,
        .precopy_header_only = true,
        .bad_header_errno = EFAULT,
        .deferred_reset = true,
        .keeps_state_on_close = true,
    },
    Profile{
        .name = "mlx5",
        .description = "mlx5_vfio_pci-like: 256 MiB in records, DMA logging, EAGAIN, sticky errors",
        .mig_flags = kAllFlags,
        .default_state_size = 256ULL << 20,
        .dma_logging = true,
        .format = StreamFormat::kMlx5Records,
        .record_payload = 4ULL << 20,
        .bad_header_errno = EOPNOTSUPP,
        .sticky_write_error = true,
        .nonblock_eagain = true,
        .failed_arc_lands_last_good = true,
    },
    Profile{
        .name = "stopcopy",
        .description = "STOP_COPY only (vfio_ap-like): the minimal migration device",
        .mig_flags = uapi::kMigrationStopCopy,
        .default_state_size = 64ULL << 20,
    },
    Profile{
        .name = "p2p",
        .description = "STOP_COPY and P2P, no precopy (pds/xe-like)",
        .mig_flags = uapi::kMigrationStopCopy | uapi::kMigrationP2p,
        .default_state_size = 64ULL << 20,
    },
    Profile{
        .name = "plain",
        .description = "every migration flag and DMA logging, plain stream, no quirks",
        .mig_flags = kAllFlags,
        .default_state_size = 64ULL << 20,
        .dma_logging = true,
    },
};

void put_le64(std::byte* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void put_le32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint64_t get_le64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}
std::uint32_t get_le32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}

using Prefix = std::array<std::byte, kRecordPrefixSize>;
Prefix record_prefix(std::uint64_t size, std::uint32_t tag) {
  Prefix b{};
  put_le64(b.data(), size);
  put_le32(b.data() + 8, 0);  // flags: mandatory record
  put_le32(b.data() + 12, tag);
  return b;
}

constexpr std::uint64_t kRecordsHeaderPayload = 32;

using HeaderBytes = std::array<std::byte, 48>;
HeaderBytes header_bytes(const Profile& p, const Image& img) {
  HeaderBytes h{};
  switch (p.format) {
    case StreamFormat::kPlain:
      put_le64(h.data(), kPlainMagic);
      put_le64(h.data() + 8, profile_tag(p));
      put_le64(h.data() + 16, img.seed);
      put_le64(h.data() + 24, img.size);
      break;
    case StreamFormat::kMtty:
      put_le64(h.data(), kMttyMagic);
      put_le64(h.data() + 8, img.seed);
      put_le64(h.data() + 16, img.size);
      break;
    case StreamFormat::kMlx5Records: {
      const Prefix pre = record_prefix(kRecordsHeaderPayload, kRecordTagHeader);
      std::copy(pre.begin(), pre.end(), h.begin());
      put_le64(h.data() + 16, kRecordsMagic);
      put_le64(h.data() + 24, profile_tag(p));
      put_le64(h.data() + 32, img.seed);
      put_le64(h.data() + 40, img.size);
      break;
    }
  }
  return h;
}

// A piece of the stream: either framing bytes (header or record prefix) or a body range.
struct Segment {
  std::uint64_t pos;  // stream offset of the first byte
  std::uint64_t len;
  const std::byte* framing;  // the expected bytes, or nullptr for body
  std::uint64_t body_offset;
};

// Visits stream bytes [offset, offset + len) as segments in order; `f` returns false to stop.
// The one place that knows each format's layout, shared by rendering and validation.
template <class F>
void walk(const Profile& p, const Image& img, std::uint64_t offset, std::uint64_t len, F&& f) {
  const std::uint64_t header = stream_header_size(p);
  const HeaderBytes hdr = header_bytes(p, img);
  const std::uint64_t end = offset + len;
  std::uint64_t pos = offset;
  while (pos < end) {
    std::uint64_t n;
    bool go;
    if (pos < header) {
      n = std::min(header, end) - pos;
      go = f(Segment{pos, n, hdr.data() + pos, 0});
    } else if (p.format != StreamFormat::kMlx5Records) {
      n = end - pos;
      go = f(Segment{pos, n, nullptr, pos - header});
    } else {
      const std::uint64_t stride = kRecordPrefixSize + p.record_payload;
      const std::uint64_t rel = pos - header, rec = rel / stride, in = rel % stride;
      const std::uint64_t payload = std::min(p.record_payload, img.size - rec * p.record_payload);
      if (in < kRecordPrefixSize) {
        const Prefix pre = record_prefix(payload, kRecordTagData);
        n = std::min(kRecordPrefixSize - in, end - pos);
        go = f(Segment{pos, n, pre.data() + in, 0});
      } else {
        const std::uint64_t within = in - kRecordPrefixSize;
        n = std::min(payload - within, end - pos);
        go = f(Segment{pos, n, nullptr, rec * p.record_payload + within});
      }
    }
    if (!go) return;
    pos += n;
  }
}

}  // namespace

const Profile* find_profile(std::string_view name) {
  for (const Profile& p : kProfiles)
    if (p.name == name) return &p;
  return nullptr;
}

std::span<const Profile> all_profiles() {
  return kProfiles;
}

std::uint64_t profile_tag(const Profile& p) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (char c : p.name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

std::uint64_t stream_header_size(const Profile& p) {
  switch (p.format) {
    case StreamFormat::kPlain:
      return 32;
    case StreamFormat::kMtty:
      return 24;
    case StreamFormat::kMlx5Records:
      return kRecordPrefixSize + kRecordsHeaderPayload;
  }
  return 0;
}

std::uint64_t base_stream_length(const Profile& p, std::uint64_t size) {
  std::uint64_t len = stream_header_size(p) + size;
  if (p.format == StreamFormat::kMlx5Records)
    len += kRecordPrefixSize * ((size + p.record_payload - 1) / p.record_payload);
  return len;
}

DirtyRange visible_writes(const Image& img) {
  if (img.size == 0 || img.written == 0) return {};
  const std::uint64_t length = std::min(img.written, img.size);
  return {img.written - length, length};
}

void render_dirty_record(const Image& img, DirtyRange r, std::uint64_t offset,
                         std::span<std::byte> out) {
  std::array<std::byte, kDirtyPrefixSize> prefix;
  put_le64(prefix.data(), kDirtyMagic);
  put_le64(prefix.data() + 8, r.cursor);
  put_le64(prefix.data() + 16, r.length);
  std::size_t done = 0;
  if (offset < kDirtyPrefixSize) {
    done = std::min<std::size_t>(kDirtyPrefixSize - offset, out.size());
    std::memcpy(out.data(), prefix.data() + offset, done);
  }
  if (done < out.size())
    render_written(img.seed, img.size, r.cursor + offset + done - kDirtyPrefixSize,
                   out.subspan(done));
}

void render_preamble(std::uint64_t offset, std::span<std::byte> out) {
  std::byte b[kPreambleSize];
  put_le64(b, kPrecopyMagic);
  std::memcpy(out.data(), b + offset, out.size());
}

void render_trailer(std::uint64_t final_cursor, std::uint64_t offset, std::span<std::byte> out) {
  std::byte b[kTrailerSize];
  put_le64(b, kEndMagic);
  put_le64(b + 8, final_cursor);
  std::memcpy(out.data(), b + offset, out.size());
}

std::uint64_t stream_length(const Profile& p, const Image& img) {
  return base_stream_length(p, img.size) + dirty_record_length(visible_writes(img).length);
}

void render_stream(const Profile& p, const Image& img, std::uint64_t offset,
                   std::span<std::byte> out) {
  const std::uint64_t base = base_stream_length(p, img.size);
  const std::size_t in_base =
      offset < base ? static_cast<std::size_t>(std::min<std::uint64_t>(base - offset, out.size()))
                    : 0;
  walk(p, img, offset, in_base, [&](const Segment& s) {
    std::span<std::byte> dst = out.subspan(s.pos - offset, s.len);
    if (s.framing)
      std::memcpy(dst.data(), s.framing, s.len);
    else
      render_body(img.seed, s.body_offset, dst);
    return true;
  });
  if (in_base < out.size())
    render_dirty_record(img, visible_writes(img), offset + in_base - base, out.subspan(in_base));
}

bool ResumeValidator::check_header() {
  const Profile& p = *profile_;
  const std::uint64_t have = received_ - preamble();
  auto field = [&](std::uint64_t off, std::uint64_t width) { return have >= off + width; };
  auto le64 = [&](std::uint64_t off) { return get_le64(header_ + off); };

  std::uint64_t base = 0;  // where the {magic, [tag], seed, size} block starts
  if (p.format == StreamFormat::kMlx5Records) {
    if (field(0, 8) && le64(0) != kRecordsHeaderPayload) return false;
    if (field(8, 4) && get_le32(header_ + 8) != 0) return false;
    if (field(12, 4) && get_le32(header_ + 12) != kRecordTagHeader) return false;
    base = kRecordPrefixSize;
  }
  const std::uint64_t magic = p.format == StreamFormat::kMtty          ? kMttyMagic
                              : p.format == StreamFormat::kMlx5Records ? kRecordsMagic
                                                                       : kPlainMagic;
  if (field(base, 8) && le64(base) != magic) return false;
  std::uint64_t at = base + 8;
  if (p.format != StreamFormat::kMtty) {
    if (field(at, 8) && le64(at) != profile_tag(p)) return false;
    at += 8;
  }
  const std::uint64_t seed_at = at, size_at = at + 8;
  // Bounded before anything (stream length, comparisons) is derived from it.
  if (field(size_at, 8) && le64(size_at) > kMaxDeclaredSize) return false;
  if (have == stream_header_size(p)) {
    image_ = Image{le64(seed_at), le64(size_at)};
    length_ = preamble() + base_stream_length(p, image_->size);
  }
  return true;
}

bool ResumeValidator::complete() const {
  if (!image_ || received_ < length_ || prefix_have_ || record_.length) return false;
  if (precopy_ && !(ended_ && final_ == written_)) return false;
  // After a gap (a writer that lapped the reader), the records since must cover the body.
  return !gap_from_ || written_ - *gap_from_ >= image_->size;
}

std::optional<Image> ResumeValidator::image() const {
  if (!image_) return std::nullopt;
  return Image{image_->seed, image_->size, written_};
}

std::uint64_t ResumeValidator::expected_length() const {
  if (!image_ || received_ < length_) return length_;
  if (record_.length) return received_ + record_.length - record_done_;
  return received_ + (prefix_have_ ? kDirtyPrefixSize - prefix_have_ : 0);
}

bool ResumeValidator::prefix_plausible(std::span<const std::byte> data, std::size_t have) const {
  if (ended_) return false;  // nothing follows the trailer
  auto matches = [&](std::uint64_t magic) {
    std::byte m[8];
    put_le64(m, magic);
    for (std::size_t i = 0; have + i < 8 && i < data.size(); ++i)
      if (data[i] != m[have + i]) return false;
    return true;
  };
  return matches(kDirtyMagic) || (precopy_ && matches(kEndMagic));
}

bool ResumeValidator::start_record() {
  const std::uint64_t cursor = get_le64(prefix_ + 8), length = get_le64(prefix_ + 16);
  const std::uint64_t size = image_->size;
  // An older write than the last `size` ones would overwrite a newer one: refused.
  if (length == 0 || length > size || cursor > kMaxCursor || cursor + size < written_) return false;
  if (cursor > written_) gap_from_ = cursor;
  record_ = {cursor, length};
  record_done_ = 0;
  prefix_have_ = 0;
  return true;
}

ResumeValidator::Feed ResumeValidator::feed_records(std::span<const std::byte> data) {
  while (!data.empty()) {
    if (!record_.length) {
      // Anything but a record here is excess data, as a stream longer than declared.
      if (!prefix_plausible(data, prefix_have_))
        return prefix_have_ ? (framing_bad_ = true, Feed::kBadHeader) : Feed::kOverflow;
      // The trailer is shorter than a record prefix; both start with their magic.
      const bool trailer = prefix_have_ >= 8 && get_le64(prefix_) == kEndMagic;
      const std::size_t want = trailer ? kTrailerSize : kDirtyPrefixSize;
      const std::size_t n =
          std::min((prefix_have_ < 8 ? std::size_t{8} : want) - prefix_have_, data.size());
      std::memcpy(prefix_ + prefix_have_, data.data(), n);
      prefix_have_ += n;
      received_ += n;
      data = data.subspan(n);
      if (prefix_have_ == kTrailerSize && trailer) {
        ended_ = true;
        final_ = get_le64(prefix_ + 8);
        prefix_have_ = 0;
      } else if (prefix_have_ == kDirtyPrefixSize && !start_record()) {
        framing_bad_ = true;
        return Feed::kBadHeader;
      }
      continue;
    }
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(record_.length - record_done_, data.size()));
    if (bytes_ok_ &&
        !written_matches(image_->seed, image_->size, record_.cursor + record_done_, data.first(n)))
      bytes_ok_ = false;
    record_done_ += n;
    received_ += n;
    data = data.subspan(n);
    if (record_done_ == record_.length) {
      written_ = std::max(written_, record_.cursor + record_.length);
      record_ = {};
    }
  }
  return Feed::kOk;
}

ResumeValidator::Feed ResumeValidator::feed(std::span<const std::byte> data) {
  if (framing_bad_) return Feed::kBadHeader;
  // A pre-copy session's stream opens with the preamble (no profile's header starts like it).
  if (!image_ && !data.empty() && (received_ == 0 || (precopy_ && received_ < kPreambleSize))) {
    std::byte m[kPreambleSize];
    put_le64(m, kPrecopyMagic);
    if (received_ == 0) precopy_ = data[0] == m[0];
    if (precopy_) {
      const std::size_t n = std::min<std::size_t>(kPreambleSize - received_, data.size());
      if (std::memcmp(data.data(), m + received_, n) != 0) {
        framing_bad_ = true;
        return Feed::kBadHeader;
      }
      received_ += n;
      data = data.subspan(n);
      if (received_ < kPreambleSize) return Feed::kOk;  // the rest of the preamble comes later
    }
  }
  if (!image_) {
    const std::uint64_t at = received_ - preamble();
    const std::size_t n = std::min<std::uint64_t>(stream_header_size(*profile_) - at, data.size());
    std::memcpy(header_ + at, data.data(), n);
    received_ += n;
    data = data.subspan(n);
    if (!check_header()) {
      framing_bad_ = true;
      return Feed::kBadHeader;
    }
    if (!image_) return Feed::kOk;
  }
  const std::uint64_t in_base =
      std::min<std::uint64_t>(length_ - std::min(received_, length_), data.size());
  // Excess after the base stream is refused before any of this call's data is consumed.
  if (in_base < data.size() && received_ + in_base == length_ && !prefix_have_ && !record_.length &&
      written_ == 0 && !prefix_plausible(data.subspan(in_base), 0))
    return Feed::kOverflow;
  const std::uint64_t start = received_ - preamble();
  walk(*profile_, *image_, start, in_base, [&](const Segment& s) {
    const std::span<const std::byte> got = data.subspan(s.pos - start, s.len);
    if (s.framing) {
      if (std::memcmp(got.data(), s.framing, s.len) != 0) {
        framing_bad_ = true;
        return false;
      }
    } else if (bytes_ok_ && !body_matches(image_->seed, s.body_offset, got)) {
      bytes_ok_ = false;  // keep walking: framing errors still matter for write()
    }
    return true;
  });
  received_ += in_base;
  if (framing_bad_) return Feed::kBadHeader;
  return feed_records(data.subspan(static_cast<std::size_t>(in_base)));
}

}  // namespace vfio::sim
