// SyntheticMux: a hand-built multiplex for tests and benchmarks where a generated H.264 stream is
// not needed: PAT, one PMT per service, elementary-stream packets with pseudo-random payloads,
// PCRs at a steady bitrate (on the first service's video PID), optional null packets, services at
// equal or at given rates. Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <vector>

#include "usher/streams/section.h"
#include "usher/streams/ts_packet.h"

namespace usher::testing {

struct SyntheticMuxOptions {
  std::vector<std::uint16_t> services{1};  // program_numbers; PMT PID 0x100+i, ES PIDs 0x200+2i, 0x201+2i
  double seconds = 2.0;
  std::uint64_t bitrate = 4'000'000;
  double null_fraction = 0.0;  // share of null packets
  // When set (one per service): each service's elementary-stream rate in bit/s, its video and audio
  // PIDs taking turns, packets evenly spaced; what is left of `bitrate` after them and the PSI is
  // null packets (null_fraction unused). Otherwise the services share the rate equally.
  std::vector<std::uint64_t> service_bitrates;
  std::uint32_t seed = 1;
};

std::vector<streams::TsPacket> make_synthetic_mux(const SyntheticMuxOptions& options);

// ES PIDs of service index i in a synthetic mux.
inline std::uint16_t synthetic_video_pid(std::size_t i) { return static_cast<std::uint16_t>(0x200 + 2 * i); }
inline std::uint16_t synthetic_audio_pid(std::size_t i) { return static_cast<std::uint16_t>(0x201 + 2 * i); }

// Packets of one PID, in order.
inline std::vector<streams::TsPacket> on_pid(const std::vector<streams::TsPacket>& packets, std::uint16_t pid) {
  std::vector<streams::TsPacket> out;
  for (const auto& p : packets) {
    if (p.pid() == pid) out.push_back(p);
  }
  return out;
}

// The sections carried on one PID, reassembled, in order.
inline std::vector<std::vector<std::uint8_t>> sections_on(const std::vector<streams::TsPacket>& packets, std::uint16_t pid) {
  std::vector<std::vector<std::uint8_t>> out;
  streams::SectionAssembler a([&](auto s) { out.emplace_back(s.begin(), s.end()); });
  for (const auto& p : packets) {
    if (p.pid() == pid) a.feed(p);
  }
  return out;
}

}  // namespace usher::testing
