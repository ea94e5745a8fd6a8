#include "usher/streams/packet_sync.h"

#include <cstring>

namespace usher::streams {

void PacketSync::feed(std::span<const std::uint8_t> data, std::vector<TsPacket>& out) {
  // Fast path: locked, nothing pending, data aligned on packets.
  std::size_t pos = 0;
  if (locked_ && pending_.empty()) {
    while (pos + kPacketSize <= data.size() && data[pos] == kSyncByte) {
      TsPacket& p = out.emplace_back();
      std::memcpy(p.bytes.data(), data.data() + pos, kPacketSize);
      pos += kPacketSize;
    }
    if (pos == data.size()) return;
  }
  pending_.insert(pending_.end(), data.begin() + static_cast<std::ptrdiff_t>(pos), data.end());

  std::size_t i = 0;
  while (i + kPacketSize <= pending_.size()) {
    if (pending_[i] == kSyncByte) {
      const bool confirmed = i + kPacketSize < pending_.size()
                                 ? pending_[i + kPacketSize] == kSyncByte
                                 : locked_;
      if (i + kPacketSize == pending_.size() && !locked_) break;  // wait for the next sync byte
      if (confirmed || locked_) {
        if (!locked_) locked_ = true;
        TsPacket& p = out.emplace_back();
        std::memcpy(p.bytes.data(), pending_.data() + i, kPacketSize);
        i += kPacketSize;
        continue;
      }
    }
    // Lost or never had sync: skip a byte and look again.
    if (locked_) ++resyncs_;
    locked_ = false;
    ++discarded_;
    ++i;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(i));
}

void PacketSync::finish(std::vector<TsPacket>& out) {
  std::size_t i = 0;
  while (i < pending_.size() && pending_[i] != kSyncByte) ++i;
  discarded_ += i;
  if (pending_.size() - i >= kPacketSize) {
    TsPacket& p = out.emplace_back();
    std::memcpy(p.bytes.data(), pending_.data() + i, kPacketSize);
    i += kPacketSize;
  }
  discarded_ += pending_.size() - i;
  pending_.clear();
}

}  // namespace usher::streams
