// Latency of a transport-stream transform (headend Scrambler, STB Descrambler) in stream time, for
// tests and benchmarks: the transform is fed one packet at a time, as a live input would be, and each
// packet's wait is the stream time of the last input packet consumed before it came out minus its
// own. The k-th output packet on a PID is taken to be the k-th input packet on it (true of the
// elementary streams, which neither transform reorders, adds to or drops from while running).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "usher/streams/stream_clock.h"
#include "usher/streams/ts_packet.h"

namespace usher::testing {

// Stream time of each packet (27 MHz units), from its PCRs, as StreamClock tells it.
inline std::vector<std::uint64_t> stream_times(const std::vector<streams::TsPacket>& packets) {
  streams::StreamClock clock;
  std::vector<std::uint64_t> t;
  t.reserve(packets.size());
  for (const auto& p : packets) {
    clock.observe(p);
    t.push_back(clock.now());
  }
  return t;
}

struct PacketWaits {
  std::map<std::uint16_t, std::vector<std::uint64_t>> by_pid;  // 27 MHz units, in output order

  [[nodiscard]] std::uint64_t longest(std::uint16_t pid) const {
    const auto& w = by_pid.at(pid);
    return w.empty() ? 0 : *std::max_element(w.begin(), w.end());
  }
  // The q-quantile (0..1, nearest rank) of the waits on the given PIDs together.
  [[nodiscard]] std::uint64_t quantile(const std::vector<std::uint16_t>& pids, double q) const {
    std::vector<std::uint64_t> all;
    for (auto pid : pids) all.insert(all.end(), by_pid.at(pid).begin(), by_pid.at(pid).end());
    if (all.empty()) return 0;
    const auto rank = static_cast<std::size_t>(q * static_cast<double>(all.size() - 1) + 0.5);
    std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(rank), all.end());
    return all[rank];
  }
  [[nodiscard]] std::size_t count() const {
    std::size_t n = 0;
    for (const auto& [pid, w] : by_pid) n += w.size();
    return n;
  }
};

// Feeds in[from..] one packet at a time to `t` (process(span, out)), calling on_each(i, out) after
// each with what came out, and records the waits of the packets on `pids`. Input packets before
// `measured_from` are fed but their waits not recorded (a start-up survey holds those).
template <typename Transform, typename OnEach>
PacketWaits feed_one_by_one(Transform& t, const std::vector<streams::TsPacket>& in, const std::vector<std::uint64_t>& times,
                            std::size_t from, const std::vector<std::uint16_t>& pids, OnEach&& on_each,
                            const std::size_t* measured_from = nullptr) {
  PacketWaits w;
  std::map<std::uint16_t, std::vector<std::size_t>> inputs;  // input indexes by PID
  std::map<std::uint16_t, std::size_t> emitted;
  for (auto pid : pids) w.by_pid[pid];
  std::vector<streams::TsPacket> out;
  for (std::size_t i = from; i < in.size(); ++i) {
    if (w.by_pid.contains(in[i].pid())) inputs[in[i].pid()].push_back(i);
    out.clear();
    t.process(std::span(in).subspan(i, 1), out);
    on_each(i, out);
    for (const auto& p : out) {
      auto it = w.by_pid.find(p.pid());
      if (it == w.by_pid.end()) continue;
      const std::size_t source = inputs[p.pid()].at(emitted[p.pid()]++);
      if (measured_from != nullptr && source < *measured_from) continue;
      it->second.push_back(times[i] - times[source]);
    }
  }
  return w;
}

}  // namespace usher::testing
