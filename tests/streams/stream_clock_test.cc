#include "usher/streams/stream_clock.h"

#include <gtest/gtest.h>

#include "synthetic_stream.h"

namespace usher::streams {
namespace {

TEST(StreamClock, MeasuresBitrateAndTimeFromPcr) {
  testing::SyntheticMuxOptions o;
  o.seconds = 3;
  o.bitrate = 5'000'000;
  const auto packets = testing::make_synthetic_mux(o);
  StreamClock clock;
  for (const auto& p : packets) clock.observe(p);
  EXPECT_TRUE(clock.pcr_seen());
  EXPECT_TRUE(clock.bitrate_measured());
  EXPECT_NEAR(static_cast<double>(clock.bitrate()), 5e6, 5e4);
  EXPECT_NEAR(clock.seconds(), 3.0, 0.05);
}

TEST(StreamClock, WithoutPcrCountsAtAssumedRate) {
  StreamClock clock(188 * 8 * 1000);  // 1000 packets a second
  TsPacket p = TsPacket::null_packet();
  p.set_pid(0x100);
  for (int i = 0; i < 2000; ++i) clock.observe(p);
  EXPECT_FALSE(clock.pcr_seen());
  EXPECT_NEAR(clock.seconds(), 2.0, 0.01);
}

TEST(StreamClock, StaysMonotonicAcrossPcrDiscontinuity) {
  testing::SyntheticMuxOptions o;
  o.seconds = 1;
  auto a = testing::make_synthetic_mux(o);
  const auto b = a;  // PCRs start again from zero
  a.insert(a.end(), b.begin(), b.end());
  StreamClock clock;
  std::uint64_t last = 0;
  for (const auto& p : a) {
    clock.observe(p);
    ASSERT_GE(clock.now(), last);
    last = clock.now();
  }
  EXPECT_NEAR(clock.seconds(), 2.0, 0.1);
}

}  // namespace
}  // namespace usher::streams
