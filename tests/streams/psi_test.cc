#include "usher/streams/psi.h"

#include <gtest/gtest.h>

namespace usher::streams {
namespace {

// A refusal is Errc::malformed and says why.
template <typename T>
void expect_refused(const Result<T>& parsed, const std::string& why) {
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().code, Errc::malformed);
  EXPECT_NE(parsed.error().message.find(why), std::string::npos) << parsed.error().message;
}

TEST(Pat, RoundTrip) {
  Pat pat;
  pat.transport_stream_id = 0x0815;
  pat.version = 3;
  pat.programs = {{0, 0x10}, {1, 0x100}, {2, 0x200}};
  auto parsed = Pat::parse(pat.serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& p = *parsed;
  EXPECT_EQ(p.transport_stream_id, 0x0815);
  EXPECT_EQ(p.version, 3);
  ASSERT_EQ(p.programs.size(), 3u);
  EXPECT_EQ(p.programs[2].program_number, 2);
  EXPECT_EQ(p.programs[2].pid, 0x200);
}

TEST(Pmt, RoundTripWithCaDescriptors) {
  Pmt pmt;
  pmt.program_number = 7;
  pmt.version = 31;
  pmt.pcr_pid = 0x101;
  append_ca_descriptor(pmt.descriptors, {0x4AFF, 0x1FE0, {0xAA}});
  pmt.streams.push_back({0x1B, 0x101, {}});
  pmt.streams.push_back({0x0F, 0x102, {0x0A, 0x04, 'e', 'n', 'g', 0}});
  auto parsed = Pmt::parse(pmt.serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& p = *parsed;
  EXPECT_EQ(p.program_number, 7);
  EXPECT_EQ(p.version, 31);
  EXPECT_EQ(p.pcr_pid, 0x101);
  ASSERT_EQ(p.streams.size(), 2u);
  EXPECT_EQ(p.streams[1].descriptors, pmt.streams[1].descriptors);
  auto cas = find_ca_descriptors(p.descriptors);
  ASSERT_EQ(cas.size(), 1u);
  EXPECT_EQ(cas[0].ca_system_id, 0x4AFF);
  EXPECT_EQ(cas[0].ca_pid, 0x1FE0);
  EXPECT_EQ(cas[0].private_data, std::vector<std::uint8_t>{0xAA});
}

TEST(Pmt, RemoveCaDescriptorsKeepsOthers) {
  std::vector<std::uint8_t> loop = {0x0A, 0x04, 'e', 'n', 'g', 0};
  append_ca_descriptor(loop, {0x4AFF, 0x100, {}});
  append_ca_descriptor(loop, {0x0100, 0x101, {}});
  remove_ca_descriptors(loop, 0x4AFF);
  auto cas = find_ca_descriptors(loop);
  ASSERT_EQ(cas.size(), 1u);
  EXPECT_EQ(cas[0].ca_system_id, 0x0100);
  EXPECT_TRUE(descriptor_loop_ok(loop));
}

TEST(Pmt, MalformedInputsAreRefusedWithAReason) {
  Pmt pmt;
  pmt.program_number = 1;
  pmt.streams.push_back({0x1B, 0x101, {}});
  auto good = pmt.serialize();
  expect_refused(Pmt::parse(std::span(good).first(good.size() - 1)), "truncated");
  auto bad = good;
  bad[12] ^= 1;
  expect_refused(Pmt::parse(bad), "CRC-32 mismatch");
  Pat pat;
  expect_refused(Pmt::parse(pat.serialize()), "unexpected table_id 0x00 (expected 0x02)");
  // A descriptor loop that claims more bytes than it has, with a valid CRC.
  SectionHeader h;
  h.table_id = kTablePmt;
  const std::vector<std::uint8_t> body = {0xE1, 0x00, 0xF0, 0x03, 0x09, 0x09, 0x00};
  expect_refused(Pmt::parse(build_long_section(h, body)), "invalid syntax");
}

TEST(Cat, RoundTrip) {
  Cat cat;
  cat.version = 2;
  append_ca_descriptor(cat.descriptors, {0x4AFF, 0x1FF0, {}});
  auto parsed = Cat::parse(cat.serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(find_ca_descriptors(parsed->descriptors)[0].ca_pid, 0x1FF0);
}

TEST(Sdt, RoundTrip) {
  Sdt sdt;
  sdt.transport_stream_id = 1;
  sdt.original_network_id = 0xFF01;
  sdt.services.push_back({1, true, 4, {kTagServiceDescriptor, 5, 0x01, 0, 3, 'U', 'S'}});
  auto parsed = Sdt::parse(sdt.serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& s = *parsed;
  EXPECT_EQ(s.original_network_id, 0xFF01);
  ASSERT_EQ(s.services.size(), 1u);
  EXPECT_TRUE(s.services[0].free_ca_mode);
  EXPECT_EQ(s.services[0].running_status, 4);
}

}  // namespace
}  // namespace usher::streams

namespace usher::streams {
namespace {

TEST(Eit, PresentFollowingRoundTripWithMjdAndBcd) {
  Eit eit;
  eit.service_id = 3;
  eit.version = 5;
  Eit::Event e;
  e.event_id = 0xBEEF;
  e.start = 1'795'000'000;  // 2026-11-18T11:06:40Z, MJD 61362
  e.duration = 2 * 3600 + 5 * 60 + 9;
  e.running_status = 4;
  e.free_ca_mode = true;
  append_short_event_descriptor(e.descriptors, "eng", "Cup Final", "Pay-per-view");
  append_parental_rating_descriptor(e.descriptors, "FRA", 12);
  eit.events.push_back(e);
  const auto bytes = eit.serialize();
  // start_time: MJD then BCD hh mm ss, as EN 300 468 Annex C gives it.
  EXPECT_EQ(bytes[16], 0xEF);
  EXPECT_EQ(bytes[17], 0xB2);
  EXPECT_EQ(bytes[18], 0x11);
  EXPECT_EQ(bytes[19], 0x06);
  EXPECT_EQ(bytes[20], 0x40);
  auto parsed = Eit::parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& back = *parsed;
  ASSERT_EQ(back.events.size(), 1u);
  EXPECT_EQ(back.events[0].event_id, 0xBEEF);
  EXPECT_EQ(back.events[0].start, e.start);
  EXPECT_EQ(back.events[0].duration, e.duration);
  EXPECT_TRUE(back.events[0].free_ca_mode);
  EXPECT_EQ(short_event_name(back.events[0].descriptors), "Cup Final");
  auto bad = bytes;
  bad[19] = 0x4A;  // not BCD (the CRC is recomputed so that only the BCD check can refuse it)
  SectionHeader h;
  h.table_id = kTableEitPfActual;
  h.table_id_extension = 3;
  h.last_section_number = 1;
  parsed = Eit::parse(build_long_section(h, std::span(bad).subspan(8, bad.size() - 12)));
  expect_refused(parsed, "invalid syntax");
}

}  // namespace
}  // namespace usher::streams
