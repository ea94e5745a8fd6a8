#include "usher/streams/ts_packet.h"

#include <algorithm>

namespace usher::streams {

TsPacket TsPacket::null_packet() {
  TsPacket p;
  p.bytes.fill(0xFF);
  p.bytes[0] = kSyncByte;
  p.bytes[1] = 0x1F;
  p.bytes[2] = 0xFF;
  p.bytes[3] = 0x10;
  return p;
}

void TsPacket::set_pcr(std::uint64_t pcr27) {
  const std::uint64_t base = (pcr27 / 300) & ((std::uint64_t{1} << 33) - 1);
  const std::uint64_t ext = pcr27 % 300;
  bytes[6] = static_cast<std::uint8_t>(base >> 25);
  bytes[7] = static_cast<std::uint8_t>(base >> 17);
  bytes[8] = static_cast<std::uint8_t>(base >> 9);
  bytes[9] = static_cast<std::uint8_t>(base >> 1);
  bytes[10] = static_cast<std::uint8_t>(((base & 1) << 7) | 0x7E | ((ext >> 8) & 1));
  bytes[11] = static_cast<std::uint8_t>(ext & 0xFF);
}

bool ContinuityChecker::check(const TsPacket& packet) {
  const std::uint16_t pid = packet.pid();
  if (pid == kNullPid) return true;
  auto& last = last_[pid];
  const auto cc = static_cast<std::int8_t>(packet.cc());
  if (last < 0 || packet.discontinuity()) {
    last = cc;
    return true;
  }
  bool ok;
  if (!packet.has_payload()) {
    ok = cc == last;
  } else {
    ok = cc == ((last + 1) & 0x0F) || cc == last;  // one duplicate packet is allowed
  }
  last = cc;
  if (!ok) ++errors_;
  return ok;
}

}  // namespace usher::streams
