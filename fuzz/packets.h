// Cuts fuzzer input into whole TS packets (a trailing partial packet is dropped).
#pragma once

#include <cstring>
#include <vector>

#include "usher/streams/ts_packet.h"

inline std::vector<usher::streams::TsPacket> fuzz_packets(const std::uint8_t* data, std::size_t size) {
  std::vector<usher::streams::TsPacket> in;
  for (std::size_t i = 0; i + usher::streams::kPacketSize <= size; i += usher::streams::kPacketSize) {
    std::memcpy(in.emplace_back().bytes.data(), data + i, usher::streams::kPacketSize);
  }
  return in;
}
