#include "core/json_value.h"

#include <gtest/gtest.h>

#include <string>

namespace vfio::json {
namespace {

TEST(JsonValue, ReadsQemusVmDescriptionShape) {
  auto doc = Document::parse(
      R"( {"page_size": 4096, "devices": [{"name": "0000:00:04.0/vfio", "instance_id": 0,)"
      R"( "fields": [{"name": "data", "type": "buffer", "size": 4132}], "ok": true,)"
      R"( "no": false, "none": null, "f": -1.5e3}]} )");
  ASSERT_TRUE(doc) << doc.error().message;
  const Value root = doc->root();
  EXPECT_TRUE(root.is_object());
  EXPECT_EQ(root.get("page_size")->integer(), 4096);
  const auto devices = root.get("devices")->elements();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].get("name")->string(), "0000:00:04.0/vfio");
  EXPECT_EQ(devices[0].get("fields")->elements()[0].get("size")->integer(), 4132);
  EXPECT_EQ(devices[0].get("ok")->boolean(), true);
  EXPECT_EQ(devices[0].get("no")->boolean(), false);
  EXPECT_EQ(devices[0].get("none")->kind(), Kind::kNull);
  EXPECT_EQ(devices[0].get("f")->integer(), std::nullopt);  // not an integer
  EXPECT_EQ(devices[0].get("missing"), std::nullopt);
  EXPECT_EQ(root.get("page_size")->string(), std::nullopt);
  const auto members = devices[0].members();
  ASSERT_EQ(members.size(), 7u);
  EXPECT_EQ(members[2].key, "fields");
  EXPECT_TRUE(members[2].value.is_array());
}

TEST(JsonValue, Strings) {
  auto doc =
      Document::parse(R"(["a\"b\\c\/\n\t", "\u00e9\u20ac\ud83d\ude00", "\udc00x", "\u0000"])");
  ASSERT_TRUE(doc) << doc.error().message;
  const auto e = doc->root().elements();
  EXPECT_EQ(e[0].string(), "a\"b\\c/\n\t");
  EXPECT_EQ(e[1].string(), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_EQ(e[2].string(), "\xef\xbf\xbdx");  // a lone surrogate becomes U+FFFD
  EXPECT_EQ(e[3].string(), std::string(1, '\0'));
  auto keyed = Document::parse(R"({"k\u0065y": 1})");
  ASSERT_TRUE(keyed);
  EXPECT_EQ(keyed->root().get("key")->integer(), 1);
}

TEST(JsonValue, Integers) {
  auto doc =
      Document::parse("[9223372036854775807, -9223372036854775808, 9223372036854775808, 1e2]");
  ASSERT_TRUE(doc);
  const auto e = doc->root().elements();
  EXPECT_EQ(e[0].integer(), INT64_MAX);
  EXPECT_EQ(e[1].integer(), INT64_MIN);
  EXPECT_EQ(e[2].integer(), std::nullopt);
  EXPECT_EQ(e[3].integer(), std::nullopt);
}

void expect_refused(std::string text, std::string_view reason, std::size_t offset) {
  auto doc = Document::parse(text);
  ASSERT_FALSE(doc) << text;
  EXPECT_NE(doc.error().message.find(reason), std::string::npos) << doc.error().message;
  EXPECT_NE(doc.error().message.find("JSON offset " + std::to_string(offset) + ":"),
            std::string::npos)
      << doc.error().message;
}

TEST(JsonValue, RefusesWhatIsNotJson) {
  expect_refused("", "the text ended", 0);
  expect_refused("{\"a\": 1", "',' or '}' was expected", 7);
  expect_refused("[1, 2", "',' or ']' was expected", 5);
  expect_refused("[1,]", "not a JSON value", 3);
  expect_refused("{1: 2}", "an object key was expected", 1);
  expect_refused("{\"a\" 2}", "':' was expected", 5);
  expect_refused("01", "leading zero", 2);
  expect_refused("1.", "without digits after '.'", 2);
  expect_refused("1e", "without exponent digits", 2);
  expect_refused("tru", "not a JSON value", 0);
  expect_refused("\"a\nb\"", "a control character inside a string", 2);
  expect_refused("\"\\x\"", "an unknown escape", 3);
  expect_refused("\"\\u12g4\"", "\\u without four hex digits", 5);
  expect_refused("\"abc", "the text ended inside a string", 4);
  expect_refused("{} {}", "text after the JSON value", 3);
}

TEST(JsonValue, NestingIsBounded) {
  const std::string deep = std::string(33, '[') + std::string(33, ']');
  expect_refused(deep, "nested deeper than 32 levels", 32);
  EXPECT_TRUE(Document::parse(std::string(32, '[') + std::string(32, ']')));
  EXPECT_TRUE(Document::parse(deep, 33));
  // A million levels are refused at the limit, not by the stack.
  expect_refused(std::string(1000000, '['), "nested deeper than 32 levels", 32);
}

}  // namespace
}  // namespace vfio::json
