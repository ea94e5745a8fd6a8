// RTP for MPEG-TS (RFC 3550 header, RFC 2250 MP2T payload type 33): the header a sender writes in
// front of each datagram of 7 TS packets, and the receiver side that strips it, puts reordered
// datagrams back in order and counts what was lost, reordered or duplicated.
//
//   RtpReceiver rx;
//   std::vector<std::uint8_t> ts;
//   rx.receive(datagram, ts);        // the TS bytes now in sequence order (maybe none: held)
//   rx.stats().lost                  // sequence numbers never received
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "usher/core/result.h"

namespace usher::streams {

inline constexpr std::uint8_t kRtpVersion = 2;
inline constexpr std::uint8_t kRtpPayloadMp2t = 33;  // RFC 3551: MP2T, 90 kHz clock
inline constexpr std::size_t kRtpHeaderSize = 12;

struct RtpHeader {
  std::uint8_t payload_type = kRtpPayloadMp2t;
  bool marker = false;
  std::uint16_t sequence = 0;
  std::uint32_t timestamp = 0;  // 90 kHz
  std::uint32_t ssrc = 0;
};

// The 12-byte fixed header (no CSRC, no extension, no padding).
std::array<std::uint8_t, kRtpHeaderSize> write_rtp_header(const RtpHeader& header);

// A parsed datagram: its header and where the payload lies (after CSRCs and any header extension,
// before any padding).
struct RtpDatagram {
  RtpHeader header;
  std::span<const std::uint8_t> payload;
};
// The datagram's header and payload if it is RTP version 2 with consistent CSRC count, extension and
// padding lengths; else Errc::malformed saying which.
Result<RtpDatagram> parse_rtp(std::span<const std::uint8_t> datagram);
// True when `datagram` is RTP carrying MPEG-TS: version 2, payload type 33, and a payload of whole
// 188-byte packets starting with a sync byte. A plain TS datagram starts with 0x47 (version 1 in
// RTP's first two bits), so the two never look alike.
bool looks_like_rtp_mp2t(std::span<const std::uint8_t> datagram);

// What an RTP input saw, by sequence number. Every datagram refused or not delivered is counted
// once; `lost` is exactly the sequence numbers whose payload never reached the output.
struct RtpInputStats {
  std::uint64_t datagrams = 0;   // RTP datagrams received (payload type 33), duplicates included
  std::uint64_t delivered = 0;   // datagrams whose payload went out, in sequence order
  std::uint64_t lost = 0;        // sequence numbers given up on (never arrived, or arrived too late)
  std::uint64_t reordered = 0;   // arrived after a later sequence number, still in time: put back in order
  std::uint64_t late = 0;        // arrived after their gap was given up (counted in lost too): dropped
  std::uint64_t duplicates = 0;  // a sequence number already received: dropped
  std::uint64_t refused = 0;     // not RTP version 2 carrying MP2T (payload type, lengths): dropped
  std::uint64_t restarts = 0;    // a new SSRC or a sequence jump too large to be loss: counting restarted
};

// Receives RTP datagrams of one stream. Datagrams after a gap are held (up to `reorder_depth`) so a
// late one can be put back in place; past that the gap is given up as lost. release_held() gives
// up every gap now (the source calls it when nothing has arrived for a while, and at the end).
class RtpReceiver {
 public:
  static constexpr std::size_t kDefaultReorderDepth = 32;
  // A jump forward of more than this many sequence numbers is a restart, not a loss (RFC 3550 A.1).
  static constexpr std::int32_t kMaxDropout = 3000;
  // How far back a sequence number is remembered (to tell a duplicate from a late one).
  static constexpr std::size_t kHistory = 1024;

  explicit RtpReceiver(std::size_t reorder_depth = kDefaultReorderDepth) : reorder_depth_(reorder_depth) {}

  // Takes one datagram; appends to `out` the payloads that are now in order.
  void receive(std::span<const std::uint8_t> datagram, std::vector<std::uint8_t>& out);
  // Gives up every gap: appends the held payloads, in order, counting the gaps as lost.
  void release_held(std::vector<std::uint8_t>& out);
  [[nodiscard]] bool holding() const { return !held_.empty(); }
  [[nodiscard]] const RtpInputStats& stats() const { return stats_; }

 private:
  void deliver(std::uint64_t extended, std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out);
  void drain(std::vector<std::uint8_t>& out);
  void give_up_first_gap(std::vector<std::uint8_t>& out);
  [[nodiscard]] bool seen(std::uint64_t extended) const;

  std::size_t reorder_depth_;
  RtpInputStats stats_;
  bool started_ = false;
  std::uint32_t ssrc_ = 0;
  std::uint64_t expected_ = 0;                               // extended sequence number of the next datagram to deliver
  std::uint64_t highest_ = 0;                                // highest extended sequence number received
  std::map<std::uint64_t, std::vector<std::uint8_t>> held_;  // after a gap, by extended sequence number
  std::array<std::uint64_t, kHistory> delivered_{};          // extended sequence + 1 of what was delivered, by slot
};

}  // namespace usher::streams
