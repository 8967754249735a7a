// Small QEMU migration streams built byte by byte for the reader's tests: the grammar of
// docs/qemu.md ("Reading QEMU streams"), with every piece under the test's control so that
// each can be made to lie.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vfio::qemu::testing {

class StreamBuilder {
 public:
  StreamBuilder& u8(std::uint64_t v) { return be(v, 1); }
  StreamBuilder& be16(std::uint64_t v) { return be(v, 2); }
  StreamBuilder& be32(std::uint64_t v) { return be(v, 4); }
  StreamBuilder& be64(std::uint64_t v) { return be(v, 8); }
  StreamBuilder& bytes(std::string_view s) {
    for (char c : s) out_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  StreamBuilder& fill(std::size_t n, std::uint8_t v) {
    out_.insert(out_.end(), n, static_cast<std::byte>(v));
    return *this;
  }
  StreamBuilder& name(std::string_view s) { return u8(s.size()).bytes(s); }

  StreamBuilder& header(std::uint32_t version = 3) { return be32(0x5145564d).be32(version); }
  StreamBuilder& configuration(std::string_view machine) {
    return u8(0x07).be32(machine.size()).bytes(machine);
  }
  StreamBuilder& start(std::uint32_t id, std::string_view idstr, std::uint32_t instance = 0,
                       std::uint32_t version = 1) {
    return u8(0x01).be32(id).name(idstr).be32(instance).be32(version);
  }
  StreamBuilder& full(std::uint32_t id, std::string_view idstr, std::uint32_t instance = 0,
                      std::uint32_t version = 1) {
    return u8(0x04).be32(id).name(idstr).be32(instance).be32(version);
  }
  StreamBuilder& part(std::uint32_t id) { return u8(0x02).be32(id); }
  StreamBuilder& end(std::uint32_t id) { return u8(0x03).be32(id); }
  StreamBuilder& footer(std::uint32_t id) { return u8(0x7e).be32(id); }
  StreamBuilder& tag(std::uint64_t t) { return be64(t); }
  StreamBuilder& data(std::string_view payload) {
    return be64(0xffffffffef100004ULL).be64(payload.size()).bytes(payload);
  }
  // QEMU_VM_EOF, then the VM description.
  StreamBuilder& finish(std::string_view json) {
    return u8(0x00).u8(0x06).be32(json.size()).bytes(json);
  }

  std::size_t size() const { return out_.size(); }
  const std::vector<std::byte>& get() const { return out_; }

 private:
  StreamBuilder& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<std::byte>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::byte> out_;
};

}  // namespace vfio::qemu::testing
