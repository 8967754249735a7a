#include "core/payload.h"

#include <cerrno>
#include <utility>

#include <fmt/format.h>

namespace vfio {
namespace {

using container::SectionType;

std::string_view grammar(SectionType type) {
  switch (type) {
    case SectionType::kSetup:
      return "DEV_SETUP_STATE END_OF_STATE";
    case SectionType::kIterate:
      return "at most one DEV_DATA_STATE, then END_OF_STATE or DEV_INIT_DATA_SENT";
    case SectionType::kComplete:
      return "DEV_DATA_STATE chunks, then END_OF_STATE";
    case SectionType::kConfig:
      return "DEV_CONFIG_STATE length bytes END_OF_STATE";
    case SectionType::kEnd:
      break;
  }
  return "nothing";
}

// Reads tags and lengths, remembering where each tag began.
class TagReader {
 public:
  TagReader(StreamReader& in, SectionType type) : in_(in), type_(type) {}

  Result<std::uint64_t> next() {
    offset_ = in_.bytes_read();
    const std::uint64_t t = in_.get_be64();
    if (auto s = in_.status(); !s) return std::unexpected(std::move(s).error());
    return t;
  }
  std::uint64_t offset() const { return offset_; }

  // The tag just read does not belong here.
  std::unexpected<Error> misplaced(std::uint64_t t) const {
    return fail(EINVAL,
                fmt::format("{} at stream offset {}, where the {} section holds {}", tag_name(t),
                            offset_, container::section_name(type_), grammar(type_)));
  }

  Result<> expect(std::uint64_t wanted) {
    auto t = next();
    if (!t) return std::unexpected(std::move(t).error());
    if (*t != wanted) return misplaced(*t);
    return {};
  }

  // A DATA tag was just read: its size, then the chunk goes to the handler.
  Result<> data(const DataHandler& handler) {
    const std::uint64_t at = offset_;
    const std::uint64_t size = in_.get_be64();
    if (auto s = in_.status(); !s) return s;
    if (size == 0) {
      return fail(EINVAL, fmt::format("empty DEV_DATA_STATE chunk at stream offset {} (a source "
                                      "never writes one)",
                                      at));
    }
    return handler(in_, size, at);
  }

 private:
  StreamReader& in_;
  SectionType type_;
  std::uint64_t offset_ = 0;
};

}  // namespace

std::string tag_name(std::uint64_t t) {
  switch (t) {
    case tag::kEndOfState:
      return "END_OF_STATE";
    case tag::kConfigState:
      return "DEV_CONFIG_STATE";
    case tag::kSetupState:
      return "DEV_SETUP_STATE";
    case tag::kDataState:
      return "DEV_DATA_STATE";
    case tag::kInitDataSent:
      return "DEV_INIT_DATA_SENT";
  }
  return fmt::format("unknown tag {:#x}", t);
}

Result<Payload> read_payload(StreamReader& in, SectionType type, const DataHandler& data) {
  TagReader tags(in, type);
  Payload out;
  // Every payload ends with one tag: END_OF_STATE, or DEV_INIT_DATA_SENT in an iterate section.
  auto ended = [&](Result<std::uint64_t> t) -> Result<Payload> {
    if (!t) return std::unexpected(std::move(t).error());
    out.end_offset = tags.offset();
    if (type == SectionType::kIterate && *t == tag::kInitDataSent) {
      out.init_data_sent = true;
      return std::move(out);
    }
    if (*t != tag::kEndOfState) return tags.misplaced(*t);
    return std::move(out);
  };
  switch (type) {
    case SectionType::kSetup:
      if (auto r = tags.expect(tag::kSetupState); !r) return std::unexpected(std::move(r).error());
      return ended(tags.next());
    case SectionType::kConfig: {
      if (auto r = tags.expect(tag::kConfigState); !r) return std::unexpected(std::move(r).error());
      const std::uint64_t at = tags.offset();
      const std::uint64_t length = in.get_be64();
      if (auto s = in.status(); !s) return std::unexpected(std::move(s).error());
      if (length > kMaxConfigBlob) {
        return fail(EINVAL, fmt::format("config space of {} bytes at stream offset {} exceeds the "
                                        "{}-byte limit",
                                        length, at, kMaxConfigBlob));
      }
      out.config.resize(static_cast<std::size_t>(length));
      in.get_buffer(out.config);
      if (auto s = in.status(); !s) return std::unexpected(std::move(s).error());
      return ended(tags.next());
    }
    case SectionType::kIterate:
    case SectionType::kComplete: {
      auto t = tags.next();
      // An iterate section carries at most one block: one read() in PRE_COPY.
      for (int chunks = 0; t && *t == tag::kDataState; ++chunks) {
        if (type == SectionType::kIterate && chunks == 1) return tags.misplaced(*t);
        if (auto r = tags.data(data); !r) return std::unexpected(std::move(r).error());
        t = tags.next();
      }
      return ended(std::move(t));
    }
    case SectionType::kEnd:
      break;
  }
  return fail(EINVAL, "the end section has no payload");
}

void begin_one_device_stream(StreamWriter& out, const std::string& device_id) {
  container::write_header(out, {{device_id}});
  container::begin_section(out, container::SectionType::kSetup, 0);
  out.put_be64(tag::kSetupState);
  out.put_be64(tag::kEndOfState);
  container::end_section(out);
}

void end_one_device_stream(StreamWriter& out, std::span<const std::byte> config) {
  container::begin_section(out, container::SectionType::kConfig, 0);
  out.put_be64(tag::kConfigState);
  out.put_be64(config.size());
  out.put_buffer(config);
  out.put_be64(tag::kEndOfState);
  container::end_section(out);
  container::begin_section(out, container::SectionType::kEnd, container::kNoDevice);
  container::end_section(out);
}

}  // namespace vfio
