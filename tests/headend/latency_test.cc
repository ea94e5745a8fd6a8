// Latency through the broadcast path in stream time: a 128 kbit/s service next to a 20 Mbit/s one,
// through the headend Scrambler and the STB Descrambler (real entitlement store, secure element,
// libdvbcsa), fed one packet at a time as a live input would be. No packet of either service waits
// for its CSA batch more than max_hold of stream time at either end, and an STB tuned mid-stream
// puts out its first clear packet of the radio service within max_hold of having the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "broadcast_fixture.h"
#include "stream_latency.h"
#include "synthetic_stream.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"
#include "usher/stb/descrambler.h"

namespace usher {
namespace {

using streams::Scrambling;
using streams::TsPacket;

constexpr std::uint64_t kStart = 1'900'000'000;
constexpr std::uint64_t kTicksPerMs = streams::kPcrHz / 1000;

TEST(Latency, EachPacketLeavesHeadendAndStbWithinMaxHoldAndZapWaitsNoBatch) {
  testing::BroadcastWorld world;
  world.add_service(1);
  world.add_service(2);
  world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  ASSERT_TRUE(world.store().grant(1001, 2, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.services = {1, 2};
  o.service_bitrates = {20'000'000, 128'000};  // TV, radio
  o.bitrate = 21'000'000;
  o.seconds = 3;
  const auto clear = testing::make_synthetic_mux(o);
  const auto clear_times = testing::stream_times(clear);
  const std::vector<std::uint16_t> pids{testing::synthetic_video_pid(0), testing::synthetic_audio_pid(0),
                                        testing::synthetic_video_pid(1), testing::synthetic_audio_pid(1)};
  const std::uint16_t radio = testing::synthetic_audio_pid(1);

  // Headend.
  headend::StoreKeySource keys(world.store());
  headend::ScramblerConfig config;
  config.start_unix = kStart;
  config.crypto_period_ms = 1000;
  ASSERT_EQ(config.max_hold_ms, 20u);
  headend::Scrambler scrambler(std::move(config), keys);
  std::vector<TsPacket> scrambled;
  std::size_t survey_end = clear.size();
  const auto head = testing::feed_one_by_one(
      scrambler, clear, clear_times, 0, pids,
      [&](std::size_t i, const std::vector<TsPacket>& out) {
        if (!scrambler.surveying() && survey_end == clear.size()) survey_end = i + 1;
        scrambled.insert(scrambled.end(), out.begin(), out.end());
      },
      &survey_end);
  scrambler.finish(scrambled);
  ASSERT_LT(survey_end, clear.size() / 3);  // the survey (PAT, PMTs, stuffing) ends within the first second
  ASSERT_GT(head.count(), clear.size() / 2);
  for (auto pid : pids) EXPECT_LE(head.longest(pid), 20 * kTicksPerMs) << "headend, PID " << pid;
  // The radio service's packets are 11.75 ms apart: they do wait for a second one, and no longer.
  EXPECT_GT(head.longest(radio), 10 * kTicksPerMs);
  EXPECT_GT(scrambler.stats().csa_partial_batches, 0u);
  EXPECT_GT(scrambler.stats().csa_full_batches, 0u);

  // STB, from the start: it takes its entitlements from the EMMs in the stream.
  const auto scrambled_times = testing::stream_times(scrambled);
  // Until its second PCR the STB's clock runs at an assumed rate, then catches up at once: the
  // packets before that are left out of the measure (measured from when it knows the rate).
  stb::Descrambler stb(&world.stb(1001), {});
  std::size_t rate_known = 0;
  const auto box = testing::feed_one_by_one(
      stb, scrambled, scrambled_times, 0, pids,
      [&](std::size_t i, const auto&) {
        if (!stb.clock().bitrate_measured()) rate_known = i + 1;
      },
      &rate_known);
  ASSERT_LT(rate_known, scrambled.size() / 20);
  for (auto pid : pids) EXPECT_LE(box.longest(pid), 20 * kTicksPerMs) << "STB, PID " << pid;
  EXPECT_GT(box.longest(radio), 10 * kTicksPerMs);
  EXPECT_GT(stb.stats().packets_descrambled, box.count() / 2);

  // Zap: the same STB (entitled now) tuned in 1.3 s into the stream.
  const auto tune = static_cast<std::size_t>(
      std::lower_bound(scrambled_times.begin(), scrambled_times.end(), 1300 * kTicksPerMs) - scrambled_times.begin());
  stb::Descrambler zapped(&world.stb(1001), {});
  std::optional<std::uint64_t> key_at, first_clear_radio_at;
  testing::feed_one_by_one(zapped, scrambled, scrambled_times, tune, pids, [&](std::size_t i, const std::vector<TsPacket>& out) {
    if (!key_at && zapped.stats().ecm_accepted > 0) key_at = scrambled_times[i];
    for (const auto& p : out) {
      if (!first_clear_radio_at && p.pid() == radio && p.scrambling() == Scrambling::clear) first_clear_radio_at = scrambled_times[i];
    }
  });
  ASSERT_TRUE(key_at.has_value());
  ASSERT_TRUE(first_clear_radio_at.has_value());
  // The next radio packet comes at most 11.75 ms after the key (its audio PID every other one:
  // 23.5 ms), and waits at most max_hold: no batch of 128 radio packets (24 s of it here) is
  // waited for, nor 2,048 packets of the multiplex.
  EXPECT_LE(*first_clear_radio_at - *key_at, (24 + 20) * kTicksPerMs);
  // Tuning to the key takes the PAT, the PMT and the ECM: within an ECM interval (100 ms) of
  // the PMT here.
  EXPECT_LE(*key_at - scrambled_times[tune], 250 * kTicksPerMs);
}

}  // namespace
}  // namespace usher
