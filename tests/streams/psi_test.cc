#include "usher/streams/psi.h"

#include <gtest/gtest.h>

namespace usher::streams {
namespace {

TEST(Pat, RoundTrip) {
  Pat pat;
  pat.transport_stream_id = 0x0815;
  pat.version = 3;
  pat.programs = {{0, 0x10}, {1, 0x100}, {2, 0x200}};
  auto parsed = Pat::parse(pat.serialize());
  ASSERT_TRUE(std::holds_alternative<Pat>(parsed));
  const auto& p = std::get<Pat>(parsed);
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
  ASSERT_TRUE(std::holds_alternative<Pmt>(parsed));
  const auto& p = std::get<Pmt>(parsed);
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
  EXPECT_EQ(std::get<ParseError>(Pmt::parse(std::span(good).first(good.size() - 1))), ParseError::truncated);
  auto bad = good;
  bad[12] ^= 1;
  EXPECT_EQ(std::get<ParseError>(Pmt::parse(bad)), ParseError::bad_crc);
  Pat pat;
  EXPECT_EQ(std::get<ParseError>(Pmt::parse(pat.serialize())), ParseError::wrong_table);
  // A descriptor loop that claims more bytes than it has, with a valid CRC.
  SectionHeader h;
  h.table_id = kTablePmt;
  const std::vector<std::uint8_t> body = {0xE1, 0x00, 0xF0, 0x03, 0x09, 0x09, 0x00};
  auto parsed = Pmt::parse(build_long_section(h, body));
  EXPECT_NE(std::get_if<ParseError>(&parsed), nullptr);
}

TEST(Cat, RoundTrip) {
  Cat cat;
  cat.version = 2;
  append_ca_descriptor(cat.descriptors, {0x4AFF, 0x1FF0, {}});
  auto parsed = Cat::parse(cat.serialize());
  ASSERT_TRUE(std::holds_alternative<Cat>(parsed));
  EXPECT_EQ(find_ca_descriptors(std::get<Cat>(parsed).descriptors)[0].ca_pid, 0x1FF0);
}

TEST(Sdt, RoundTrip) {
  Sdt sdt;
  sdt.transport_stream_id = 1;
  sdt.original_network_id = 0xFF01;
  sdt.services.push_back({1, true, 4, {kTagServiceDescriptor, 5, 0x01, 0, 3, 'U', 'S'}});
  auto parsed = Sdt::parse(sdt.serialize());
  ASSERT_TRUE(std::holds_alternative<Sdt>(parsed));
  const auto& s = std::get<Sdt>(parsed);
  EXPECT_EQ(s.original_network_id, 0xFF01);
  ASSERT_EQ(s.services.size(), 1u);
  EXPECT_TRUE(s.services[0].free_ca_mode);
  EXPECT_EQ(s.services[0].running_status, 4);
}

}  // namespace
}  // namespace usher::streams
