#include "qemu/qemu_stream.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "core/json_value.h"
#include "core/payload.h"
#include "core/untrusted_text.h"

namespace vfio::qemu {
namespace {

// Section types (migration/savevm.h).
constexpr std::uint8_t kEofByte = 0x00;
constexpr std::uint8_t kStartByte = 0x01;
constexpr std::uint8_t kPartByte = 0x02;
constexpr std::uint8_t kEndByte = 0x03;
constexpr std::uint8_t kFullByte = 0x04;
constexpr std::uint8_t kSubsectionByte = 0x05;
constexpr std::uint8_t kDescriptionByte = 0x06;
constexpr std::uint8_t kConfigurationByte = 0x07;
constexpr std::uint8_t kCommandByte = 0x08;
constexpr std::uint8_t kFooterByte = 0x7e;

// MIG_CMD_* that change nothing in what follows them.
constexpr std::uint16_t kCmdOpenReturnPath = 1;
constexpr std::uint16_t kCmdPing = 2;
constexpr std::uint16_t kCmdSwitchoverStart = 11;

// RAM record flags (migration/ram.c), in the low bits of the page address.
constexpr std::uint64_t kRamZero = 0x02;
constexpr std::uint64_t kRamMemSize = 0x04;
constexpr std::uint64_t kRamPage = 0x08;
constexpr std::uint64_t kRamEos = 0x10;
constexpr std::uint64_t kRamContinue = 0x20;
constexpr std::uint64_t kRamXbzrle = 0x40;
constexpr std::uint64_t kRamMultifdFlush = 0x200;
constexpr std::uint8_t kXbzrleEncoding = 0x01;

// Fields the VM description may make the walker visit, over the whole stream: an array of
// empty structs must not spin.
constexpr std::uint64_t kDescriptionBudget = 1u << 22;

// Without a VM description (docs/qemu.md): x86's target page size.
constexpr std::uint64_t kAssumedPageSize = 4096;
constexpr std::string_view kNoDescription =
    "no QEMU_VM_VMDESCRIPTION follows at the end of the file (the file is cut short, or QEMU "
    "left it out with suppress-vmdesc=on): vmstate sections cannot be stepped over without it";

bool is_vfio_idstr(std::string_view idstr) {
  return idstr == "vfio" || idstr.ends_with("/vfio");
}

std::string quoted(std::string_view untrusted) {
  return "'" + printable_prefix(untrusted, kListedIdBytes) + "'";
}

// The VM description's type byte: 0x06 and a be32 length reaching exactly the end of the file.
// JSON text holds no byte 0x06, so the last such candidate is it.
std::optional<std::uint64_t> find_description(std::span<const std::byte> in) {
  for (std::uint64_t t = in.size() >= 5 ? in.size() - 5 : 0; in.size() >= 5 && t > 0; --t) {
    if (std::to_integer<std::uint8_t>(in[t]) != kDescriptionByte) continue;
    std::uint64_t len = 0;
    for (int i = 1; i <= 4; ++i) len = len << 8 | std::to_integer<std::uint8_t>(in[t + i]);
    if (len == in.size() - t - 5) return t;
  }
  return std::nullopt;
}

class Walker {
 public:
  Walker(std::span<const std::byte> in, Walk& out) : in_(in), out_(out) {}

  void run() {
    auto r = sections();
    if (!r) out_.error = r.error();
  }

 private:
  // --- errors ---------------------------------------------------------------------------------
  std::unexpected<Error> stop(std::uint64_t at, int code, std::string reason) {
    out_.error_offset = at;
    return fail(code, fmt::format("QEMU stream offset {}: {}", at, reason));
  }
  std::unexpected<Error> truncated(std::string_view what) {
    return stop(pos_, EINVAL,
                fmt::format("{} is cut off: the {} ends at offset {}", what,
                            desc_ ? "stream before its VM description" : "file", limit_));
  }

  // Where a section read so far ends: at the error when it lies past the bytes read (a length
  // running past the end), else at the bytes read (an error named at the section's start).
  std::uint64_t read_to(const Result<>& r) const {
    return r ? pos_ : std::max(pos_, out_.error_offset);
  }

  // --- bounded reads --------------------------------------------------------------------------
  bool has(std::uint64_t n) const { return n <= limit_ - pos_; }
  std::uint64_t be(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | std::to_integer<std::uint8_t>(in_[pos_++]);
    return v;
  }
  Result<std::uint64_t> get(int bytes, std::string_view what) {
    if (!has(bytes)) return truncated(what);
    return be(bytes);
  }
  Result<> skip(std::uint64_t n, std::string_view what) {
    if (!has(n)) return truncated(what);
    pos_ += n;
    return {};
  }
  // A u8 length and that many bytes (QEMU's idstrs and RAM block names).
  Result<std::string> name(std::string_view what) {
    auto len = get(1, what);
    if (!len) return std::unexpected(len.error());
    if (!has(*len)) return truncated(what);
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), *len);
    pos_ += *len;
    return s;
  }

  // --- the stream -----------------------------------------------------------------------------
  Result<> sections() {
    limit_ = in_.size();
    auto magic = get(4, "the file magic");
    if (!magic) return std::unexpected(magic.error());
    if (*magic != kMagic) return stop(0, EINVAL, "not a QEMU migration stream (no QEVM magic)");
    auto version = get(4, "the file version");
    if (!version) return std::unexpected(version.error());
    out_.stream.version = static_cast<std::uint32_t>(*version);
    if (*version != kVersion) {
      return stop(4, ENOTSUP,
                  fmt::format("file version {}: only version {} (QEMU 2.0 and later) is read",
                              *version, kVersion));
    }
    if (auto r = description(); !r) return r;
    while (true) {
      const std::uint64_t at = pos_;
      auto type = get(1, "a section type");
      if (!type) return std::unexpected(type.error());
      Section s;
      s.bytes.offset = at;
      Result<> r;
      switch (*type) {
        case kConfigurationByte:
          r = configuration(s);
          break;
        case kStartByte:
        case kFullByte:
          r = device_section(s, *type == kStartByte ? SectionKind::kStart : SectionKind::kFull);
          break;
        case kPartByte:
        case kEndByte:
          r = device_section(s, *type == kPartByte ? SectionKind::kPart : SectionKind::kEnd);
          break;
        case kCommandByte:
          r = command(s);
          break;
        case kEofByte:
          return end_of_stream(s);
        default:
          return stop(at, EINVAL, fmt::format("unknown section type 0x{:02x}", *type));
      }
      s.bytes.size = read_to(r) - at;
      out_.stream.sections.push_back(std::move(s));
      if (!r) return r;
    }
  }

  // Finds and parses the VM description; the sections end where it begins.
  Result<> description() {
    const auto at = find_description(in_);
    if (!at || *at < pos_ + 1) {
      // A cut file has none either: read what needs no description, under the common page size.
      out_.stream.page_size = kAssumedPageSize;
      out_.stream.page_size_assumed = true;
      limit_ = in_.size();
      return {};
    }
    description_at_ = *at;
    const std::uint64_t text_at = *at + 5;
    std::string text(reinterpret_cast<const char*>(in_.data() + text_at), in_.size() - text_at);
    auto doc = json::Document::parse(std::move(text));
    if (!doc) {
      return stop(text_at, EINVAL, "the VM description is not JSON: " + doc.error().message);
    }
    desc_ = std::move(*doc);
    const json::Value root = desc_->root();
    const auto page = root.get("page_size");
    const auto page_size = page ? page->integer() : std::nullopt;
    if (!page_size || *page_size < 512 || *page_size > (1 << 24) ||
        !std::has_single_bit(static_cast<std::uint64_t>(*page_size))) {
      return stop(text_at, EINVAL, "the VM description has no valid \"page_size\"");
    }
    out_.stream.page_size = static_cast<std::uint64_t>(*page_size);
    const auto devices = root.get("devices");
    if (!devices || !devices->is_array()) {
      return stop(text_at, EINVAL, "the VM description has no \"devices\" list");
    }
    for (const json::Value& d : devices->elements()) {
      const auto dev_name = d.get("name");
      const auto dev_instance = d.get("instance_id");
      const auto n = dev_name ? dev_name->string() : std::nullopt;
      const auto i = dev_instance ? dev_instance->integer() : std::nullopt;
      if (!n || !i) {
        return stop(text_at + d.offset(), EINVAL,
                    "a VM description device without \"name\" or \"instance_id\"");
      }
      if (!described_.emplace(std::pair(*n, *i), d).second) {
        return stop(text_at + d.offset(), EINVAL,
                    fmt::format("the VM description lists {} instance {} twice", quoted(*n), *i));
      }
    }
    configuration_ = root.get("configuration");
    limit_ = description_at_;
    return {};
  }

  Result<> end_of_stream(Section& s) {
    s.kind = SectionKind::kEof;
    s.bytes.size = 1;
    out_.stream.sections.push_back(s);
    if (!desc_) return stop(pos_ - 1, ENOTSUP, "QEMU_VM_EOF " + std::string(kNoDescription));
    if (pos_ != description_at_) {
      return stop(pos_ - 1, EINVAL,
                  fmt::format("QEMU_VM_EOF at offset {}, but the VM description begins at {}",
                              pos_ - 1, description_at_));
    }
    Section d;
    d.kind = SectionKind::kVmDescription;
    d.bytes = {description_at_, in_.size() - description_at_};
    d.payload = {description_at_ + 5, in_.size() - description_at_ - 5};
    out_.stream.sections.push_back(d);
    return {};
  }

  Result<> configuration(Section& s) {
    s.kind = SectionKind::kConfiguration;
    s.payload.offset = pos_;
    // Its first field is the machine type: be32 length, the name.
    auto len = get(4, "the configuration's machine type");
    if (!len) return std::unexpected(len.error());
    if (!has(*len)) return truncated("the configuration's machine type");
    s.machine.assign(reinterpret_cast<const char*>(in_.data() + pos_), *len);
    if (configuration_) {
      pos_ = s.payload.offset;
      if (auto r = vmstate(*configuration_); !r) return r;
    } else {
      pos_ += *len;
      if (has(1) && std::to_integer<std::uint8_t>(in_[pos_]) == kSubsectionByte) {
        return stop(pos_, ENOTSUP,
                    "a configuration subsection, and the VM description does not describe the "
                    "configuration");
      }
    }
    s.payload.size = pos_ - s.payload.offset;
    return {};
  }

  Result<> command(Section& s) {
    s.kind = SectionKind::kCommand;
    auto cmd = get(2, "a command");
    if (!cmd) return std::unexpected(cmd.error());
    s.command = static_cast<std::uint16_t>(*cmd);
    auto len = get(2, "a command's length");
    if (!len) return std::unexpected(len.error());
    s.payload.offset = pos_;
    if (*cmd != kCmdOpenReturnPath && *cmd != kCmdPing && *cmd != kCmdSwitchoverStart) {
      return stop(s.bytes.offset, ENOTSUP,
                  fmt::format("command MIG_CMD_{} ({}) is not supported (postcopy, packaged and "
                              "COLO streams are refused)",
                              command_name(s.command), *cmd));
    }
    if (auto r = skip(*len, "a command's data"); !r) return r;
    s.payload.size = *len;
    return {};
  }

  Result<> device_section(Section& s, SectionKind kind) {
    s.kind = kind;
    auto id = get(4, "a section id");
    if (!id) return std::unexpected(id.error());
    s.section_id = static_cast<std::uint32_t>(*id);
    if (kind == SectionKind::kStart || kind == SectionKind::kFull) {
      auto idstr = name("a section's idstr");
      if (!idstr) return std::unexpected(idstr.error());
      s.idstr = std::move(*idstr);
      auto instance = get(4, "a section's instance id");
      if (!instance) return std::unexpected(instance.error());
      auto version = get(4, "a section's version id");
      if (!version) return std::unexpected(version.error());
      s.instance_id = static_cast<std::uint32_t>(*instance);
      s.version_id = static_cast<std::uint32_t>(*version);
      if (kind == SectionKind::kStart &&
          !live_.emplace(s.section_id, out_.stream.sections.size()).second) {
        return stop(s.bytes.offset, EINVAL,
                    fmt::format("a second start section with id {}", s.section_id));
      }
    } else {
      const auto start = live_.find(s.section_id);
      if (start == live_.end()) {
        return stop(s.bytes.offset, EINVAL,
                    fmt::format("{} section with id {}, which no start section opened",
                                kind_name(kind), s.section_id));
      }
      const Section& opened = out_.stream.sections[start->second];
      s.idstr = opened.idstr;
      s.instance_id = opened.instance_id;
      s.version_id = opened.version_id;
    }
    s.payload.offset = pos_;
    Result<> r;
    if (kind == SectionKind::kFull) {
      r = full_payload(s);
    } else if (s.idstr == "ram") {
      s.ram.emplace();
      r = ram_payload(*s.ram);
    } else if (s.is_vfio()) {
      r = vfio_live_payload(s);
    } else {
      r = stop(s.bytes.offset, ENOTSUP,
               fmt::format("live section {}: only RAM and VFIO devices are read", quoted(s.idstr)));
    }
    s.payload.size = read_to(r) - s.payload.offset;
    if (!r) return r;
    const std::uint64_t footer_at = pos_;
    auto footer = get(1, "a section footer");
    if (!footer) return std::unexpected(footer.error());
    auto footer_id = get(4, "a section footer");
    if (!footer_id) return std::unexpected(footer_id.error());
    if (*footer != kFooterByte || *footer_id != s.section_id) {
      return stop(footer_at, EINVAL,
                  fmt::format("section {} ({}) has no footer after its payload: found 0x{:02x} "
                              "0x{:08x} where 0x7e 0x{:08x} belongs",
                              s.section_id, quoted(s.idstr), *footer, *footer_id, s.section_id));
    }
    s.footer_ok = true;
    return {};
  }

  // --- vmstate, as the VM description says -------------------------------------------------
  Result<> full_payload(Section& s) {
    if (!desc_) {
      return stop(s.bytes.offset, ENOTSUP,
                  fmt::format("full section {}: its length is not in the stream, and {}",
                              quoted(s.idstr), kNoDescription));
    }
    const auto d = described_.find(std::pair(s.idstr, static_cast<std::int64_t>(s.instance_id)));
    if (d == described_.end()) {
      return stop(s.bytes.offset, EINVAL,
                  fmt::format("the VM description does not describe {} instance {}",
                              quoted(s.idstr), s.instance_id));
    }
    if (auto r = vmstate(d->second); !r) return r;
    if (s.is_vfio()) return vfio_state_payload(s, {s.payload.offset, pos_ - s.payload.offset});
    return {};
  }

  // Steps over one vmstate (fields, then subsections) as `desc` describes it. The recursion
  // follows the description's nesting, which json::Document bounds.
  Result<> vmstate(const json::Value& desc) {
    const auto fields = desc.get("fields");
    if (fields && !fields->is_array()) {
      return stop(pos_, EINVAL, "a VM description whose \"fields\" is not a list");
    }
    for (const json::Value& field : fields ? fields->elements() : std::vector<json::Value>{}) {
      if (auto r = vmstate_field(field); !r) return r;
    }
    const auto subsections = desc.get("subsections");
    if (!subsections) return {};
    for (const json::Value& sub : subsections->elements()) {
      const std::uint64_t at = pos_;
      auto marker = get(1, "a subsection");
      if (!marker) return std::unexpected(marker.error());
      const auto wanted_value = sub.get("vmsd_name");
      const std::string wanted = wanted_value ? wanted_value->string().value_or("") : "";
      if (*marker != kSubsectionByte) {
        return stop(at, EINVAL,
                    fmt::format("subsection {} expected (0x05), found 0x{:02x}: the VM "
                                "description's sizes do not match the stream",
                                quoted(wanted), *marker));
      }
      auto found = name("a subsection's name");
      if (!found) return std::unexpected(found.error());
      if (*found != wanted) {
        return stop(at, EINVAL,
                    fmt::format("subsection {} where the VM description has {}", quoted(*found),
                                quoted(wanted)));
      }
      if (auto v = get(4, "a subsection's version"); !v) return std::unexpected(v.error());
      if (auto r = vmstate(sub); !r) return r;
    }
    return {};
  }

  Result<> vmstate_field(const json::Value& field) {
    if (++visits_ > kDescriptionBudget) {
      return stop(pos_, ENOTSUP, "the VM description takes too many steps to follow");
    }
    const auto name_value = field.get("name");
    const std::string field_name = name_value ? name_value->string().value_or("?") : "?";
    const auto array = field.get("array_len");
    const std::int64_t count = array ? array->integer().value_or(-1) : 1;
    if (count < 0) {
      return stop(pos_, EINVAL,
                  fmt::format("field {}: \"array_len\" is not a count", quoted(field_name)));
    }
    if (const auto inner = field.get("struct")) {
      for (std::int64_t i = 0; i < count; ++i) {
        const std::uint64_t before = pos_;
        if (auto r = vmstate(*inner); !r) return r;
        if (pos_ == before) break;  // an empty struct: the rest are empty too
      }
      return {};
    }
    const auto size_value = field.get("size");
    const auto size = size_value ? size_value->integer() : std::nullopt;
    if (!size || *size < 0) {
      return stop(
          pos_, EINVAL,
          fmt::format("field {} has no \"size\" in the VM description", quoted(field_name)));
    }
    const auto bytes = static_cast<unsigned __int128>(*size) * static_cast<std::uint64_t>(count);
    if (bytes > limit_ - pos_) {
      return stop(pos_, EINVAL,
                  fmt::format("field {} of {} x {} bytes runs past the end of the stream at "
                              "offset {}: the VM description does not match the stream",
                              quoted(field_name), count, *size, limit_));
    }
    pos_ += static_cast<std::uint64_t>(bytes);
    return {};
  }

  // --- RAM ------------------------------------------------------------------------------------
  Result<> ram_payload(RamSummary& sum) {
    const std::uint64_t page = out_.stream.page_size;
    while (true) {
      const std::uint64_t at = pos_;
      auto word = get(8, "a RAM record");
      if (!word) return std::unexpected(word.error());
      const std::uint64_t flags = *word & (page - 1);
      const std::uint64_t addr = *word & ~(page - 1);
      const std::uint64_t kind = flags & ~kRamContinue;
      if (!std::has_single_bit(kind) || (kind & (kRamZero | kRamMemSize | kRamPage | kRamEos |
                                                 kRamXbzrle | kRamMultifdFlush)) == 0) {
        return stop(at, ENOTSUP,
                    fmt::format("RAM record with flags 0x{:x}: not one of ZERO, PAGE, XBZRLE, "
                                "MEM_SIZE, EOS, MULTIFD_FLUSH (RDMA, compression and mapped-ram "
                                "streams are refused)",
                                flags));
      }
      if (kind & (kRamZero | kRamPage | kRamXbzrle)) {
        if (auto r = ram_page_block(at, flags & kRamContinue, addr); !r) return r;
      }
      Result<> r;
      switch (kind) {
        case kRamMemSize:
          r = ram_blocks(at, addr, sum);
          break;
        case kRamZero:
          ++sum.zero_pages;
          r = skip(1, "a zero page's fill byte");
          break;
        case kRamPage:
          ++sum.normal_pages;
          sum.page_bytes += page;
          r = skip(page, "a RAM page");
          break;
        case kRamXbzrle:
          r = ram_xbzrle(sum);
          break;
        case kRamMultifdFlush:
          ++sum.multifd_flushes;
          break;
        case kRamEos:
          return {};
      }
      if (!r) return r;
    }
  }

  // A page record names its RAM block unless it continues the last one; the page lies in it.
  Result<> ram_page_block(std::uint64_t at, bool continues, std::uint64_t addr) {
    if (!continues) {
      auto block = name("a RAM block name");
      if (!block) return std::unexpected(block.error());
      const auto b = ram_blocks_.find(*block);
      if (b == ram_blocks_.end()) {
        return stop(at, EINVAL, fmt::format("a page of unknown RAM block {}", quoted(*block)));
      }
      block_ = &*b;
    } else if (block_ == nullptr) {
      return stop(at, EINVAL, "a RAM page continues a block, but no block was named before");
    }
    if (addr >= block_->second || block_->second - addr < out_.stream.page_size) {
      return stop(at, EINVAL,
                  fmt::format("RAM page at 0x{:x} lies outside block {} of {} bytes", addr,
                              quoted(block_->first), block_->second));
    }
    return {};
  }

  // RAM_SAVE_FLAG_MEM_SIZE: {name, used length} per block, until they add up to the total.
  Result<> ram_blocks(std::uint64_t at, std::uint64_t total, RamSummary& sum) {
    sum.total_ram = total;
    std::uint64_t listed = 0;
    while (listed < total) {
      auto block = name("a RAM block name");
      if (!block) return std::unexpected(block.error());
      auto length = get(8, "a RAM block's length");
      if (!length) return std::unexpected(length.error());
      if (*length > total - listed) {
        return stop(at, EINVAL,
                    fmt::format("RAM blocks add up to more than the {} bytes announced", total));
      }
      listed += *length;
      ++sum.blocks;
      if (*length == 0) {
        return stop(at, EINVAL, fmt::format("RAM block {} of 0 bytes", quoted(*block)));
      }
      ram_blocks_[*block] = *length;
    }
    block_ = nullptr;
    return {};
  }

  Result<> ram_xbzrle(RamSummary& sum) {
    const std::uint64_t at = pos_;
    auto encoding = get(1, "an XBZRLE page");
    if (!encoding) return std::unexpected(encoding.error());
    if (*encoding != kXbzrleEncoding) {
      return stop(at, EINVAL, fmt::format("XBZRLE page with encoding 0x{:02x}", *encoding));
    }
    auto len = get(2, "an XBZRLE page's length");
    if (!len) return std::unexpected(len.error());
    if (*len > out_.stream.page_size) {
      return stop(
          at, EINVAL,
          fmt::format("XBZRLE delta of {} bytes for a page of {}", *len, out_.stream.page_size));
    }
    ++sum.xbzrle_pages;
    sum.page_bytes += *len;
    return skip(*len, "an XBZRLE delta");
  }

  // --- VFIO -----------------------------------------------------------------------------------
  // A live section's tags: SETUP and DATA chunks until END_OF_STATE or INIT_DATA_SENT.
  Result<> vfio_live_payload(Section& s) {
    while (true) {
      const std::uint64_t at = pos_;
      auto t = get(8, "a VFIO tag");
      if (!t) return std::unexpected(t.error());
      VfioTag tag{*t, at, 0};
      switch (*t) {
        case tag::kSetupState:
          break;
        case tag::kDataState: {
          auto size = get(8, "a DEV_DATA_STATE size");
          if (!size) return std::unexpected(size.error());
          tag.size = *size;
          if (!has(*size)) {
            return stop(at, EINVAL,
                        fmt::format("DEV_DATA_STATE of {} bytes runs past the end of the stream "
                                    "at offset {}",
                                    *size, limit_));
          }
          pos_ += *size;
          break;
        }
        case tag::kEndOfState:
        case tag::kInitDataSent:
          s.vfio.push_back(tag);
          return {};
        case tag::kConfigState:
          return stop(at, ENOTSUP,
                      fmt::format("DEV_CONFIG_STATE in a {} section: its length is not in the "
                                  "stream (only a full section, sized by the VM description, is "
                                  "read)",
                                  kind_name(s.kind)));
        default:
          return stop(at, EINVAL,
                      fmt::format("{} in VFIO section {}", tag_name(*t), quoted(s.idstr)));
      }
      s.vfio.push_back(tag);
    }
  }

  // A full section: DEV_CONFIG_STATE, vfio-pci's vmstate, END_OF_STATE; or END_OF_STATE alone
  // (QEMU with multifd device state sends the config elsewhere).
  Result<> vfio_state_payload(Section& s, ByteRange payload) {
    auto tag_at = [&](std::uint64_t off) {
      std::uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v = v << 8 | std::to_integer<std::uint8_t>(in_[off + i]);
      return v;
    };
    const std::uint64_t first = payload.size >= 8 ? tag_at(payload.offset) : 0;
    if (payload.size == 8 && first == tag::kEndOfState) {
      s.vfio.push_back({first, payload.offset, 0});
      return {};
    }
    if (payload.size < 16 || first != tag::kConfigState) {
      return stop(payload.offset, EINVAL,
                  fmt::format("VFIO full section of {} bytes does not begin with "
                              "DEV_CONFIG_STATE",
                              payload.size));
    }
    const std::uint64_t end_at = payload.offset + payload.size - 8;
    if (tag_at(end_at) != tag::kEndOfState) {
      return stop(end_at, EINVAL,
                  fmt::format("VFIO full section's config does not end with END_OF_STATE: found "
                              "{}",
                              tag_name(tag_at(end_at))));
    }
    s.vfio.push_back({first, payload.offset, payload.size - 16});
    s.vfio.push_back({tag::kEndOfState, end_at, 0});
    return {};
  }

  std::span<const std::byte> in_;
  Walk& out_;
  std::uint64_t pos_ = 0;
  std::uint64_t limit_ = 0;  // sections end here: the VM description's type byte
  std::uint64_t description_at_ = 0;
  std::optional<json::Document> desc_;
  std::optional<json::Value> configuration_;
  std::map<std::pair<std::string, std::int64_t>, json::Value> described_;
  std::map<std::uint32_t, std::size_t> live_;  // section id -> its start section's index
  std::map<std::string, std::uint64_t> ram_blocks_;
  const std::pair<const std::string, std::uint64_t>* block_ = nullptr;
  std::uint64_t visits_ = 0;
};

}  // namespace

bool has_magic(std::span<const std::byte> input) {
  return input.size() >= 4 && std::to_integer<std::uint8_t>(input[0]) == 'Q' &&
         std::to_integer<std::uint8_t>(input[1]) == 'E' &&
         std::to_integer<std::uint8_t>(input[2]) == 'V' &&
         std::to_integer<std::uint8_t>(input[3]) == 'M';
}

std::string_view kind_name(SectionKind kind) {
  switch (kind) {
    case SectionKind::kConfiguration:
      return "configuration";
    case SectionKind::kStart:
      return "start";
    case SectionKind::kPart:
      return "part";
    case SectionKind::kEnd:
      return "end";
    case SectionKind::kFull:
      return "full";
    case SectionKind::kCommand:
      return "command";
    case SectionKind::kEof:
      return "eof";
    case SectionKind::kVmDescription:
      return "vmdescription";
  }
  return "?";
}

std::string_view command_name(std::uint16_t cmd) {
  static constexpr std::string_view kNames[] = {"INVALID",
                                                "OPEN_RETURN_PATH",
                                                "PING",
                                                "POSTCOPY_ADVISE",
                                                "POSTCOPY_LISTEN",
                                                "POSTCOPY_RUN",
                                                "POSTCOPY_RAM_DISCARD",
                                                "POSTCOPY_RESUME",
                                                "PACKAGED",
                                                "RECV_BITMAP",
                                                "ENABLE_COLO",
                                                "SWITCHOVER_START"};
  return cmd < std::size(kNames) ? kNames[cmd] : "UNKNOWN";
}

std::string_view phase_name(Phase phase) {
  switch (phase) {
    case Phase::kSetup:
      return "setup";
    case Phase::kIterate:
      return "iterate";
    case Phase::kComplete:
      return "complete";
  }
  return "?";
}

bool Section::is_vfio() const {
  return (kind == SectionKind::kStart || kind == SectionKind::kPart || kind == SectionKind::kEnd ||
          kind == SectionKind::kFull) &&
         is_vfio_idstr(idstr);
}

Walk walk(std::span<const std::byte> input) {
  Walk out;
  Walker(input, out).run();
  return out;
}

Result<Stream> read_stream(std::span<const std::byte> input) {
  Walk w = walk(input);
  if (w.error) return std::unexpected(*w.error);
  return std::move(w.stream);
}

std::uint64_t VfioState::data_bytes() const {
  std::uint64_t n = 0;
  for (const DataChunk& c : data) n += c.bytes.size;
  return n;
}

std::vector<std::string> vfio_devices(const Stream& stream) {
  std::vector<std::string> ids;
  for (const Section& s : stream.sections) {
    if (s.is_vfio() && std::find(ids.begin(), ids.end(), s.idstr) == ids.end()) {
      ids.push_back(s.idstr);
    }
  }
  return ids;
}

Result<VfioState> vfio_state(const Stream& stream, std::string_view idstr) {
  const std::vector<std::string> ids = vfio_devices(stream);
  if (ids.empty()) return fail(ENOENT, "the QEMU stream holds no VFIO device section");
  if (idstr.empty() && ids.size() > 1) {
    return fail(EINVAL, fmt::format("the QEMU stream holds {} VFIO devices: {}; name one",
                                    ids.size(), id_list(ids)));
  }
  const std::string wanted = idstr.empty() ? ids.front() : std::string(idstr);
  if (std::find(ids.begin(), ids.end(), wanted) == ids.end()) {
    return fail(ENOENT, fmt::format("no VFIO device {} in the QEMU stream; it holds {}",
                                    quoted(wanted), id_list(ids)));
  }
  VfioState st;
  st.idstr = wanted;
  bool first = true;
  for (std::size_t i = 0; i < stream.sections.size(); ++i) {
    const Section& s = stream.sections[i];
    if (!s.is_vfio() || s.idstr != wanted) continue;
    if (first) {
      st.instance_id = s.instance_id;
      first = false;
    } else if (s.instance_id != st.instance_id) {
      return fail(EINVAL, fmt::format("VFIO device {} appears with instances {} and {}",
                                      quoted(wanted), st.instance_id, s.instance_id));
    }
    const Phase phase = s.kind == SectionKind::kStart  ? Phase::kSetup
                        : s.kind == SectionKind::kPart ? Phase::kIterate
                                                       : Phase::kComplete;
    if (s.kind == SectionKind::kEnd && s.footer_ok) st.complete = true;
    for (const VfioTag& t : s.vfio) {
      if (t.tag == tag::kDataState) st.data.push_back({{t.offset + 16, t.size}, i, phase});
      if (t.tag == tag::kConfigState) st.config = ByteRange{t.offset + 8, t.size};
      if (t.tag == tag::kInitDataSent) st.init_data_sent = true;
    }
  }
  return st;
}

}  // namespace vfio::qemu
