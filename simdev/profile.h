// Simulated device profiles: which migration flags a device advertises, how its state stream
// is framed, and the small behavioural quirks of the real drivers it imitates. Also the stream
// codec for each framing: length, rendering at any offset, and incremental resume validation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "simdev/image.h"

namespace vfio::sim {

enum class StreamFormat {
  kPlain,        // 32-byte header {le64 magic, le64 profile tag, le64 seed, le64 size}, then body
  kMtty,         // 24-byte header {le64 0x7e9d09898c3e2c4e, le64 seed, le64 size}, then body
  kMlx5Records,  // records {le64 size, le32 flags, le32 tag} + payload: a header record, then
                 // the body in records of `record_payload` bytes
};

struct Profile {
  std::string_view name;
  std::string_view description;
  std::uint64_t mig_flags = 0;           // uapi::kMigration*
  std::uint64_t default_state_size = 0;  // body bytes (Image::size) when SimOptions says 0
  bool dma_logging = false;
  StreamFormat format = StreamFormat::kPlain;
  std::uint64_t record_payload = 4ULL << 20;  // kMlx5Records only; never 0

  // Quirks of real drivers.
  bool precopy_eof_returns_zero = false;  // mtty: 0 instead of ENOMSG at temporary precopy EOF
  // mtty: PRE_COPY offers only the stream header (initial_bytes = its size, dirty_bytes 0); the
  // body is produced on the move to STOP_COPY, where the session continues after what was read.
  bool precopy_header_only = false;
  int bad_header_errno = 0;  // write() errno for a malformed header/framing; 0: RS->S EINVAL only
  bool sticky_write_error = false;  // mlx5: after one failed write every later write is ENODEV
  bool nonblock_eagain = false;     // mlx5: O_NONBLOCK reads find no data ready at first
  bool deferred_reset = false;      // mtty: reset finishes later; old fds fail ENODEV
  bool failed_arc_lands_last_good = false;  // mlx5: a failing arc stops at the last good state;
                                            // others land in ERROR unless it was the first arc
  // mtty: closing the device keeps its migration state (mtty_close_device never resets it);
  // vfio-pci drivers (mlx5, hisi_acc, pds...) return to RUNNING when the device is closed.
  bool keeps_state_on_close = false;
};

const Profile* find_profile(std::string_view name);
std::span<const Profile> all_profiles();

// A declared body size above this is rejected before anything depends on it.
constexpr std::uint64_t kMaxDeclaredSize = 64ULL << 30;
constexpr std::uint64_t kMttyMagic = 0x7e9d09898c3e2c4eULL;
constexpr std::uint64_t kPlainMagic = 0x314e4c504d495356ULL;    // "VSIMPLN1" little-endian
constexpr std::uint64_t kRecordsMagic = 0x3143524d4d495356ULL;  // "VSIMMRC1"
constexpr std::uint32_t kRecordTagData = 0;                     // as mlx5's firmware-data tag
constexpr std::uint32_t kRecordTagHeader = 0x5349;
constexpr std::size_t kRecordPrefixSize = 16;

// Identifies the profile in headers that carry it (kPlain, kMlx5Records), so a stream from
// another profile with the same framing is still rejected.
std::uint64_t profile_tag(const Profile& p);

// Bytes before the first body byte.
std::uint64_t stream_header_size(const Profile& p);
// Header and framed body of the state's seed: the stream of an image the guest never wrote to.
std::uint64_t base_stream_length(const Profile& p, std::uint64_t size);

// Dirty records carry guest writes (Image::written) after the base stream, in every profile:
// {le64 kDirtyMagic, le64 cursor, le64 length} + the bytes written at cursor positions
// [cursor, cursor + length). A stream may hold any number; they must leave every body byte
// with its last write, and each record's length is at most the body size, so a device that
// keeps being written never sends more than one body's worth per record.
constexpr std::uint64_t kDirtyMagic = 0x4345525954524944ULL;  // "DIRTYREC" little-endian
constexpr std::size_t kDirtyPrefixSize = 24;
constexpr std::uint64_t kMaxCursor = 1ULL << 62;  // cursor + length never overflows

// A device whose guest writes (SimOptions::dirty_*) streams a pre-copy session with a preamble
// {le64 kPrecopyMagic} before the initial data and, in STOP_COPY, a trailer {le64 kEndMagic,
// le64 final cursor}: the resume side then knows that data is missing when the last dirty
// records never arrive (a valid but older image otherwise). Without guest writes a pre-copy
// session streams as the real drivers do.
constexpr std::uint64_t kPrecopyMagic = 0x3159504f43455250ULL;  // "PRECOPY1"
constexpr std::uint64_t kEndMagic = 0x31444e4559525444ULL;      // "DTRYEND1"
constexpr std::size_t kPreambleSize = 8;
constexpr std::size_t kTrailerSize = 16;
void render_preamble(std::uint64_t offset, std::span<std::byte> out);
void render_trailer(std::uint64_t final_cursor, std::uint64_t offset, std::span<std::byte> out);

struct DirtyRange {
  std::uint64_t cursor = 0;
  std::uint64_t length = 0;  // 0: no record
};
constexpr std::uint64_t dirty_record_length(std::uint64_t length) {
  return length ? kDirtyPrefixSize + length : 0;
}
// The writes still visible in the image: the last min(written, size) cursor positions.
DirtyRange visible_writes(const Image& image);
// Writes record bytes [offset, offset + out.size()) of the record for `range`.
void render_dirty_record(const Image& image, DirtyRange range, std::uint64_t offset,
                         std::span<std::byte> out);

// Total stream bytes for `image`: the base stream, then one record of its visible writes.
std::uint64_t stream_length(const Profile& p, const Image& image);
// Writes stream bytes [offset, offset + out.size()); the range must lie within the stream.
void render_stream(const Profile& p, const Image& image, std::uint64_t offset,
                   std::span<std::byte> out);

// Checks a resume stream as it arrives, in any chunking: the header is parsed first (it names
// the seed and size), then every later byte is compared with the rendering. Holds no stream data
// beyond the header.
class ResumeValidator {
 public:
  enum class Feed {
    kOk,         // accepted (body mismatches are only recorded; they surface at RS->S)
    kBadHeader,  // the header or record framing is malformed (now or earlier)
    kOverflow,   // more bytes than the header declared; nothing past the header was consumed
  };

  explicit ResumeValidator(const Profile& p) : profile_(&p) {}

  Feed feed(std::span<const std::byte> data);

  bool header_valid() const { return image_.has_value() && !framing_bad_; }
  bool framing_bad() const { return framing_bad_; }
  bool bytes_ok() const { return bytes_ok_ && !framing_bad_; }
  // The base stream is in, no record is cut short, every body byte has its last write, and a
  // pre-copy stream's trailer arrived with the cursor the records reached.
  bool complete() const;
  // Everything RS->S needs: valid header, every byte matched, nothing missing.
  bool accepted() const { return header_valid() && bytes_ok() && complete(); }
  std::uint64_t received() const { return received_; }
  // The image the stream describes so far (its writes up to the last whole record), once the
  // header is in.
  std::optional<Image> image() const;
  // The length the stream needs at least: the base stream, or the end of the current record.
  std::uint64_t expected_length() const;

 private:
  static constexpr std::size_t kMaxHeader = 48;

  // Validates the header fields available so far; parses it when whole.
  bool check_header();
  // Whether `data` could continue a record prefix that has `have` bytes.
  bool prefix_plausible(std::span<const std::byte> data, std::size_t have) const;
  std::uint64_t preamble() const { return precopy_ ? kPreambleSize : 0; }
  // Takes bytes after the base stream: record prefixes and record bytes.
  Feed feed_records(std::span<const std::byte> data);
  bool start_record();

  const Profile* profile_;
  std::byte header_[kMaxHeader] = {};
  std::uint64_t received_ = 0;
  std::uint64_t length_ = 0;  // of the base stream
  std::optional<Image> image_;
  bool framing_bad_ = false;
  bool bytes_ok_ = true;
  // Dirty records.
  std::byte prefix_[kDirtyPrefixSize] = {};
  std::size_t prefix_have_ = 0;
  DirtyRange record_;  // the record being received (length 0: none)
  std::uint64_t record_done_ = 0;
  std::uint64_t written_ = 0;              // cursor end of the writes applied
  std::optional<std::uint64_t> gap_from_;  // writes from here on must cover the whole body
  bool precopy_ = false;                   // the stream began with the pre-copy preamble
  bool ended_ = false;                     // its trailer arrived
  std::uint64_t final_ = 0;
};

}  // namespace vfio::sim
