#include "usher/streams/packet_sync.h"

#include <gtest/gtest.h>

#include <cstring>

namespace usher::streams {
namespace {

std::vector<std::uint8_t> bytes_of(int packets, std::uint16_t pid = 0x100) {
  std::vector<std::uint8_t> out;
  for (int i = 0; i < packets; ++i) {
    TsPacket p = TsPacket::null_packet();
    p.set_pid(pid);
    p.set_cc(static_cast<std::uint8_t>(i));
    out.insert(out.end(), p.bytes.begin(), p.bytes.end());
  }
  return out;
}

TEST(PacketSync, AlignedInputPassesWhole) {
  PacketSync s;
  std::vector<TsPacket> out;
  const auto data = bytes_of(10);
  s.feed(data, out);
  s.finish(out);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(s.discarded_bytes(), 0u);
}

TEST(PacketSync, ResynchronisesAfterLeadingGarbageAndSplitReads) {
  std::vector<std::uint8_t> data = {0x00, 0x47, 0x13, 0x99, 0x47};  // garbage with false syncs
  const auto good = bytes_of(20);
  data.insert(data.end(), good.begin(), good.end());
  PacketSync s;
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < data.size(); i += 61) {  // odd-sized reads
    s.feed(std::span(data).subspan(i, std::min<std::size_t>(61, data.size() - i)), out);
  }
  s.finish(out);
  ASSERT_EQ(out.size(), 20u);
  EXPECT_EQ(s.discarded_bytes(), 5u);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].cc(), i % 16);
}

TEST(PacketSync, GarbageInTheMiddleAndTruncatedTail) {
  auto data = bytes_of(5);
  const std::vector<std::uint8_t> junk = {1, 2, 3, 4, 5, 6, 7};
  data.insert(data.end(), junk.begin(), junk.end());
  const auto more = bytes_of(5);
  data.insert(data.end(), more.begin(), more.end());
  data.insert(data.end(), more.begin(), more.begin() + 100);  // size not a multiple of 188
  PacketSync s;
  std::vector<TsPacket> out;
  s.feed(data, out);
  s.finish(out);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(s.discarded_bytes(), 7u + 100u);
  EXPECT_GE(s.resyncs(), 1u);
}

TEST(PacketSync, PureGarbageYieldsNothing) {
  std::vector<std::uint8_t> data(50000);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 13);
    if (data[i] == kSyncByte) data[i] = 0;
  }
  data[1000] = kSyncByte;  // a lone sync byte with no partner 188 bytes on
  PacketSync s;
  std::vector<TsPacket> out;
  s.feed(data, out);
  s.finish(out);
  EXPECT_EQ(out.size(), 0u);
  EXPECT_EQ(s.discarded_bytes(), data.size());
}

}  // namespace
}  // namespace usher::streams
