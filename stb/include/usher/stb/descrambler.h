// Descrambler: the STB's transport-stream transform. It demultiplexes PAT, PMT and CAT, takes the
// EMMs addressed to its STB, opens each service's ECMs in the secure element, descrambles with
// libdvbcsa's bitslice batches and hands back clear TS (scrambling bits cleared). Packets of a
// service it is not entitled to pass through still scrambled, and the STB says why.
//
//   Descrambler d(&secure_element, {});
//   while (source->read(in, 4096)) { d.process(in, out); sink->write(out); ... }
//   d.finish(out);
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "usher/core/csa.h"
#include "usher/core/log.h"
#include "usher/stb/secure_element.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"
#include "usher/streams/stream_clock.h"

namespace usher::stb {

struct DescramblerConfig {
  std::optional<FixedControlWords> fixed_cws;  // test mode (--cw-file): no ECMs needed
  bool parental_unlocked = false;              // the viewer entered the PIN for this session
  // A packet waits at most this much stream time (from the PCRs) for its CSA batch to fill; also
  // bounds how long the first clear packet waits after a zap once the key is known.
  std::uint32_t max_hold_ms = 20;
};

struct DescramblerStats {
  std::uint64_t packets_in = 0;
  std::uint64_t packets_out = 0;
  std::uint64_t packets_descrambled = 0;
  std::uint64_t packets_left_scrambled = 0;  // no key for them (not entitled, or before the first ECM)
  std::uint64_t ecm_accepted = 0;            // distinct ECMs opened
  std::uint64_t ecm_denied = 0;              // distinct ECMs refused (not entitled, forged, malformed)
  std::uint64_t ecm_stale = 0;               // distinct ECMs refused as older than the one in use (replayed, reordered)
  std::uint64_t emm_taken = 0;
  std::uint64_t emm_duplicate = 0;
  std::uint64_t emm_refused = 0;
  std::uint64_t emm_other_stb = 0;
  std::uint64_t store_failures = 0;          // EMMs or ticket updates the store could not keep (full disk): what is held still plays
  std::uint64_t cc_errors = 0;
  std::uint64_t sections_dropped = 0;
};

struct ServiceStatus {
  std::uint16_t service_id = 0;
  bool descrambling = false;
  std::string reason;  // why not, when not
};

class Descrambler {
 public:
  // `se` may be null only in fixed control word mode.
  Descrambler(SecureElement* se, DescramblerConfig config);
  Descrambler(const Descrambler&) = delete;
  Descrambler& operator=(const Descrambler&) = delete;
  ~Descrambler();

  void process(std::span<const streams::TsPacket> in, std::vector<streams::TsPacket>& out);
  void finish(std::vector<streams::TsPacket>& out);

  [[nodiscard]] DescramblerStats stats() const;
  [[nodiscard]] std::vector<ServiceStatus> services() const;
  // Stream time of the input, from its PCRs (interpolated between them).
  [[nodiscard]] const streams::StreamClock& clock() const { return clock_; }

 private:
  struct Service;
  void handle(const streams::TsPacket& packet);
  void on_pat(std::span<const std::uint8_t> section);
  void on_cat(std::span<const std::uint8_t> section);
  void on_pmt(std::uint16_t pid, std::span<const std::uint8_t> section);
  void on_ecm(Service& s, std::span<const std::uint8_t> section);
  void on_emm(std::span<const std::uint8_t> section);
  void deny(Service& s, const std::string& reason);
  void store_failed(const Error& error);

  SecureElement* se_;
  DescramblerConfig config_;
  Logger log_{"stb"};
  streams::StreamClock clock_;
  CsaPipeline pipeline_{CsaDirection::decrypt};
  streams::ContinuityChecker continuity_;
  std::map<std::uint16_t, std::unique_ptr<streams::SectionAssembler>> assemblers_;  // by PID
  std::map<std::uint16_t, std::unique_ptr<Service>> services_;                      // by PMT PID
  std::map<std::uint16_t, Service*> by_es_pid_;
  std::optional<std::uint16_t> emm_pid_;
  CsaPipeline::Slot fixed_slot_[2] = {CsaPipeline::kNoSlot, CsaPipeline::kNoSlot};
  DescramblerStats stats_;
};

}  // namespace usher::stb
