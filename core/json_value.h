// Reading JSON from untrusted files (QEMU's VM description, our own reports read back): a
// strict RFC 8259 parser with a nesting limit and no recursion beyond it, keeping the text and
// a flat array of nodes (about 24 bytes per value, at most one value per input byte), never a
// size taken from the input. Writing JSON is core/json_text.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vfio::json {

enum class Kind : std::uint8_t { kNull, kFalse, kTrue, kNumber, kString, kArray, kObject };

class Document;

// A value inside a Document (which must outlive it).
class Value {
 public:
  Kind kind() const;
  bool is_object() const { return kind() == Kind::kObject; }
  bool is_array() const { return kind() == Kind::kArray; }

  // An array's elements or an object's members (key, value), in document order.
  std::vector<Value> elements() const;
  struct Member;
  std::vector<Member> members() const;
  // An object's first member named `key`.
  std::optional<Value> get(std::string_view key) const;

  // A number without fraction or exponent that fits in 64 bits.
  std::optional<std::int64_t> integer() const;
  // A string's decoded text (UTF-8; \u escapes resolved).
  std::optional<std::string> string() const;
  std::optional<bool> boolean() const;

  // Where the value starts in the parsed text.
  std::size_t offset() const;

 private:
  friend class Document;
  Value(const Document& doc, std::uint32_t node) : doc_(&doc), node_(node) {}
  const Document* doc_;
  std::uint32_t node_;
};

struct Value::Member {
  std::string key;
  Value value;
};

class Document {
 public:
  static constexpr std::size_t kDefaultMaxDepth = 32;

  // Parses `text` (exactly one value, whitespace around it allowed). Refusals name the byte
  // offset in `text`. Arrays and objects nest at most `max_depth` deep.
  static Result<Document> parse(std::string text, std::size_t max_depth = kDefaultMaxDepth);

  Value root() const { return Value(*this, 0); }
  std::string_view text() const { return text_; }

 private:
  friend class Value;
  friend class Parser;
  struct Node {
    Kind kind;
    std::uint32_t begin = 0;  // the value's first byte in text_
    std::uint32_t end = 0;    // one past the value's last byte
    std::uint32_t next = 0;   // the node after this value's subtree
  };
  std::string text_;
  std::vector<Node> nodes_;  // pre-order; an object's children alternate key, value
};

}  // namespace vfio::json
