// Display width and UTF-8 checks behind the text tables (statements, service and package lists).
#include "usher/core/text.h"

#include <gtest/gtest.h>

namespace usher {
namespace {

TEST(TextTest, DisplayWidthCountsColumnsNotBytes) {
  struct Case {
    const char* text;
    std::size_t width;
  };
  for (const auto& c : {Case{"", 0}, Case{"Film 1", 6}, Case{"Köhler, André", 13}, Case{"Ça commence", 11},
                        Case{"映画", 4}, Case{"ＡＢ", 4}, Case{"e\xCC\x81", 1}, Case{"\xFF" "ab", 3}}) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(display_width(c.text), c.width);
  }
}

TEST(TextTest, PaddedCellsLineUpWhateverTheScript) {
  for (const char* name : {"Koehler", "Köhler", "映画館", "Ünïcödé"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(display_width(pad_right(name, 12)), 12u);
    EXPECT_EQ(display_width(pad_left(name, 12)), 12u);
  }
  EXPECT_EQ(pad_right("Köhler", 8), "Köhler  ");
  EXPECT_EQ(pad_left("9.91 EUR", 10), "  9.91 EUR");
  EXPECT_EQ(pad_right("a long name", 4), "a long name");  // never cut by padding
  EXPECT_EQ(cut_to_width("Köhler", 2), "Kö");             // whole code points
  EXPECT_EQ(cut_to_width("映画館", 5), "映画");           // a wide one that does not fit is left out
}

TEST(TextTest, ValidUtf8RefusesBrokenSequences) {
  EXPECT_TRUE(valid_utf8("Köhler, André 映画 \xF0\x9F\x8E\xAC"));
  for (const char* bad : {"\xC3(", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE6\x98"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(valid_utf8(bad));
  }
}

}  // namespace
}  // namespace usher
