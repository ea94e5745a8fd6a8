#include "usher/streams/ts_packet.h"

#include <gtest/gtest.h>

namespace usher::streams {
namespace {

TEST(TsPacket, HeaderFieldsRoundTrip) {
  TsPacket p = TsPacket::null_packet();
  EXPECT_TRUE(p.sync_ok());
  EXPECT_EQ(p.pid(), kNullPid);
  p.set_pid(0x1ABC);
  p.set_pusi(true);
  p.set_scrambling(Scrambling::odd);
  p.set_cc(0x1F);  // only 4 bits kept
  EXPECT_EQ(p.pid(), 0x1ABC);
  EXPECT_TRUE(p.pusi());
  EXPECT_EQ(p.scrambling(), Scrambling::odd);
  EXPECT_EQ(p.cc(), 0x0F);
  EXPECT_TRUE(p.has_payload());
  EXPECT_FALSE(p.has_adaptation());
  EXPECT_EQ(p.payload().size(), 184u);
}

TEST(TsPacket, AdaptationFieldAndPcr) {
  TsPacket p = TsPacket::null_packet();
  p.set_adaptation_payload(true, true);
  p.bytes[4] = 7;
  p.bytes[5] = 0x10;
  const std::uint64_t pcr = (std::uint64_t{1} << 32) * 300 + 299;
  p.set_pcr(pcr);
  ASSERT_TRUE(p.pcr().has_value());
  EXPECT_EQ(*p.pcr(), pcr);
  EXPECT_EQ(p.payload_offset(), 12u);
  EXPECT_EQ(p.payload().size(), 176u);
}

TEST(TsPacket, CorruptAdaptationLengthGivesEmptyPayload) {
  TsPacket p = TsPacket::null_packet();
  p.set_adaptation_payload(true, true);
  p.bytes[4] = 250;  // beyond the packet
  EXPECT_TRUE(p.payload().empty());
  EXPECT_FALSE(p.pcr().has_value() && p.bytes[4] < 7);
}

TEST(ContinuityChecker, CountsJumpsAllowsOneDuplicate) {
  ContinuityChecker c;
  TsPacket p = TsPacket::null_packet();
  p.set_pid(0x100);
  for (int cc : {0, 1, 2, 2, 3}) {
    p.set_cc(static_cast<std::uint8_t>(cc));
    EXPECT_TRUE(c.check(p)) << int(cc);
  }
  p.set_cc(7);
  EXPECT_FALSE(c.check(p));
  p.set_cc(8);
  EXPECT_TRUE(c.check(p));
  EXPECT_EQ(c.errors(), 1u);
}

}  // namespace
}  // namespace usher::streams
