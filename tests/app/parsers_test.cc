// The command line's value parsers: decimal numbers checked against their field's range, the one
// duration syntax, times, and the typo suggestions.
#include <gtest/gtest.h>

#include "cli.h"

namespace usher::cli {
namespace {

TEST(CliNumbers, DecimalOnlyAndRangeCheckedForTheFieldsType) {
  // Issue 8: base 0 read "010" as eight.
  EXPECT_EQ(parse_integer<std::uint32_t>("010").value(), 10u);
  EXPECT_EQ(parse_integer<std::uint16_t>("65535", 1, 0xFFFF).value(), 65535);
  EXPECT_EQ(parse_integer<std::uint8_t>("255").value(), 255);
  EXPECT_EQ(parse_integer<std::int32_t>("-12", -100, 100).value(), -12);
  EXPECT_EQ(parse_integer<std::int64_t>("-9223372036854775808").value(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(parse_integer<std::uint64_t>("18446744073709551615").value(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(parse_integer<std::uint16_t>("0x1FF0", 0, 0x1FFF, true).value(), 0x1FF0);

  struct Row {
    const char* text;
    std::uint64_t max;
    const char* says;
  };
  for (const Row& row : {Row{"70001", 0xFFFF, "out of range"},        // wrapped to 4465
                         Row{"70000", 0xFFFF, "out of range"},        // wrapped to 4464
                         Row{"0", 0xFFFF, "out of range"},            // ids start at 1
                         Row{"4294967296", 0xFFFFFFFF, "out of range"},
                         Row{"999999999999999", 36500, "out of range"},
                         Row{"99999999999999999999999", 0xFFFFFFFF, "out of range"},
                         Row{"-1", 0xFFFF, "decimal"},                // no sign on an unsigned field
                         Row{"0x10", 0xFFFF, "decimal"},              // hex only where allowed
                         Row{"12abc", 0xFFFF, "decimal"},
                         Row{" 12", 0xFFFF, "decimal"},
                         Row{"12 ", 0xFFFF, "decimal"},
                         Row{"+12", 0xFFFF, "decimal"},
                         Row{"1e3", 0xFFFF, "decimal"},
                         Row{"", 0xFFFF, "decimal"}}) {
    auto v = parse_integer_in(row.text, 1, row.max, false);
    ASSERT_FALSE(v.ok()) << "'" << row.text << "' was accepted as " << v.value();
    EXPECT_NE(v.error().message.find(row.says), std::string::npos) << row.text << ": " << v.error().message;
  }
  EXPECT_FALSE(parse_integer<std::uint64_t>("18446744073709551616").ok());
  EXPECT_FALSE(parse_integer<std::uint64_t>("-1").ok());
  EXPECT_FALSE(parse_integer<std::int8_t>("-129").ok());
  EXPECT_FALSE(parse_integer<std::uint16_t>("0x10000", 0, 0xFFFF, true).ok());
  EXPECT_FALSE(parse_integer<std::uint16_t>("0x", 0, 0xFFFF, true).ok());
}

TEST(CliDurations, OneSyntaxWithUnits) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_duration("90").value(), milliseconds(90'000));  // plain: seconds
  EXPECT_EQ(parse_duration("90s").value(), milliseconds(90'000));
  EXPECT_EQ(parse_duration("90m").value(), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("2h").value(), milliseconds(7'200'000));
  EXPECT_EQ(parse_duration("3d").value(), milliseconds(259'200'000));
  EXPECT_EQ(parse_duration("500ms").value(), milliseconds(500));
  EXPECT_EQ(parse_duration("010m").value(), milliseconds(600'000));
  EXPECT_EQ(parse_duration("3000", milliseconds(1)).value(), milliseconds(3000));  // options that were always ms
  EXPECT_EQ(parse_duration("0").value(), milliseconds(0));
  for (const char* bad : {"", "m", "2x", "2 h", "-5m", "1.5h", "2hh", "h2", "0x10", "99999999999999999999d", "36601d", "1000000000h"}) {
    EXPECT_FALSE(parse_duration(bad).ok()) << "'" << bad << "' was accepted";
  }
  EXPECT_EQ(parse_duration_seconds("2h").value(), 7200u);
  EXPECT_FALSE(parse_duration_seconds("1500ms").ok());
  EXPECT_EQ(parse_duration_seconds("2000ms").value(), 2u);
}

TEST(CliTimes, UnixNowRelativeAndIso) {
  const std::uint64_t now = 1'800'000'000;
  EXPECT_EQ(parse_time("now", now).value(), now);
  EXPECT_EQ(parse_time("now+2h", now).value(), now + 7200);
  EXPECT_EQ(parse_time("now+3d", now).value(), now + 3 * 86400);
  EXPECT_EQ(parse_time("now-90m", now).value(), now - 5400);
  EXPECT_EQ(parse_time("now+45", now).value(), now + 45);
  EXPECT_EQ(parse_time("1700000000", now).value(), 1'700'000'000u);
  EXPECT_EQ(parse_time("2026-12-01T20:00:00Z", now).value(), 1'796'155'200u);
  EXPECT_EQ(parse_time("9999-12-31T23:59:59Z", now).value(), kLatestTime);
  for (const char* bad : {"", "nowish", "now+", "now+2x", "now*2h", "now-99999d", "99999999999999999999", "253402300800",
                          "2026-12-01", "2026-12-01T20:00:00", "2026-12-01T20:00:00Zjunk", "2026-13-01T20:00:00Z", "tomorrow"}) {
    EXPECT_FALSE(parse_time(bad, now).ok()) << "'" << bad << "' was accepted";
  }
}

TEST(CliSuggestions, ClosestOptionWithinAFewEdits) {
  const std::vector<std::string> grant{"--home", "--stb", "--service", "--package", "--from", "--until", "--days", "--help"};
  EXPECT_EQ(closest_match("--day", grant), "--days");
  EXPECT_EQ(closest_match("--hoem", grant), "--home");
  EXPECT_EQ(closest_match("--servce", grant), "--service");
  EXPECT_EQ(closest_match("--pack", grant), "--package");  // a prefix of one option only
  EXPECT_EQ(closest_match("--colour", grant), "");
  EXPECT_EQ(closest_match("--x", grant), "");
  EXPECT_EQ(closest_match("biy", {"init", "run", "buy", "history"}), "buy");
  EXPECT_EQ(closest_match("entitlemnt", {"demo", "streams", "entitlement", "headend", "stb", "wallet", "billing"}), "entitlement");
}

}  // namespace
}  // namespace usher::cli
