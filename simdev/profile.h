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
  int bad_header_errno = 0;  // write() errno for a malformed header/framing; 0: RS->S EINVAL only
  bool sticky_write_error = false;  // mlx5: after one failed write every later write is ENODEV
  bool nonblock_eagain = false;     // mlx5: O_NONBLOCK reads find no data ready at first
  bool deferred_reset = false;      // mtty: reset finishes later; old fds fail ENODEV
  bool failed_arc_lands_last_good = false;  // mlx5: a failing arc stops at the last good state;
                                            // others land in ERROR unless it was the first arc
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
// Total stream bytes for `image`.
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
  bool complete() const { return image_.has_value() && received_ == length_; }
  // Everything RS->S needs: valid header, every byte matched, nothing missing.
  bool accepted() const { return header_valid() && bytes_ok() && complete(); }
  std::uint64_t received() const { return received_; }
  // The declared image and stream length, once the header is in.
  std::optional<Image> image() const { return image_; }
  std::uint64_t expected_length() const { return length_; }

 private:
  static constexpr std::size_t kMaxHeader = 48;

  // Validates the header fields available so far; parses it when whole.
  bool check_header();

  const Profile* profile_;
  std::byte header_[kMaxHeader] = {};
  std::uint64_t received_ = 0;
  std::uint64_t length_ = 0;
  std::optional<Image> image_;
  bool framing_bad_ = false;
  bool bytes_ok_ = true;
};

}  // namespace vfio::sim
