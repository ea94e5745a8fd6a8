// Pacing live output by the stream's own clock: each datagram leaves at its time, not in a burst at
// each PCR.
//
// DatagramScheduler cuts a TS into datagrams of 7 packets and gives each the stream time of its
// first packet, interpolated between the PCRs around it (ISO/IEC 13818-1 2.4.2.2: bytes between
// two PCRs arrive at a constant rate). It waits for the PCR after a packet before timing it, so
// output runs up to one PCR interval (40 ms in DVB, 100 ms at most) behind input. Stream time is
// its own count from the first packet: a PCR that jumps (discontinuity flag, a step back or more
// than a second forward) or goes missing is bridged at the last rate, never a stall or a burst.
//
// DepartureClock turns those stream times into steady_clock instants and sleeps until each
// (clock_nanosleep, absolute): the long-term rate is the PCRs' exactly, and a late wake-up delays
// one datagram, not the ones after it. After a stall it catches up without a burst: never more
// datagrams in any millisecond than the stream's rate per millisecond rounded up, plus one (5 at
// 40 Mbit/s, 2 up to 10 Mbit/s). More than 200 ms behind, it re-anchors instead of racing.
//
//   DatagramScheduler scheduler;
//   DepartureClock clock;
//   scheduler.push(packets, [&](const ScheduledDatagram& d) { clock.wait(d); send(d.packets); clock.departed(); });
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>

#include "usher/streams/ts_packet.h"

namespace usher::streams {

inline constexpr std::size_t kPacketsPerDatagram = 7;  // 1316 bytes: fits a 1500-byte MTU with IP, UDP and RTP

struct ScheduledDatagram {
  std::span<const TsPacket> packets;  // 1 to 7
  // Stream time (27 MHz units since the first packet) at which the datagram's first packet is due;
  // nullopt while no pair of PCRs has given the rate (such datagrams go out at once).
  std::optional<std::uint64_t> due;
  // Stream time the datagram's packets span at the current rate (0 when unknown).
  std::uint64_t duration = 0;
};

struct SchedulerStats {
  std::uint64_t datagrams = 0;
  std::uint64_t unpaced_datagrams = 0;  // sent before the rate was known, or in a stream without PCRs
  std::uint64_t discontinuities = 0;    // PCR jumps bridged at the last rate
  std::uint64_t pcr_gaps = 0;           // stretches without a PCR bridged at the last rate
};

class DatagramScheduler {
 public:
  using Emit = std::function<void(const ScheduledDatagram&)>;
  // Packets held before the rate is known, or after the last PCR, at most (memory bound; a stream
  // without PCRs is then sent as it comes, as before).
  static constexpr std::size_t kMaxHeld = 16384;
  // A PCR further than this from the previous one is a discontinuity.
  static constexpr std::uint64_t kMaxPcrInterval = kPcrHz;
  // Packets after the last PCR are timed at the last rate once they span this much.
  static constexpr std::uint64_t kMaxHold = kPcrHz / 5;

  // Adds packets; calls `emit` for every datagram whose time is now known, in order.
  void push(std::span<const TsPacket> packets, const Emit& emit);
  // End of stream: times what is left at the last rate and emits it (the last datagram may be short).
  void finish(const Emit& emit);
  [[nodiscard]] const SchedulerStats& stats() const { return stats_; }

 private:
  void add(const TsPacket& packet);
  void on_pcr(std::uint64_t pcr, bool discontinuity);
  void time_untimed(std::uint64_t delta, std::uint64_t count);  // the last `count` untimed, over `delta`
  void extrapolate_untimed();
  void emit_ready(const Emit& emit, bool all);
  [[nodiscard]] std::size_t untimed_queued() const { return queue_.size() - times_.size(); }

  std::deque<TsPacket> queue_;       // not yet emitted
  std::deque<std::uint64_t> times_;  // times of the first times_.size() packets of queue_
  std::optional<std::uint16_t> pcr_pid_;
  bool rate_known_ = false;
  std::size_t first_pcr_index_ = 0;  // before the rate is known: index in queue_ of the first PCR
  bool first_pcr_seen_ = false;
  std::uint64_t last_pcr_ = 0;       // raw PCR (or where it would be, after a bridged gap)
  std::uint64_t last_pcr_time_ = 0;  // our stream time at the last PCR
  std::uint64_t since_pcr_ = 0;      // packets after the last PCR (emitted or not)
  std::uint64_t rate_ticks_ = 0;     // the last rate: rate_ticks_ per rate_packets_
  std::uint64_t rate_packets_ = 1;
  SchedulerStats stats_;
};

// Maps stream time to steady_clock and waits for each datagram's departure.
class DepartureClock {
 public:
  static constexpr std::chrono::milliseconds kMaxLateness{200};
  static constexpr std::chrono::microseconds kWindow{1000};
  static constexpr std::chrono::microseconds kWindowMargin{10};
  // Sleeps until `datagram` is due (at once when it has no time).
  void wait(const ScheduledDatagram& datagram);
  // Call once the datagram has been handed to the socket: the window counts departures from the
  // moment they are certainly gone.
  void departed();
  [[nodiscard]] std::uint64_t reanchors() const { return reanchors_; }

 private:
  std::optional<std::chrono::steady_clock::time_point> anchor_wall_;
  std::uint64_t anchor_time_ = 0;
  std::array<std::chrono::steady_clock::time_point, 64> recent_{};  // the last departures, a ring
  std::size_t recent_next_ = 0;
  std::size_t recent_count_ = 0;
  std::uint64_t reanchors_ = 0;
};

}  // namespace usher::streams
