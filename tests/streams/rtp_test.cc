#include "usher/streams/rtp.h"

#include <gtest/gtest.h>

#include <vector>

#include "usher/streams/ts_packet.h"

namespace usher::streams {
namespace {

// A datagram of `packets` TS packets whose payload bytes all hold `sequence`'s low byte, so that
// what comes out says which datagrams it came from.
std::vector<std::uint8_t> datagram(std::uint16_t sequence, std::uint32_t ssrc = 0x1234, std::uint8_t payload_type = 33,
                                   std::size_t packets = 7) {
  RtpHeader h;
  h.sequence = sequence;
  h.ssrc = ssrc;
  h.payload_type = payload_type;
  h.timestamp = 90'000u * sequence;
  const auto header = write_rtp_header(h);
  std::vector<std::uint8_t> d(header.begin(), header.end());
  for (std::size_t i = 0; i < packets; ++i) {
    TsPacket p = TsPacket::null_packet();
    p.bytes[4] = static_cast<std::uint8_t>(sequence);
    p.bytes[5] = static_cast<std::uint8_t>(sequence >> 8);
    d.insert(d.end(), p.bytes.begin(), p.bytes.end());
  }
  return d;
}

// The sequence numbers of the datagrams whose payloads came out, in order.
std::vector<std::uint16_t> sequences_in(const std::vector<std::uint8_t>& ts) {
  std::vector<std::uint16_t> out;
  for (std::size_t i = 0; i + kPacketSize <= ts.size(); i += 7 * kPacketSize) {
    out.push_back(static_cast<std::uint16_t>(ts[i + 4] | ts[i + 5] << 8));
  }
  return out;
}

TEST(Rtp, HeaderRoundTrip) {
  RtpHeader h;
  h.sequence = 0xBEEF;
  h.timestamp = 0xDEADBEEF;
  h.ssrc = 0x01020304;
  h.marker = true;
  const auto bytes = write_rtp_header(h);
  EXPECT_EQ(bytes[0], 0x80);  // version 2, no padding, extension or CSRC
  EXPECT_EQ(bytes[1], 0x80 | 33);
  const auto back = parse_rtp(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->header.sequence, 0xBEEF);
  EXPECT_EQ(back->header.timestamp, 0xDEADBEEFu);
  EXPECT_EQ(back->header.ssrc, 0x01020304u);
  EXPECT_TRUE(back->header.marker);
  EXPECT_EQ(back->header.payload_type, 33);
  EXPECT_TRUE(back->payload.empty());
}

// CSRCs, a header extension and padding are skipped to find the payload; lengths that run past the
// datagram are refused.
TEST(Rtp, PayloadAfterCsrcsExtensionAndBeforePadding) {
  std::vector<std::uint8_t> d = {0xB2, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9};  // P, X, CC=2
  d.insert(d.end(), 8, 0xCC);                                              // two CSRCs
  d.insert(d.end(), {0xBE, 0xDE, 0, 1, 1, 2, 3, 4});                       // one extension word
  d.insert(d.end(), {0x47, 1, 2});                                         // payload
  d.insert(d.end(), {0, 0, 3});                                            // 3 bytes of padding
  const auto r = parse_rtp(d);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->payload.size(), 3u);
  EXPECT_EQ(r->payload[0], 0x47);
  const auto expect_refused = [](std::span<const std::uint8_t> datagram, const std::string& why) {
    const auto refused = parse_rtp(datagram);
    ASSERT_FALSE(refused) << why;
    EXPECT_EQ(refused.error().code, Errc::malformed);
    EXPECT_NE(refused.error().message.find(why), std::string::npos) << refused.error().message;
  };
  auto bad = d;
  bad.back() = 200;  // padding longer than the payload
  expect_refused(bad, "padding of 200 bytes");
  bad = d;
  bad[0] = 0xBF;  // 15 CSRCs: past the end
  expect_refused(bad, "CSRC count");
  bad = d;
  bad[0] = 0x72;  // version 1
  expect_refused(bad, "version 1");
  bad = d;
  bad[23] = 9;  // an extension of 9 words: past the end
  expect_refused(bad, "header extension");
  expect_refused(std::span(d).first(11), "shorter than the 12-byte header");
}

TEST(Rtp, PlainTsIsNeverTakenForRtp) {
  std::vector<std::uint8_t> ts(7 * kPacketSize);
  for (std::size_t i = 0; i < ts.size(); i += kPacketSize) ts[i] = kSyncByte;
  EXPECT_FALSE(looks_like_rtp_mp2t(ts));  // 0x47 is version 1
  EXPECT_TRUE(looks_like_rtp_mp2t(datagram(5)));
  EXPECT_FALSE(looks_like_rtp_mp2t(datagram(5, 1, 96)));  // another payload type
}

struct Case {
  const char* name;
  std::vector<std::uint16_t> arrivals;
  std::vector<std::uint16_t> delivered;
  RtpInputStats expected;
  std::size_t depth = RtpReceiver::kDefaultReorderDepth;
};

TEST(Rtp, ReceiverCountsAndReorders) {
  auto range = [](std::uint16_t from, std::uint16_t to) {
    std::vector<std::uint16_t> v;
    for (std::uint16_t s = from; s != static_cast<std::uint16_t>(to + 1); ++s) v.push_back(s);
    return v;
  };
  auto without = [](std::vector<std::uint16_t> v, std::initializer_list<std::uint16_t> drop) {
    for (auto d : drop) std::erase(v, d);
    return v;
  };
  auto swapped = [](std::vector<std::uint16_t> v, std::size_t i) {
    std::swap(v[i], v[i + 1]);
    return v;
  };
  std::vector<Case> cases;
  // stats: datagrams, delivered, lost, reordered, late, duplicates, refused, restarts
  cases.push_back({"in order", range(100, 199), range(100, 199), {100, 100, 0, 0, 0, 0, 0, 0}});
  cases.push_back(
      {"two lost", without(range(0, 49), {3, 7}), without(range(0, 49), {3, 7}), {48, 48, 2, 0, 0, 0, 0, 0}});
  cases.push_back({"one pair swapped", swapped(range(0, 49), 10), range(0, 49), {50, 50, 0, 1, 0, 0, 0, 0}});
  auto dup = range(0, 19);
  dup.insert(dup.begin() + 6, 5);
  cases.push_back({"one duplicate", dup, range(0, 19), {21, 20, 0, 0, 0, 1, 0, 0}});
  cases.push_back({"swap across the wrap", swapped(range(65530, 10), 5), range(65530, 10), {17, 17, 0, 1, 0, 0, 0, 0}});
  cases.push_back({"loss across the wrap",
                   without(range(65530, 10), {65535, 0}),
                   without(range(65530, 10), {65535, 0}),
                   {15, 15, 2, 0, 0, 0, 0, 0}});
  // Depth 4: 3 is given up when 8 arrives; when it turns up it is late (and stays lost).
  auto late = without(range(0, 20), {3});
  late.insert(late.begin() + 10, 3);
  cases.push_back({"late after its gap was given up", late, without(range(0, 20), {3}), {21, 20, 1, 0, 1, 0, 0, 0}, 4});
  // A jump of more than 3000 is a restart, not 4000 losses.
  auto jump = range(0, 9);
  const auto after = range(5000, 5009);
  jump.insert(jump.end(), after.begin(), after.end());
  cases.push_back({"sequence restart", jump, jump, {20, 20, 0, 0, 0, 0, 0, 1}});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RtpReceiver rx(c.depth);
    std::vector<std::uint8_t> out;
    for (auto s : c.arrivals) rx.receive(datagram(s), out);
    rx.release_held(out);
    EXPECT_EQ(sequences_in(out), c.delivered);
    const auto& s = rx.stats();
    EXPECT_EQ(s.datagrams, c.expected.datagrams);
    EXPECT_EQ(s.delivered, c.expected.delivered);
    EXPECT_EQ(s.lost, c.expected.lost);
    EXPECT_EQ(s.reordered, c.expected.reordered);
    EXPECT_EQ(s.late, c.expected.late);
    EXPECT_EQ(s.duplicates, c.expected.duplicates);
    EXPECT_EQ(s.refused, c.expected.refused);
    EXPECT_EQ(s.restarts, c.expected.restarts);
  }
}

TEST(Rtp, ReceiverRefusesWhatIsNotMp2tAndFollowsANewSource) {
  RtpReceiver rx;
  std::vector<std::uint8_t> out;
  rx.receive(datagram(1), out);
  rx.receive(datagram(2, 0x1234, 96), out);  // another payload type
  auto broken = datagram(3);
  broken.resize(broken.size() - 5);  // not whole packets
  rx.receive(broken, out);
  rx.receive(std::vector<std::uint8_t>{0x47, 0, 0}, out);
  rx.receive(datagram(9000, 0x9999), out);  // the sender restarted with a new SSRC
  rx.receive(datagram(9001, 0x9999), out);
  EXPECT_EQ(sequences_in(out), (std::vector<std::uint16_t>{1, 9000, 9001}));
  EXPECT_EQ(rx.stats().refused, 3u);
  EXPECT_EQ(rx.stats().restarts, 1u);
  EXPECT_EQ(rx.stats().lost, 0u);
}

}  // namespace
}  // namespace usher::streams
