// StreamClock: stream time of each packet, derived from PCRs.
//
// A scrambler places crypto periods and ECM repetitions in stream time, not wall time, so that a
// file is scrambled the same way however fast it is read. The clock follows the first PID that
// carries PCRs, measures the bitrate between PCRs and interpolates the time of the packets in
// between. It stays monotonic across PCR wraps and discontinuities. Without PCRs it counts packets at
// an assumed bitrate and says so (pcr_seen() false).
#pragma once

#include <cstdint>
#include <optional>

#include "usher/streams/ts_packet.h"

namespace usher::streams {

class StreamClock {
 public:
  explicit StreamClock(std::uint64_t assumed_bitrate = 10'000'000) : bitrate_(assumed_bitrate) {}

  // Advances the clock by one packet (call for every packet, in order).
  void observe(const TsPacket& packet);
  // Stream time of the last observed packet, in 27 MHz units since the first packet.
  [[nodiscard]] std::uint64_t now() const { return now_; }
  [[nodiscard]] double seconds() const { return static_cast<double>(now_) / kPcrHz; }
  [[nodiscard]] bool pcr_seen() const { return pcr_pid_.has_value(); }
  [[nodiscard]] bool bitrate_measured() const { return measured_; }
  [[nodiscard]] std::uint64_t bitrate() const { return bitrate_; }

 private:
  std::optional<std::uint16_t> pcr_pid_;
  std::uint64_t last_pcr_ = 0;          // raw PCR value
  std::uint64_t last_pcr_time_ = 0;     // our time at that PCR
  std::uint64_t packets_since_pcr_ = 0;
  std::uint64_t now_ = 0;
  std::uint64_t bitrate_;
  bool measured_ = false;
};

}  // namespace usher::streams
