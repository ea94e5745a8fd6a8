#include "usher/streams/pacing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "synthetic_stream.h"

namespace usher::streams {
namespace {

struct Emitted {
  std::size_t packets = 0;
  std::optional<std::uint64_t> due;
  std::uint64_t duration = 0;
};

std::vector<Emitted> schedule(const std::vector<TsPacket>& packets, DatagramScheduler& scheduler,
                              std::size_t batch = 100) {
  std::vector<Emitted> out;
  const auto emit = [&](const ScheduledDatagram& d) { out.push_back({d.packets.size(), d.due, d.duration}); };
  for (std::size_t i = 0; i < packets.size(); i += batch) {
    scheduler.push(std::span(packets).subspan(i, std::min(batch, packets.size() - i)), emit);
  }
  scheduler.finish(emit);
  return out;
}

// 27 MHz ticks one packet lasts at `bitrate`.
double ticks_per_packet(std::uint64_t bitrate) { return 188.0 * 8 * 27e6 / static_cast<double>(bitrate); }

// Each datagram is due at its first packet's own time, interpolated between PCRs: at constant
// bitrate the datagrams are evenly spaced (the old pacer sent a PCR interval's worth at once).
TEST(Pacing, EachDatagramAtItsFirstPacketsTime) {
  for (const std::uint64_t bitrate : {4'000'000ull, 40'000'000ull}) {
    SCOPED_TRACE(bitrate);
    testing::SyntheticMuxOptions o;
    o.bitrate = bitrate;
    o.seconds = 1.0;
    const auto packets = testing::make_synthetic_mux(o);
    DatagramScheduler scheduler;
    const auto out = schedule(packets, scheduler);
    ASSERT_EQ(out.size(), (packets.size() + 6) / 7);
    std::size_t first_packet = 0;
    for (const auto& d : out) {
      ASSERT_TRUE(d.due) << "datagram at packet " << first_packet;
      // The mux's PCR of packet n is n * 1504 * 27e6 / bitrate, truncated: within a tick or two.
      EXPECT_NEAR(static_cast<double>(*d.due), static_cast<double>(first_packet) * ticks_per_packet(bitrate), 2.0)
          << "datagram at packet " << first_packet;
      first_packet += d.packets;
    }
    EXPECT_NEAR(static_cast<double>(out[10].duration), 7 * ticks_per_packet(bitrate), 2.0);
    EXPECT_EQ(scheduler.stats().unpaced_datagrams, 0u);
    EXPECT_EQ(scheduler.stats().discontinuities, 0u);
  }
}

// A PCR that starts again (a spliced file) neither stalls nor bursts: stream time goes on at the
// last rate and the spacing stays the same.
TEST(Pacing, DiscontinuityIsBridgedAtTheLastRate) {
  testing::SyntheticMuxOptions o;
  o.seconds = 0.5;
  auto packets = testing::make_synthetic_mux(o);
  const auto second = testing::make_synthetic_mux(o);  // PCRs from 0 again
  packets.insert(packets.end(), second.begin(), second.end());
  DatagramScheduler scheduler;
  const auto out = schedule(packets, scheduler);
  EXPECT_EQ(scheduler.stats().discontinuities, 1u);
  const double spacing = 7 * ticks_per_packet(o.bitrate);
  for (std::size_t i = 1; i + 1 < out.size(); ++i) {
    ASSERT_TRUE(out[i].due && out[i - 1].due);
    const auto step = static_cast<double>(*out[i].due - *out[i - 1].due);
    EXPECT_NEAR(step, spacing, 2.0) << "datagram " << i;
  }
}

// PCRs that stop for a while (their PID dropped) are bridged at the last rate; when they return
// the clock follows them again.
TEST(Pacing, MissingPcrsAreBridged) {
  testing::SyntheticMuxOptions o;
  o.seconds = 2;
  auto packets = testing::make_synthetic_mux(o);
  const std::size_t from = packets.size() / 4;
  const std::size_t to = packets.size() / 2;  // half a second without a PCR
  for (std::size_t i = from; i < to; ++i) {
    if (packets[i].pcr()) packets[i].bytes[5] = 0;  // PCR flag off
  }
  DatagramScheduler scheduler;
  const auto out = schedule(packets, scheduler);
  EXPECT_GT(scheduler.stats().pcr_gaps, 0u);
  EXPECT_EQ(scheduler.stats().discontinuities, 0u);
  std::size_t first_packet = 0;
  for (const auto& d : out) {
    ASSERT_TRUE(d.due);
    EXPECT_NEAR(static_cast<double>(*d.due), static_cast<double>(first_packet) * ticks_per_packet(o.bitrate), 30.0);
    first_packet += d.packets;
  }
}

// A stream without PCRs goes out as it comes (there is no clock to follow), held only up to a bound.
TEST(Pacing, WithoutPcrsNothingIsHeldForEver) {
  std::vector<TsPacket> packets(DatagramScheduler::kMaxHeld + 700, TsPacket::null_packet());
  DatagramScheduler scheduler;
  std::size_t emitted_before_finish = 0;
  std::size_t paced = 0;
  scheduler.push(packets, [&](const ScheduledDatagram& d) {
    emitted_before_finish += d.packets.size();
    paced += d.due ? 1 : 0;
  });
  EXPECT_GE(emitted_before_finish, 700u);
  std::size_t total = emitted_before_finish;
  scheduler.finish([&](const ScheduledDatagram& d) { total += d.packets.size(); });
  EXPECT_EQ(total, packets.size());
  EXPECT_EQ(paced, 0u);
}

}  // namespace
}  // namespace usher::streams

namespace usher::streams {
namespace {

// After a stall (here forced: 30 ms without sending), the overdue datagrams do not leave in a
// burst: no millisecond holds more than the rate per millisecond rounded up, plus one (5 at
// 40 Mbit/s), and the sender is back on time a few tens of milliseconds later.
TEST(Pacing, CatchingUpAfterAStallIsNotABurst) {
  const std::uint64_t duration = 7 * 188 * 8 * kPcrHz / 40'000'000;  // one datagram at 40 Mbit/s
  DepartureClock clock;
  std::vector<std::chrono::steady_clock::time_point> departures;
  auto send = [&](std::uint64_t index) {
    ScheduledDatagram d;
    d.due = index * duration;
    d.duration = duration;
    clock.wait(d);
    // The send happens here, between the wait and departed(): noted before departed() notes it, a
    // preemption in between (a loaded machine) cannot make later departures look bunched up.
    departures.push_back(std::chrono::steady_clock::now());
    clock.departed();
  };
  send(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the stall: about 114 datagrams overdue
  for (std::uint64_t i = 1; i <= 2000; ++i) send(i);
  std::size_t most = 0;
  std::size_t first = 1;
  for (std::size_t last = 1; last < departures.size(); ++last) {
    while (departures[last] - departures[first] >= std::chrono::milliseconds(1)) ++first;
    most = std::max(most, last - first + 1);
  }
  EXPECT_LE(most, 5u);
  EXPECT_EQ(clock.reanchors(), 0u);
  // Catching up at up to 5 datagrams a millisecond against 3.8 due takes about 100 ms (longer on a
  // loaded machine, whose sleeps overrun); the 2000th is due 530 ms after the first. None leaves
  // early; the last hundred are on time again (the one nearest its due time among them, since a
  // loaded machine may wake any single one late).
  auto due = [&](std::size_t i) { return departures.front() + std::chrono::nanoseconds(i * duration * 1000 / 27); };
  auto least_late = std::chrono::steady_clock::duration::max();
  for (std::size_t i = 1; i < departures.size(); ++i) {
    EXPECT_GE(departures[i], due(i) - std::chrono::microseconds(100)) << i;
    if (i + 100 >= departures.size()) least_late = std::min(least_late, departures[i] - due(i));
  }
  EXPECT_LT(least_late, std::chrono::milliseconds(5));
}

}  // namespace
}  // namespace usher::streams
