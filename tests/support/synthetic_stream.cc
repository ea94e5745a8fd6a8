#include "synthetic_stream.h"

#include <random>

#include "usher/streams/psi.h"

namespace usher::testing {

std::vector<streams::TsPacket> make_synthetic_mux(const SyntheticMuxOptions& o) {
  using streams::TsPacket;
  std::mt19937 rng(o.seed);
  const auto total = static_cast<std::size_t>(o.seconds * static_cast<double>(o.bitrate) / (188.0 * 8));
  std::vector<TsPacket> out;
  out.reserve(total);

  streams::Pat pat;
  pat.transport_stream_id = 1;
  streams::SectionPacketizer pat_pz(streams::kPatPid);
  std::vector<std::vector<std::uint8_t>> pmts;
  std::vector<streams::SectionPacketizer> pmt_pz;
  for (std::size_t i = 0; i < o.services.size(); ++i) {
    const auto pmt_pid = static_cast<std::uint16_t>(0x100 + i);
    pat.programs.push_back({o.services[i], pmt_pid});
    streams::Pmt pmt;
    pmt.program_number = o.services[i];
    pmt.pcr_pid = synthetic_video_pid(i);
    pmt.streams.push_back({0x1B, synthetic_video_pid(i), {}});
    pmt.streams.push_back({0x0F, synthetic_audio_pid(i), {}});
    pmts.push_back(pmt.serialize());
    pmt_pz.emplace_back(pmt_pid);
  }
  const auto pat_section = pat.serialize();
  std::vector<std::uint8_t> cc(8192, 0);
  const std::uint64_t psi_every = std::max<std::uint64_t>(1, o.bitrate / (188 * 8) / 10);  // 10 times a second
  const std::uint64_t pcr_every = std::max<std::uint64_t>(1, o.bitrate / (188 * 8) / 25);
  std::uniform_real_distribution<double> unit(0, 1);
  std::size_t es_turn = 0;
  std::vector<std::uint64_t> sent(o.services.size(), 0);  // ES packets of each service so far (given rates)
  std::uint64_t last_pcr = 0;
  bool first_pcr = true;
  while (out.size() < total) {
    const std::uint64_t n = out.size();
    if (n % psi_every == 0) {
      pat_pz.packetize(pat_section, out);
      for (std::size_t i = 0; i < pmts.size(); ++i) pmt_pz[i].packetize(pmts[i], out);
      continue;
    }
    std::size_t svc = 0;
    bool video = true;
    if (!o.service_bitrates.empty()) {
      // Of the services whose next packet is due (its place at the service's rate reached), the one
      // due earliest goes; none due: a null.
      const auto& rate = o.service_bitrates;
      std::size_t due = o.services.size();
      for (std::size_t i = 0; i < o.services.size(); ++i) {
        if (sent[i] * o.bitrate > n * rate[i]) continue;
        if (due == o.services.size() || sent[i] * rate[due] < sent[due] * rate[i]) due = i;
      }
      if (due == o.services.size()) {
        out.push_back(TsPacket::null_packet());
        continue;
      }
      svc = due;
      video = sent[svc] % 2 == 0;
      ++sent[svc];
    } else {
      if (o.null_fraction > 0 && unit(rng) < o.null_fraction) {
        out.push_back(TsPacket::null_packet());
        continue;
      }
      svc = (es_turn / 2) % o.services.size();
      video = es_turn % 2 == 0;
      ++es_turn;
    }
    const std::uint16_t pid = video ? synthetic_video_pid(svc) : synthetic_audio_pid(svc);
    TsPacket p = TsPacket::null_packet();
    p.set_pid(pid);
    p.set_cc(cc[pid]++);
    const bool with_pcr = video && svc == 0 && (first_pcr || n - last_pcr >= pcr_every);
    if (with_pcr) {
      first_pcr = false;
      last_pcr = n;
    }
    if (with_pcr) {
      p.set_adaptation_payload(true, true);
      p.bytes[4] = 7;
      p.bytes[5] = 0x10;
      p.set_pcr(n * 188 * 8 * streams::kPcrHz / o.bitrate);
    }
    for (auto& b : p.payload()) b = static_cast<std::uint8_t>(rng());
    out.push_back(p);
  }
  out.resize(total);
  return out;
}

}  // namespace usher::testing
