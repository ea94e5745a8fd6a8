#include "usher/streams/section.h"

#include <gtest/gtest.h>

#include <string>

#include "usher/streams/psi.h"

namespace usher::streams {
namespace {

TEST(Crc32Mpeg2, KnownAnswer) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32_mpeg2({reinterpret_cast<const std::uint8_t*>(check.data()), check.size()}), 0x0376E6E7u);
}

TEST(Section, LongFormRoundTripAndCrcCheck) {
  SectionHeader h;
  h.table_id = 0x42;
  h.table_id_extension = 0x1234;
  h.version = 7;
  const std::vector<std::uint8_t> body = {1, 2, 3, 4, 5};
  auto s = build_long_section(h, body);
  auto r = parse_section(s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header.table_id_extension, 0x1234);
  EXPECT_EQ(r->header.version, 7);
  EXPECT_EQ(std::vector<std::uint8_t>(r->body.begin(), r->body.end()), body);
  s[9] ^= 0x01;
  r = parse_section(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed);
  EXPECT_EQ(r.error().message, "CRC-32 mismatch");
  s[9] ^= 0x01;
  const auto truncated = parse_section(std::span(s).first(10));
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().code, Errc::malformed);
  EXPECT_EQ(truncated.error().message, "truncated");
}

std::vector<std::uint8_t> big_section(std::uint8_t table_id, std::size_t body_size) {
  std::vector<std::uint8_t> body(body_size);
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<std::uint8_t>(i * 7);
  SectionHeader h;
  h.table_id = table_id;
  return build_long_section(h, body);
}

TEST(SectionAssembler, ReassemblesAcrossPackets) {
  const auto section = big_section(0x02, 900);
  SectionPacketizer pz(0x100);
  std::vector<TsPacket> packets;
  pz.packetize(section, packets);
  EXPECT_EQ(packets.size(), 5u);
  std::vector<std::vector<std::uint8_t>> got;
  SectionAssembler a([&](auto s) { got.emplace_back(s.begin(), s.end()); });
  for (const auto& p : packets) a.feed(p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], section);
  ContinuityChecker cc;
  for (const auto& p : packets) EXPECT_TRUE(cc.check(p));
}

TEST(SectionAssembler, SeveralSectionsInOnePacketThenStuffing) {
  const auto s1 = build_short_section(0x80, std::vector<std::uint8_t>(20, 1));
  const auto s2 = build_short_section(0x81, std::vector<std::uint8_t>(30, 2));
  TsPacket p = TsPacket::null_packet();
  p.set_pid(0x50);
  p.set_pusi(true);
  std::size_t at = 4;
  p.bytes[at++] = 0;
  std::copy(s1.begin(), s1.end(), p.bytes.begin() + static_cast<long>(at));
  at += s1.size();
  std::copy(s2.begin(), s2.end(), p.bytes.begin() + static_cast<long>(at));
  std::vector<std::vector<std::uint8_t>> got;
  SectionAssembler a([&](auto s) { got.emplace_back(s.begin(), s.end()); });
  a.feed(p);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], s1);
  EXPECT_EQ(got[1], s2);
}

TEST(SectionAssembler, PointerFieldFinishesPreviousSection) {
  // Section A spans into the second packet, where section B starts after the pointer field.
  const auto a_sec = build_short_section(0x80, std::vector<std::uint8_t>(200, 0xA));
  const auto b_sec = build_short_section(0x81, std::vector<std::uint8_t>(10, 0xB));
  TsPacket p1 = TsPacket::null_packet(), p2 = TsPacket::null_packet();
  p1.set_pid(0x50);
  p2.set_pid(0x50);
  p1.set_pusi(true);
  p2.set_pusi(true);
  p1.set_cc(0);
  p2.set_cc(1);
  p1.bytes[4] = 0;
  std::copy_n(a_sec.begin(), 183, p1.bytes.begin() + 5);
  const std::size_t rest = a_sec.size() - 183;
  p2.bytes[4] = static_cast<std::uint8_t>(rest);
  std::copy(a_sec.begin() + 183, a_sec.end(), p2.bytes.begin() + 5);
  std::copy(b_sec.begin(), b_sec.end(), p2.bytes.begin() + 5 + static_cast<long>(rest));
  std::vector<std::vector<std::uint8_t>> got;
  SectionAssembler a([&](auto s) { got.emplace_back(s.begin(), s.end()); });
  a.feed(p1);
  a.feed(p2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a_sec);
  EXPECT_EQ(got[1], b_sec);
}

TEST(SectionAssembler, ContinuityBreakDropsPartialSection) {
  const auto section = big_section(0x02, 600);
  SectionPacketizer pz(0x100);
  std::vector<TsPacket> packets;
  pz.packetize(section, packets);
  pz.packetize(section, packets);
  packets.erase(packets.begin() + 1);  // lose a packet of the first copy
  int got = 0;
  SectionAssembler a([&](auto) { ++got; });
  for (const auto& p : packets) a.feed(p);
  EXPECT_EQ(got, 1);
  EXPECT_EQ(a.dropped(), 1u);
}

TEST(SectionAssembler, BadCrcIsDroppedNotDelivered) {
  auto section = big_section(0x02, 50);
  section[20] ^= 0xFF;
  SectionPacketizer pz(0x100);
  std::vector<TsPacket> packets;
  pz.packetize(section, packets);
  int got = 0;
  SectionAssembler a([&](auto) { ++got; });
  for (const auto& p : packets) a.feed(p);
  EXPECT_EQ(got, 0);
  EXPECT_EQ(a.dropped(), 1u);
}

TEST(SectionAssembler, PointerFieldBeyondPacketIsIgnored) {
  TsPacket p = TsPacket::null_packet();
  p.set_pid(0x50);
  p.set_pusi(true);
  p.bytes[4] = 200;
  int got = 0;
  SectionAssembler a([&](auto) { ++got; });
  a.feed(p);
  EXPECT_EQ(got, 0);
}

}  // namespace
}  // namespace usher::streams
