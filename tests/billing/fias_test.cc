// The FIAS-style record codec and framer: round trips, noise, cut and oversized records.
#include <gtest/gtest.h>

#include "usher/billing/fias.h"

namespace usher::billing {
namespace {

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(Fias, RecordsRoundTripAndFieldsAreSanitised) {
  FiasRecord r{"PS", {}};
  r.set("RN", "102").set("G#", "12345").set("TA", "1250").set("CT", "Film | with\x02 bars");
  const auto frame = r.frame();
  EXPECT_EQ(frame.front(), 0x02);
  EXPECT_EQ(frame.back(), 0x03);
  auto back = FiasRecord::parse(std::string(frame.begin() + 1, frame.end() - 1));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->type, "PS");
  EXPECT_EQ(back->field("RN"), "102");
  EXPECT_EQ(back->field("CT"), "Film   with  bars");
  EXPECT_EQ(back->field("XX"), "");
  EXPECT_EQ(FiasRecord::parse("GI|RN102|GNKoehler, Andreas|")->field("GN"), "Koehler, Andreas");
}

TEST(Fias, MalformedRecordsAreRefused) {
  for (const char* bad : {"", "G", "gi|RN1|", "GI", "GI|RN102", "GI|R|", "GI|RN1\x01|"}) {
    EXPECT_FALSE(FiasRecord::parse(bad).ok()) << bad;
  }
}

TEST(Fias, FramerSkipsNoiseAndCutRecordsAndBoundsLength) {
  FiasFramer f;
  f.feed(bytes("noise\x02LS|DA261124|\x03junk\x02GI|RN1"));
  auto first = f.next();
  ASSERT_TRUE(first && first->ok());
  EXPECT_EQ((*first)->type, "LS");
  EXPECT_FALSE(f.next());  // GI not complete yet
  f.feed(bytes("02|G#7|\x03"));
  auto second = f.next();
  ASSERT_TRUE(second && second->ok());
  EXPECT_EQ((*second)->field("RN"), "102");
  f.feed(bytes("\x02GO|RN1\x02GO|RN2|\x03"));  // a record cut short by the next one
  auto cut = f.next();
  ASSERT_TRUE(cut);
  EXPECT_FALSE(cut->ok());
  auto third = f.next();
  ASSERT_TRUE(third && third->ok());
  EXPECT_EQ((*third)->field("RN"), "2");
  f.feed(bytes("\x02" + std::string(FiasFramer::kMaxRecord + 10, 'A')));
  auto huge = f.next();
  ASSERT_TRUE(huge);
  EXPECT_FALSE(huge->ok());
}

}  // namespace
}  // namespace usher::billing
