#include "cli/args.h"

#include <cerrno>

#include <fmt/format.h>

namespace vfio::cli {
namespace {

const OptionSpec* find_long(const CommandSpec& spec, std::string_view name) {
  for (const auto& o : spec.options) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

const OptionSpec* find_short(const CommandSpec& spec, char c) {
  for (const auto& o : spec.options) {
    if (o.short_name == c) return &o;
  }
  return nullptr;
}

std::unexpected<Error> usage(std::string message) {
  return fail(EINVAL, std::move(message));
}

}  // namespace

std::optional<std::string> ParsedArgs::value(std::string_view name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

Result<ParsedArgs> parse_args(const CommandSpec& spec, std::span<const std::string> args) {
  ParsedArgs parsed;
  bool only_positionals = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (only_positionals || arg.size() < 2 || arg[0] != '-') {
      parsed.positionals.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positionals = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      parsed.values["help"] = "";
      continue;
    }
    const OptionSpec* option = nullptr;
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      std::string_view name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string_view::npos) {
        inline_value = std::string(name.substr(eq + 1));
        name = name.substr(0, eq);
      }
      option = find_long(spec, name);
    } else if (arg.size() == 2) {
      option = find_short(spec, arg[1]);
    }
    if (!option) {
      return usage(fmt::format("unknown option '{}' (see 'vfio-mig {} --help')", arg, spec.name));
    }
    std::string key(option->name);
    if (!option->value_name.empty() && parsed.has(key)) {
      return usage(fmt::format("--{} given twice (it takes one value)", key));
    }
    if (option->value_name.empty()) {
      if (inline_value) return usage(fmt::format("--{} takes no value", key));
      parsed.values[key] = "";
    } else if (inline_value) {
      parsed.values[key] = *inline_value;
    } else if (i + 1 < args.size()) {
      parsed.values[key] = args[++i];
    } else {
      return usage(fmt::format("--{} needs a value ({})", key, option->value_name));
    }
  }
  if (parsed.has("help")) return parsed;
  auto n = parsed.positionals.size();
  if (n < spec.min_positionals || n > spec.max_positionals) {
    return usage(fmt::format("expected {}, got {} argument{} (see 'vfio-mig {} --help')",
                             spec.positionals.empty() ? "no arguments" : spec.positionals, n,
                             n == 1 ? "" : "s", spec.name));
  }
  return parsed;
}

std::string command_help(std::string_view program, const CommandSpec& spec) {
  std::string out =
      fmt::format("usage: {} {} [options]{}{}\n\n{}\n", program, spec.name,
                  spec.positionals.empty() ? "" : " ", spec.positionals, spec.summary);
  if (!spec.options.empty()) out += "\noptions:\n";
  for (const auto& o : spec.options) {
    std::string left = o.short_name ? fmt::format("-{}, --{}", o.short_name, o.name)
                                    : fmt::format("    --{}", o.name);
    if (!o.value_name.empty()) left += fmt::format(" {}", o.value_name);
    out += fmt::format("  {:<28} {}\n", left, o.help);
  }
  out += fmt::format("  {:<28} {}\n", "-h, --help", "show this help");
  return out;
}

}  // namespace vfio::cli
