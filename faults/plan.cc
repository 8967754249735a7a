#include "faults/plan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace vfio::faults {
namespace {

using uapi::Feature;
using uapi::State;

struct Token {
  std::string_view text;
  std::size_t line, col;
};

struct NamedErrno {
  std::string_view name;
  int code;
};
constexpr NamedErrno kErrnos[] = {
    {"EPERM", EPERM},           {"ENOENT", ENOENT},
    {"EINTR", EINTR},           {"EIO", EIO},
    {"ENXIO", ENXIO},           {"E2BIG", E2BIG},
    {"EBADF", EBADF},           {"EAGAIN", EAGAIN},
    {"ENOMEM", ENOMEM},         {"EACCES", EACCES},
    {"EFAULT", EFAULT},         {"EBUSY", EBUSY},
    {"EEXIST", EEXIST},         {"ENODEV", ENODEV},
    {"EINVAL", EINVAL},         {"ENOSPC", ENOSPC},
    {"EPIPE", EPIPE},           {"ENOTTY", ENOTTY},
    {"ERANGE", ERANGE},         {"ENOMSG", ENOMSG},
    {"ENOSYS", ENOSYS},         {"EBADMSG", EBADMSG},
    {"EOVERFLOW", EOVERFLOW},   {"EPROTO", EPROTO},
    {"EOPNOTSUPP", EOPNOTSUPP}, {"ECONNRESET", ECONNRESET},
    {"ETIMEDOUT", ETIMEDOUT},   {"ECANCELED", ECANCELED},
    {"EHWPOISON", EHWPOISON},   {"ENOBUFS", ENOBUFS},
};

struct NamedFeature {
  std::string_view name;
  Feature feature;
};
constexpr NamedFeature kFeatures[] = {
    {"migration", Feature::kMigration},     {"state", Feature::kMigDeviceState},
    {"data-size", Feature::kMigDataSize},   {"dma-start", Feature::kDmaLoggingStart},
    {"dma-stop", Feature::kDmaLoggingStop}, {"dma-report", Feature::kDmaLoggingReport},
};

struct NamedOp {
  std::string_view name;
  Op op;
};
constexpr NamedOp kOps[] = {
    {"get", Op::kGet},
    {"set", Op::kSet},
    {"probe", Op::kProbe},
    {"reset", Op::kReset},
    {"read", Op::kRead},
    {"write", Op::kWrite},
    {"precopy-info", Op::kPrecopyInfo},
    {"open", Op::kOpen},
    {"close", Op::kClose},
    {"config-read", Op::kConfigRead},
    {"config-write", Op::kConfigWrite},
    {"send", Op::kSend},
    {"recv", Op::kRecv},
    {"any", Op::kAny},
};

struct NamedKind {
  std::string_view name;
  Kind kind;
  bool takes_value;
};
constexpr NamedKind kKinds[] = {
    {"errno", Kind::kErrno, true},
    {"short", Kind::kShort, true},
    {"delay", Kind::kDelay, true},
    {"land", Kind::kLand, true},
    {"async-reset", Kind::kAsyncReset, false},
    {"corrupt", Kind::kCorrupt, true},
    {"drop", Kind::kDrop, true},
    {"dup", Kind::kDup, true},
    {"truncate", Kind::kTruncate, false},
    {"eof", Kind::kEof, false},
    {"hang", Kind::kHang, false},
    {"cancel", Kind::kCancel, false},
};

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view origin) : text_(text), origin_(origin) {}

  Result<Plan> run() {
    std::size_t line = 1, col = 1;
    std::vector<Token> tokens;
    bool comment = false;
    std::size_t start = std::string_view::npos, start_col = 0;
    auto end_token = [&](std::size_t at) {
      if (start == std::string_view::npos) return;
      split_arrow({text_.substr(start, at - start), line, start_col}, tokens);
      start = std::string_view::npos;
    };
    for (std::size_t i = 0; i <= text_.size(); ++i) {
      char c = i < text_.size() ? text_[i] : '\n';
      if (c == '\n' || (c == ';' && !comment)) {
        end_token(i);
        if (auto r = rule(tokens, line); !r) return std::unexpected(r.error());
        tokens.clear();
        comment = false;
        if (c == '\n') {
          ++line;
          col = 1;
        } else {
          ++col;
        }
        continue;
      }
      if (!comment) {
        if (c == '#') {
          end_token(i);
          comment = true;
        } else if (c == ' ' || c == '\t' || c == '\r') {
          end_token(i);
        } else if (start == std::string_view::npos) {
          start = i;
          start_col = col;
        }
      }
      ++col;
    }
    return plan_;
  }

 private:
  // "a->b" is three tokens even without spaces.
  static void split_arrow(Token t, std::vector<Token>& out) {
    auto pos = t.text.find("->");
    if (pos == std::string_view::npos || t.text == "->") {
      out.push_back(t);
      return;
    }
    if (pos > 0) out.push_back({t.text.substr(0, pos), t.line, t.col});
    out.push_back({t.text.substr(pos, 2), t.line, t.col + pos});
    if (pos + 2 < t.text.size())
      split_arrow({t.text.substr(pos + 2), t.line, t.col + pos + 2}, out);
  }

  std::unexpected<Error> error(const Token& t, std::string what) const {
    return fail(EINVAL, fmt::format("{}:{}:{}: {}", origin_, t.line, t.col, what));
  }
  std::unexpected<Error> error_at(const Token& t, std::size_t offset, std::string what) const {
    return fail(EINVAL, fmt::format("{}:{}:{}: {}", origin_, t.line, t.col + offset, what));
  }

  Result<> rule(const std::vector<Token>& tokens, std::size_t line) {
    if (tokens.empty()) return {};
    if (tokens[0].text == "seed") {
      if (tokens.size() != 2) return error(tokens[0], "'seed' takes one number");
      auto v = parse_u64(tokens[1].text);
      if (!v) return error(tokens[1], fmt::format("bad seed '{}'", tokens[1].text));
      plan_.seed = *v;
      return {};
    }
    Rule r;
    r.line = line;
    const Token& first = tokens.front();
    const Token& last = tokens.back();
    r.text = std::string(text_.substr(first.text.data() - text_.data(),
                                      last.text.data() + last.text.size() - first.text.data()));
    if (first.text == "->") return error(first, "missing operation before '->'");
    if (auto w = where(first, r.where); !w) return w;
    std::size_t i = 1;
    for (; i < tokens.size() && tokens[i].text != "->"; ++i) {
      if (auto w = when(tokens[i], r.when); !w) return w;
    }
    if (i == tokens.size()) return error(last, "missing '->' and a fault");
    if (i + 1 == tokens.size()) return error(tokens[i], "missing a fault after '->'");
    for (++i; i < tokens.size(); ++i) {
      if (auto a = what(tokens[i], r); !a) return a;
    }
    if (auto c = check(first, r); !c) return c;
    plan_.rules.push_back(std::move(r));
    return {};
  }

  Result<uapi::State> state(const Token& t, std::string_view s, std::size_t offset) const {
    if (auto st = uapi::parse_state(s)) return *st;
    return error_at(t, offset, fmt::format("unknown state '{}'", s));
  }

  Result<> where(const Token& t, Where& w) {
    auto colon = t.text.find(':');
    std::string_view name = t.text.substr(0, colon);
    const NamedOp* op = nullptr;
    for (const auto& o : kOps)
      if (o.name == name) op = &o;
    if (!op) return error(t, fmt::format("unknown operation '{}'", name));
    w.op = op->op;
    if (colon == std::string_view::npos) {
      if (w.op == Op::kGet || w.op == Op::kProbe)
        return error(t, fmt::format("'{}' needs a feature, e.g. {}:state", name, name));
      return {};
    }
    std::string_view arg = t.text.substr(colon + 1);
    if (w.op != Op::kGet && w.op != Op::kSet && w.op != Op::kProbe)
      return error_at(t, colon, fmt::format("'{}' takes no ':' argument", name));
    for (const auto& f : kFeatures) {
      if (f.name == arg) {
        w.feature = f.feature;
        return {};
      }
    }
    if (w.op != Op::kSet) return error_at(t, colon + 1, fmt::format("unknown feature '{}'", arg));
    w.feature = Feature::kMigDeviceState;
    if (auto gt = arg.find('>'); gt != std::string_view::npos) {
      auto from = state(t, arg.substr(0, gt), colon + 1);
      if (!from) return std::unexpected(from.error());
      auto to = state(t, arg.substr(gt + 1), colon + 2 + gt);
      if (!to) return std::unexpected(to.error());
      w.from = *from;
      w.to = *to;
      return {};
    }
    if (!uapi::parse_state(arg))
      return error_at(t, colon + 1, fmt::format("unknown feature or state '{}'", arg));
    w.to = *uapi::parse_state(arg);
    return {};
  }

  Result<> when(const Token& t, When& w) {
    auto eq = t.text.find('=');
    if (eq == std::string_view::npos)
      return error(t, fmt::format("expected KEY=VALUE before '->', found '{}'", t.text));
    std::string_view key = t.text.substr(0, eq), value = t.text.substr(eq + 1);
    auto bad = [&](std::string_view what) {
      return error_at(t, eq + 1, fmt::format("bad {} '{}'", what, value));
    };
    if (key == "nth" || key == "every" || key == "times") {
      auto v = parse_u64(value);
      if (!v || *v == 0) return bad("count (want a number >= 1)");
      (key == "nth" ? w.nth : key == "every" ? w.every : w.times) = *v;
    } else if (key == "after") {
      auto v = parse_byte_size(value);
      if (!v) return bad("size");
      w.after = *v;
    } else if (key == "state") {
      auto s = state(t, value, eq + 1);
      if (!s) return std::unexpected(s.error());
      w.state = *s;
    } else if (key == "prob") {
      double p = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), p);
      if (ec != std::errc() || ptr != value.data() + value.size() || !(p >= 0 && p <= 1))
        return bad("probability (want 0..1)");
      w.prob = p;
    } else if (key == "side") {
      if (value == "src")
        w.side = Side::kSource;
      else if (value == "dst")
        w.side = Side::kDestination;
      else
        return bad("side (want src or dst)");
    } else {
      return error(t, fmt::format("unknown condition '{}'", key));
    }
    return {};
  }

  Result<> what(const Token& t, Rule& r) {
    auto eq = t.text.find('=');
    std::string_view key = t.text.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : t.text.substr(eq + 1);
    const NamedKind* kind = nullptr;
    for (const auto& k : kKinds)
      if (k.name == key) kind = &k;
    if (!kind) return error(t, fmt::format("unknown fault '{}'", key));
    if (kind->takes_value && eq == std::string_view::npos)
      return error(t, fmt::format("'{}' needs a value ({}=...)", key, key));
    if (!kind->takes_value && eq != std::string_view::npos)
      return error_at(t, eq, fmt::format("'{}' takes no value", key));
    Action a{kind->kind};
    auto bad = [&](std::string_view what) {
      return error_at(t, eq + 1, fmt::format("{} '{}'", what, value));
    };
    switch (a.kind) {
      case Kind::kErrno: {
        auto e = parse_errno(value);
        if (!e) return bad("unknown errno");
        a.amount = static_cast<std::uint64_t>(*e);
        break;
      }
      case Kind::kShort:
      case Kind::kCorrupt:
      case Kind::kDrop:
      case Kind::kDup: {
        auto v = parse_byte_size(value);
        if (!v || (a.kind != Kind::kShort && *v == 0)) return bad("bad byte count");
        a.amount = *v;
        break;
      }
      case Kind::kDelay: {
        auto d = parse_duration(value);
        if (!d) return bad("bad duration (e.g. 10ms, 2s)");
        a.delay = *d;
        break;
      }
      case Kind::kLand: {
        auto s = state(t, value, eq + 1);
        if (!s) return std::unexpected(s.error());
        a.state = *s;
        break;
      }
      default:
        break;
    }
    for (const auto& other : r.actions)
      if (other.kind == a.kind) return error(t, fmt::format("'{}' given twice", key));
    r.actions.push_back(a);
    return {};
  }

  // Cross-checks: each fault must be able to act on the operation.
  Result<> check(const Token& first, const Rule& r) const {
    for (const auto& a : r.actions) {
      if (r.where.op != Op::kAny && !applies(a.kind, r.where.op))
        return error(
            first, fmt::format("'{}' cannot act on '{}'", kind_name(a.kind), op_name(r.where.op)));
    }
    if (r.when.nth && r.when.every) return error(first, "nth= and every= cannot be combined");
    return {};
  }

  std::string_view text_;
  std::string_view origin_;
  Plan plan_;
};

}  // namespace

std::string_view op_name(Op op) {
  for (const auto& o : kOps)
    if (o.op == op) return o.name;
  return "?";
}

bool is_data_op(Op op) {
  return op == Op::kRead || op == Op::kWrite || op == Op::kSend || op == Op::kRecv;
}

bool is_channel_op(Op op) {
  return op == Op::kSend || op == Op::kRecv;
}

std::string_view side_name(Side side) {
  switch (side) {
    case Side::kSource:
      return "src";
    case Side::kDestination:
      return "dst";
    case Side::kAny:
      break;
  }
  return "any";
}

std::string_view feature_name(Feature f) {
  for (const auto& n : kFeatures)
    if (n.feature == f) return n.name;
  return "?";
}

bool tolerable(const Action& action) {
  switch (action.kind) {
    case Kind::kShort:
      return action.amount > 0;  // short=0 is an end of file, not a short transfer
    case Kind::kDelay:
      return true;
    case Kind::kErrno:
      return action.amount == EINTR || action.amount == EAGAIN;
    default:
      return false;
  }
}

std::string_view kind_name(Kind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

bool applies(Kind kind, Op op) {
  if (op == Op::kAny) return true;
  const bool data = is_data_op(op);
  const bool bytes = data || op == Op::kConfigRead || op == Op::kConfigWrite;
  switch (kind) {
    case Kind::kErrno:
    case Kind::kDelay:
    case Kind::kHang:
    case Kind::kCancel:
      return true;
    case Kind::kLand:
    case Kind::kAsyncReset:
      return !is_channel_op(op);
    case Kind::kShort:
    case Kind::kCorrupt:
    case Kind::kDrop:
    case Kind::kDup:
      return bytes;
    case Kind::kTruncate:
      return data;
    case Kind::kEof:
      return op == Op::kRead || op == Op::kRecv;
  }
  return false;
}

std::optional<std::uint64_t> parse_byte_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  auto n = parse_u64(text.substr(0, digits));
  if (!n) return std::nullopt;
  std::string_view unit = text.substr(digits);
  if (unit.ends_with("iB")) unit.remove_suffix(2);
  if (unit.ends_with("B") && unit.size() == 2) unit.remove_suffix(1);
  int shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (iequals(unit, "K"))
    shift = 10;
  else if (iequals(unit, "M"))
    shift = 20;
  else if (iequals(unit, "G"))
    shift = 30;
  else
    return std::nullopt;
  if (*n > (~0ULL >> shift)) return std::nullopt;
  return *n << shift;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  auto n = parse_u64(text.substr(0, digits));
  if (!n || *n > 1'000'000'000ULL) return std::nullopt;
  std::string_view unit = text.substr(digits);
  using namespace std::chrono;
  if (unit == "us") return microseconds(*n);
  if (unit == "ms") return milliseconds(*n);
  if (unit == "s") return seconds(*n);
  return std::nullopt;
}

std::optional<int> parse_errno(std::string_view text) {
  for (const auto& e : kErrnos)
    if (iequals(e.name, text)) return e.code;
  if (auto n = parse_u64(text); n && *n >= 1 && *n < 4096) return static_cast<int>(*n);
  return std::nullopt;
}

std::string errno_name(int code) {
  for (const auto& e : kErrnos)
    if (e.code == code) return std::string(e.name);
  return std::to_string(code);
}

Result<std::string> read_plan_file(const std::string& path) {
  // Messages are whole sentences with the errno's text: the CLI prints them as usage errors.
  auto failed_call = [&](std::string_view what) {
    return fail(errno, fmt::format("cannot {} plan {}: {}", what, path, std::strerror(errno)));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failed_call("open");
  std::string text;
  Result<std::string> out = fail(EINVAL, "");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    out = failed_call("open");
  } else if (S_ISDIR(st.st_mode)) {
    out = fail(EISDIR, fmt::format("plan {} is a directory, not a file", path));
  } else {
    char chunk[64 * 1024];
    for (;;) {
      const auto n = ::read(fd, chunk, std::min(sizeof chunk, kMaxPlanBytes + 1 - text.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        out = failed_call("read");
        break;
      }
      text.append(chunk, static_cast<std::size_t>(n));
      if (text.size() > kMaxPlanBytes) {
        out = fail(EFBIG, fmt::format("plan {} is larger than {} MiB", path, kMaxPlanBytes >> 20));
        break;
      }
      if (n == 0) {
        out = std::move(text);
        break;
      }
    }
  }
  ::close(fd);
  return out;
}

Result<Plan> parse_plan(std::string_view text, std::string_view origin) {
  return Parser(text, origin).run();
}

}  // namespace vfio::faults
