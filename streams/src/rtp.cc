#include "usher/streams/rtp.h"

#include <algorithm>
#include <string>

#include "usher/streams/ts_packet.h"

namespace usher::streams {
namespace {
// Extended sequence numbers start here so that stepping back from the first one stays positive.
constexpr std::uint64_t kFirstExtended = std::uint64_t{1} << 32;
}  // namespace

std::array<std::uint8_t, kRtpHeaderSize> write_rtp_header(const RtpHeader& h) {
  return {static_cast<std::uint8_t>(kRtpVersion << 6),
          static_cast<std::uint8_t>((h.marker ? 0x80 : 0) | (h.payload_type & 0x7F)),
          static_cast<std::uint8_t>(h.sequence >> 8),
          static_cast<std::uint8_t>(h.sequence),
          static_cast<std::uint8_t>(h.timestamp >> 24),
          static_cast<std::uint8_t>(h.timestamp >> 16),
          static_cast<std::uint8_t>(h.timestamp >> 8),
          static_cast<std::uint8_t>(h.timestamp),
          static_cast<std::uint8_t>(h.ssrc >> 24),
          static_cast<std::uint8_t>(h.ssrc >> 16),
          static_cast<std::uint8_t>(h.ssrc >> 8),
          static_cast<std::uint8_t>(h.ssrc)};
}

Result<RtpDatagram> parse_rtp(std::span<const std::uint8_t> d) {
  const auto refuse = [&](const std::string& why) {
    return make_error(Errc::malformed, "RTP datagram of " + std::to_string(d.size()) + " bytes: " + why);
  };
  if (d.size() < kRtpHeaderSize) return refuse("shorter than the 12-byte header");
  if ((d[0] >> 6) != kRtpVersion) return refuse("version " + std::to_string(d[0] >> 6) + ", not 2");
  const bool padding = (d[0] & 0x20) != 0;
  const bool extension = (d[0] & 0x10) != 0;
  std::size_t offset = kRtpHeaderSize + 4 * static_cast<std::size_t>(d[0] & 0x0F);  // CSRCs
  if (d.size() < offset) return refuse("its CSRC count runs past the end");
  if (extension) {
    if (d.size() < offset + 4) return refuse("its header extension runs past the end");
    const std::size_t words = static_cast<std::size_t>(d[offset + 2]) << 8 | d[offset + 3];
    offset += 4 + 4 * words;
    if (d.size() < offset) return refuse("its header extension runs past the end");
  }
  std::size_t end = d.size();
  if (padding) {
    const std::size_t pad = d[end - 1];
    if (pad == 0 || pad > end - offset) return refuse("padding of " + std::to_string(pad) + " bytes does not fit");
    end -= pad;
  }
  RtpDatagram r;
  r.header.marker = (d[1] & 0x80) != 0;
  r.header.payload_type = d[1] & 0x7F;
  r.header.sequence = static_cast<std::uint16_t>(d[2] << 8 | d[3]);
  r.header.timestamp = static_cast<std::uint32_t>(d[4]) << 24 | static_cast<std::uint32_t>(d[5]) << 16 |
                       static_cast<std::uint32_t>(d[6]) << 8 | d[7];
  r.header.ssrc = static_cast<std::uint32_t>(d[8]) << 24 | static_cast<std::uint32_t>(d[9]) << 16 |
                  static_cast<std::uint32_t>(d[10]) << 8 | d[11];
  r.payload = d.subspan(offset, end - offset);
  return r;
}

namespace {
bool carries_ts(const RtpDatagram& r) {
  return r.header.payload_type == kRtpPayloadMp2t && !r.payload.empty() && r.payload.size() % kPacketSize == 0 &&
         r.payload[0] == kSyncByte;
}
}  // namespace

bool looks_like_rtp_mp2t(std::span<const std::uint8_t> datagram) {
  const auto r = parse_rtp(datagram);
  return r && carries_ts(*r);
}

void RtpReceiver::receive(std::span<const std::uint8_t> datagram, std::vector<std::uint8_t>& out) {
  const auto rtp = parse_rtp(datagram);
  if (!rtp || !carries_ts(*rtp)) {
    ++stats_.refused;
    return;
  }
  ++stats_.datagrams;
  const auto restart = [&] {
    if (started_) {
      release_held(out);
      ++stats_.restarts;
    }
    started_ = true;
    ssrc_ = rtp->header.ssrc;
    expected_ = kFirstExtended + rtp->header.sequence;
    highest_ = expected_;
    delivered_.fill(0);
    deliver(expected_, rtp->payload, out);
    ++expected_;
  };
  if (!started_ || rtp->header.ssrc != ssrc_) return restart();
  // The distance from the expected sequence number, modulo 2^16, as the nearer of the two ways.
  const auto diff = static_cast<std::int16_t>(
      static_cast<std::uint16_t>(rtp->header.sequence - static_cast<std::uint16_t>(expected_)));
  if (diff > kMaxDropout || diff < -static_cast<std::int32_t>(kHistory)) return restart();
  const auto extended = static_cast<std::uint64_t>(static_cast<std::int64_t>(expected_) + diff);
  if (diff < 0) {  // behind what was delivered: again, or too late
    if (seen(extended)) {
      ++stats_.duplicates;
    } else {
      ++stats_.late;
    }
    return;
  }
  if (held_.contains(extended)) {
    ++stats_.duplicates;
    return;
  }
  if (extended < highest_) ++stats_.reordered;
  highest_ = std::max(highest_, extended);
  if (diff == 0) {
    deliver(extended, rtp->payload, out);
    ++expected_;
    drain(out);
    return;
  }
  held_.emplace(extended, std::vector<std::uint8_t>(rtp->payload.begin(), rtp->payload.end()));
  while (held_.size() > reorder_depth_) give_up_first_gap(out);
}

void RtpReceiver::release_held(std::vector<std::uint8_t>& out) {
  while (!held_.empty()) give_up_first_gap(out);
}

void RtpReceiver::deliver(std::uint64_t extended, std::span<const std::uint8_t> payload,
                          std::vector<std::uint8_t>& out) {
  out.insert(out.end(), payload.begin(), payload.end());
  delivered_[extended % kHistory] = extended + 1;
  ++stats_.delivered;
}

void RtpReceiver::drain(std::vector<std::uint8_t>& out) {
  while (!held_.empty() && held_.begin()->first == expected_) {
    deliver(expected_, held_.begin()->second, out);
    held_.erase(held_.begin());
    ++expected_;
  }
}

void RtpReceiver::give_up_first_gap(std::vector<std::uint8_t>& out) {
  const std::uint64_t first = held_.begin()->first;
  stats_.lost += first - expected_;
  expected_ = first;
  drain(out);
}

bool RtpReceiver::seen(std::uint64_t extended) const { return delivered_[extended % kHistory] == extended + 1; }

}  // namespace usher::streams
