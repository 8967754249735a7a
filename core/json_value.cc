#include "core/json_value.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace vfio::json {

class Parser {
 public:
  Parser(Document& doc, std::size_t max_depth) : doc_(doc), s_(doc.text_), max_depth_(max_depth) {}

  Result<> document() {
    if (s_.size() >= std::numeric_limits<std::uint32_t>::max()) {
      return fail(EFBIG, fmt::format("JSON text of {} bytes is too large", s_.size()));
    }
    skip_space();
    if (auto r = value(0); !r) return r;
    skip_space();
    if (pos_ != s_.size()) return error("text after the JSON value");
    return {};
  }

 private:
  std::unexpected<Error> error(std::string_view what) const {
    return fail(EINVAL, fmt::format("JSON offset {}: {}", pos_, what));
  }

  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::uint32_t open(Kind kind) {
    doc_.nodes_.push_back({kind, static_cast<std::uint32_t>(pos_)});
    return static_cast<std::uint32_t>(doc_.nodes_.size() - 1);
  }
  void close(std::uint32_t node) {
    doc_.nodes_[node].end = static_cast<std::uint32_t>(pos_);
    doc_.nodes_[node].next = static_cast<std::uint32_t>(doc_.nodes_.size());
  }

  Result<> value(std::size_t depth) {
    if (pos_ >= s_.size()) return error("a value was expected, the text ended");
    switch (s_[pos_]) {
      case '{':
      case '[':
        return container(depth);
      case '"':
        return string();
      case 't':
        return literal("true", Kind::kTrue);
      case 'f':
        return literal("false", Kind::kFalse);
      case 'n':
        return literal("null", Kind::kNull);
      default:
        return number();
    }
  }

  Result<> literal(std::string_view word, Kind kind) {
    const std::uint32_t node = open(kind);
    if (s_.substr(pos_, word.size()) != word) return error("not a JSON value");
    pos_ += word.size();
    close(node);
    return {};
  }

  Result<> number() {
    const std::uint32_t node = open(Kind::kNumber);
    auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    eat('-');
    const std::size_t first = pos_;
    const std::size_t n = digits();
    if (n == 0) return error("not a JSON value");
    if (n > 1 && s_[first] == '0') return error("a number with a leading zero");
    if (eat('.') && digits() == 0) return error("a number without digits after '.'");
    if (eat('e') || eat('E')) {
      if (!eat('+')) eat('-');
      if (digits() == 0) return error("a number without exponent digits");
    }
    close(node);
    return {};
  }

  Result<> string() {
    const std::uint32_t node = open(Kind::kString);
    ++pos_;  // the opening quote
    while (true) {
      if (pos_ >= s_.size()) return error("the text ended inside a string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') break;
      if (c < 0x20) return error("a control character inside a string");
      if (c != '\\') {
        ++pos_;
        continue;
      }
      if (++pos_ >= s_.size()) return error("the text ended inside a string");
      const char e = s_[pos_++];
      if (e == 'u') {
        for (int i = 0; i < 4; ++i, ++pos_) {
          if (pos_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[pos_]))) {
            return error("\\u without four hex digits");
          }
        }
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return error("an unknown escape in a string");
      }
    }
    ++pos_;  // the closing quote
    close(node);
    return {};
  }

  Result<> container(std::size_t depth) {
    const bool object = s_[pos_] == '{';
    if (depth >= max_depth_) {
      return error(fmt::format("nested deeper than {} levels", max_depth_));
    }
    const std::uint32_t node = open(object ? Kind::kObject : Kind::kArray);
    const char close_char = object ? '}' : ']';
    ++pos_;
    skip_space();
    if (!eat(close_char)) {
      while (true) {
        if (object) {
          if (pos_ >= s_.size() || s_[pos_] != '"') return error("an object key was expected");
          if (auto r = string(); !r) return r;
          skip_space();
          if (!eat(':')) return error("':' was expected after an object key");
          skip_space();
        }
        if (auto r = value(depth + 1); !r) return r;
        skip_space();
        if (eat(close_char)) break;
        if (!eat(',')) return error(object ? "',' or '}' was expected" : "',' or ']' was expected");
        skip_space();
      }
    }
    close(node);
    return {};
  }

  Document& doc_;
  std::string_view s_;
  std::size_t max_depth_;
  std::size_t pos_ = 0;
};

Result<Document> Document::parse(std::string text, std::size_t max_depth) {
  Document doc;
  doc.text_ = std::move(text);
  Parser parser(doc, max_depth);
  if (auto r = parser.document(); !r) return std::unexpected(r.error());
  return doc;
}

Kind Value::kind() const {
  return doc_->nodes_[node_].kind;
}

std::size_t Value::offset() const {
  return doc_->nodes_[node_].begin;
}

std::vector<Value> Value::elements() const {
  std::vector<Value> out;
  if (kind() != Kind::kArray) return out;
  const auto& nodes = doc_->nodes_;
  for (std::uint32_t i = node_ + 1; i < nodes[node_].next; i = nodes[i].next) {
    out.push_back(Value(*doc_, i));
  }
  return out;
}

std::vector<Value::Member> Value::members() const {
  std::vector<Member> out;
  if (kind() != Kind::kObject) return out;
  const auto& nodes = doc_->nodes_;
  for (std::uint32_t i = node_ + 1; i < nodes[node_].next; i = nodes[nodes[i].next].next) {
    out.push_back({*Value(*doc_, i).string(), Value(*doc_, nodes[i].next)});
  }
  return out;
}

std::optional<Value> Value::get(std::string_view key) const {
  if (kind() != Kind::kObject) return std::nullopt;
  const auto& nodes = doc_->nodes_;
  for (std::uint32_t i = node_ + 1; i < nodes[node_].next; i = nodes[nodes[i].next].next) {
    const auto& k = nodes[i];
    const std::string_view raw =
        std::string_view(doc_->text_).substr(k.begin + 1, k.end - k.begin - 2);
    const bool match =
        raw.find('\\') == std::string_view::npos ? raw == key : *Value(*doc_, i).string() == key;
    if (match) return Value(*doc_, nodes[i].next);
  }
  return std::nullopt;
}

std::optional<std::int64_t> Value::integer() const {
  if (kind() != Kind::kNumber) return std::nullopt;
  const auto& n = doc_->nodes_[node_];
  const char* first = doc_->text_.data() + n.begin;
  const char* last = doc_->text_.data() + n.end;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return v;
}

std::optional<bool> Value::boolean() const {
  if (kind() == Kind::kTrue) return true;
  if (kind() == Kind::kFalse) return false;
  return std::nullopt;
}

namespace {

unsigned hex4(std::string_view s) {
  unsigned v = 0;
  std::from_chars(s.data(), s.data() + 4, v, 16);
  return v;
}

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace

std::optional<std::string> Value::string() const {
  if (kind() != Kind::kString) return std::nullopt;
  const auto& n = doc_->nodes_[node_];
  // Validated by the parser: every escape is complete.
  std::string_view s = std::string_view(doc_->text_).substr(n.begin + 1, n.end - n.begin - 2);
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    if (s[0] != '\\') {
      out += s[0];
      s.remove_prefix(1);
      continue;
    }
    const char e = s[1];
    s.remove_prefix(2);
    switch (e) {
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        unsigned cp = hex4(s);
        s.remove_prefix(4);
        const bool high = cp >= 0xd800 && cp < 0xdc00;
        if (high && s.size() >= 6 && s[0] == '\\' && s[1] == 'u') {
          const unsigned low = hex4(s.substr(2));
          if (low >= 0xdc00 && low < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            s.remove_prefix(6);
          }
        }
        // A lone surrogate is no character: the replacement mark stands for it.
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
        append_utf8(out, cp);
        break;
      }
      default:  // '"', '\\', '/'
        out += e;
    }
  }
  return out;
}

}  // namespace vfio::json
