#include "usher/streams/stream_clock.h"

namespace usher::streams {
namespace {
constexpr std::uint64_t kPcrWrap = (std::uint64_t{1} << 33) * 300;
constexpr std::uint64_t kBitsPerPacket = kPacketSize * 8;
}  // namespace

void StreamClock::observe(const TsPacket& packet) {
  ++packets_since_pcr_;
  const auto pcr = packet.pcr();
  if (pcr && !pcr_pid_) {
    pcr_pid_ = packet.pid();
    last_pcr_ = *pcr;
    last_pcr_time_ = now_;
    packets_since_pcr_ = 0;
    return;
  }
  if (pcr && packet.pid() == *pcr_pid_) {
    const std::uint64_t delta = (*pcr + kPcrWrap - last_pcr_) % kPcrWrap;
    // A jump of more than a second is a discontinuity: keep interpolating instead.
    if (delta > 0 && delta < kPcrHz && packets_since_pcr_ > 0) {
      bitrate_ = packets_since_pcr_ * kBitsPerPacket * kPcrHz / delta;
      measured_ = true;
      now_ = std::max(now_, last_pcr_time_ + delta);
    }
    last_pcr_ = *pcr;
    last_pcr_time_ = now_;
    packets_since_pcr_ = 0;
    return;
  }
  if (bitrate_ > 0) {
    now_ = std::max(now_, last_pcr_time_ + packets_since_pcr_ * kBitsPerPacket * kPcrHz / bitrate_);
  }
}

}  // namespace usher::streams
