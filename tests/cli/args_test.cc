#include "cli/args.h"

#include <gtest/gtest.h>

namespace vfio::cli {
namespace {

const CommandSpec kSpec{
    "save", "DEV", 1, 1, "saves", {{"output", "FILE", "where", 'o'}, {"quiet", "", "shh", 'q'}}};

Result<ParsedArgs> parse(std::vector<std::string> args) {
  return parse_args(kSpec, args);
}

TEST(Args, AcceptsLongShortAndInlineValues) {
  auto a = parse({"dev", "-o", "f1"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value("output"), "f1");
  EXPECT_EQ(a->positionals, std::vector<std::string>{"dev"});
  auto b = parse({"--output=f2", "--quiet", "dev"});
  ASSERT_TRUE(b);
  EXPECT_EQ(b->value("output"), "f2");
  EXPECT_TRUE(b->has("quiet"));
  auto c = parse({"--", "-dev-named-oddly"});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->positionals[0], "-dev-named-oddly");
}

TEST(Args, RejectsWhatItDoesNotKnowWithOneLine) {
  auto unknown = parse({"dev", "--frobnicate"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, EINVAL);
  EXPECT_NE(unknown.error().message.find("unknown option '--frobnicate'"), std::string::npos);
  EXPECT_EQ(unknown.error().message.find('\n'), std::string::npos);

  auto missing = parse({"dev", "--output"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("needs a value"), std::string::npos);

  auto extra = parse({"a", "b"});
  ASSERT_FALSE(extra);
  EXPECT_NE(extra.error().message.find("expected DEV, got 2 arguments"), std::string::npos);

  EXPECT_FALSE(parse({"dev", "--quiet=yes"}));
  EXPECT_FALSE(parse({}));
}

TEST(Args, HelpSkipsPositionalChecks) {
  auto h = parse({"--help"});
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->has("help"));
  auto text = command_help("vfio-mig", kSpec);
  EXPECT_NE(text.find("usage: vfio-mig save [options] DEV"), std::string::npos);
  EXPECT_NE(text.find("-o, --output FILE"), std::string::npos);
}

TEST(Sizes, ParseBinaryUnits) {
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("64K").value(), 64u << 10);
  EXPECT_EQ(parse_size("256M").value(), 256u << 20);
  EXPECT_EQ(parse_size("1GiB").value(), 1ULL << 30);
  EXPECT_EQ(parse_size("2g").value(), 2ULL << 30);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("M"));
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("99999999999999999T"));
}

TEST(Sizes, FormatForHumans) {
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(1023), "1023 B");
  EXPECT_EQ(format_size(256u << 20), "256 MiB");
  EXPECT_EQ(format_size(1536), "1.5 KiB");
}

}  // namespace
}  // namespace vfio::cli
