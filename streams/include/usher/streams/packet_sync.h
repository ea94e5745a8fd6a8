// PacketSync: turns an arbitrary byte stream (file, pipe, datagrams) into aligned TS packets.
//
// It locks on a 0x47 sync byte that is followed by another one 188 bytes later, resynchronises after
// garbage, and counts what it had to throw away, so a file whose size is not a multiple of 188 or
// that starts mid-packet still yields every whole packet it holds.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/streams/ts_packet.h"

namespace usher::streams {

class PacketSync {
 public:
  // Appends every whole packet found in `data` (together with bytes kept from earlier calls).
  void feed(std::span<const std::uint8_t> data, std::vector<TsPacket>& out);
  // End of input: a last packet that could not be confirmed by a following sync byte is emitted if
  // it starts with 0x47; any other leftover bytes are counted as discarded.
  void finish(std::vector<TsPacket>& out);
  [[nodiscard]] std::uint64_t discarded_bytes() const { return discarded_; }
  [[nodiscard]] std::uint64_t resyncs() const { return resyncs_; }

 private:
  std::vector<std::uint8_t> pending_;
  bool locked_ = false;
  std::uint64_t discarded_ = 0;
  std::uint64_t resyncs_ = 0;
};

}  // namespace usher::streams
