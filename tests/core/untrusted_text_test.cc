// Untrusted text made safe: for the terminal (printable, id_list) and for JSON (json_quote).
#include "core/untrusted_text.h"

#include <gtest/gtest.h>

#include "core/json_text.h"

namespace vfio {
namespace {

TEST(UntrustedText, Utf8SequencesFollowTheStandard) {
  EXPECT_EQ(utf8_sequence_length("a"), 1u);
  EXPECT_EQ(utf8_sequence_length("\xc3\xa9"), 2u);          // é
  EXPECT_EQ(utf8_sequence_length("\xe2\x82\xac"), 3u);      // €
  EXPECT_EQ(utf8_sequence_length("\xf0\x9f\x98\x80"), 4u);  // an emoji
  EXPECT_EQ(utf8_sequence_length(""), 0u);
  EXPECT_EQ(utf8_sequence_length("\x80"), 0u);              // a lone continuation byte
  EXPECT_EQ(utf8_sequence_length("\xc3"), 0u);              // cut short
  EXPECT_EQ(utf8_sequence_length("\xc3("), 0u);             // not followed by a continuation
  EXPECT_EQ(utf8_sequence_length("\xc0\xaf"), 0u);          // overlong '/'
  EXPECT_EQ(utf8_sequence_length("\xe0\x80\xaf"), 0u);      // overlong, three bytes
  EXPECT_EQ(utf8_sequence_length("\xed\xa0\x80"), 0u);      // a surrogate
  EXPECT_EQ(utf8_sequence_length("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xff"), 0u);
}

TEST(UntrustedText, PrintableEscapesControlsAndBadBytes) {
  EXPECT_EQ(printable("mlx5 #0 é"), "mlx5 #0 é");
  EXPECT_EQ(printable("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
  EXPECT_EQ(printable("a\nb\tc\x7f"), "a\\x0ab\\x09c\\x7f");
  EXPECT_EQ(printable("\xc2\x9b[2J"), "\\xc2\\x9b[2J");  // C1 CSI, as UTF-8
  EXPECT_EQ(printable("\xff\xc3("), "\\xff\\xc3(");
  const std::string once = printable("\x1b[31m\xfe");
  EXPECT_EQ(printable(once), once);
}

TEST(UntrustedText, PrefixCutsOnCharacters) {
  EXPECT_EQ(printable_prefix("abcdef", 3), "abc...");
  EXPECT_EQ(printable_prefix("abc", 3), "abc");
  EXPECT_EQ(printable_prefix("ab\xe2\x82\xac", 4), "ab...");  // € does not fit: not split
  EXPECT_EQ(printable_prefix("\x1b\x1b\x1b", 2), "\\x1b\\x1b...");
}

TEST(UntrustedText, IdListsAreShort) {
  EXPECT_EQ(id_list(std::vector<std::string>{}), "");
  EXPECT_EQ(id_list(std::vector<std::string>{"a", "b"}), "'a', 'b'");
  std::vector<std::string> many(64, std::string(256, 'x'));
  many[0] = "\x1b]0;x\x07";
  const auto list = id_list(many);
  EXPECT_EQ(list.rfind("'\\x1b]0;x\\x07', '" + std::string(kListedIdBytes, 'x') + "...'", 0), 0u)
      << list;
  EXPECT_TRUE(list.ends_with(", ... (+60 more)")) << list;
  EXPECT_LT(list.size(), 400u);
}

TEST(UntrustedText, JsonQuoteIsAlwaysValidUtf8) {
  EXPECT_EQ(json_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_quote("\x1b\n"), "\"\\u001b\\u000a\"");
  EXPECT_EQ(json_quote("é€"), "\"é€\"");
  EXPECT_EQ(json_quote("x\xff\xc3(y\xed\xa0\x80"), "\"x\\ufffd\\ufffd(y\\ufffd\\ufffd\\ufffd\"");
}

}  // namespace
}  // namespace vfio
