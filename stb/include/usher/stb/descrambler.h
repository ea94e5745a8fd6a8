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
#include <span>
#include <string>
#include <vector>

#include "usher/streams/csa.h"
#include "usher/core/log.h"
#include "usher/stb/secure_element.h"
#include "usher/streams/pid_map.h"
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
  std::uint64_t emm_other_stb = 0;          // filtered on the clear header: another STB, group or key version
  std::uint64_t emm_nothing_for_stb = 0;    // authentic, but nothing in it for this STB (bit clear, items skipped)
  std::uint64_t store_failures = 0;          // EMMs or ticket updates the store could not keep (full disk): what is held still plays
  std::uint64_t cc_errors = 0;
  std::uint64_t sections_dropped = 0;
};

// What became of a service by the end of a run (`usher stb run` says it per service and exits 3
// when one the viewer asked for is not watchable).
enum class ServiceOutcome {
  descrambled,      // its keys were taken and it is descrambling
  not_scrambled,    // clear in the stream: passed through as it is, watchable without keys
  no_entitlement,   // ECMs refused: no subscription, no ticket for its event, expired or revoked
  parental_lock,    // rated above this STB's parental limit and no PIN given
  no_ecm,           // scrambled, but no ECM for this STB's CA system came (or none is announced)
  bad_ecm,          // ECMs that do not open: damaged, forged, another operator's, for another service
  other_ca_system,  // scrambled under another CA system only
  no_pmt,           // listed in the PAT, but its PMT never came
  not_in_stream,    // asked for, but not in the stream's PAT
};
// "descrambled", "not scrambled", "no entitlement", ... as written in `stb run`'s JSON counters.
[[nodiscard]] const char* to_string(ServiceOutcome outcome);
// Whether the viewer gets the programme: descrambled, or clear in the stream.
[[nodiscard]] bool watchable(ServiceOutcome outcome);

struct ServiceStatus {
  std::uint16_t service_id = 0;
  bool descrambling = false;
  std::string reason;  // why not, when not (for not_scrambled too: "not scrambled ...")
  ServiceOutcome outcome = ServiceOutcome::no_ecm;
  std::uint64_t packets_descrambled = 0;     // of its elementary streams
  std::uint64_t packets_left_scrambled = 0;  // of its elementary streams, passed on without a key
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
  // Every service of the stream's PAT, by PMT PID.
  [[nodiscard]] std::vector<ServiceStatus> services() const;
  // Stream time of the input, from its PCRs (interpolated between them).
  [[nodiscard]] const streams::StreamClock& clock() const { return clock_; }
  // The services asked for, in that order (not_in_stream for one the PAT does not list), or every
  // service of the stream when `requested` is empty.
  [[nodiscard]] std::vector<ServiceStatus> services(std::span<const std::uint16_t> requested) const;

 private:
  struct Service;
  void handle(const streams::TsPacket& packet);
  void on_pat(std::span<const std::uint8_t> section);
  void on_cat(std::span<const std::uint8_t> section);
  void on_pmt(std::uint16_t pid, std::span<const std::uint8_t> section);
  void on_ecm(Service& s, std::span<const std::uint8_t> section);
  void on_emm(std::span<const std::uint8_t> section);
  void deny(Service& s, ServiceOutcome outcome, const std::string& reason);
  [[nodiscard]] ServiceStatus status_of(const Service& s) const;
  void store_failed(const Error& error);

  SecureElement* se_;
  DescramblerConfig config_;
  Logger log_{"stb"};
  streams::StreamClock clock_;
  CsaPipeline pipeline_{CsaDirection::decrypt};
  streams::ContinuityChecker continuity_;
  streams::PidMap<std::unique_ptr<streams::SectionAssembler>> assemblers_;
  std::map<std::uint16_t, std::unique_ptr<Service>> services_;                      // by PMT PID
  streams::PidMap<Service*> by_es_pid_;
  std::optional<std::uint16_t> emm_pid_;
  bool pat_seen_ = false;
  CsaPipeline::Slot fixed_slot_[2] = {CsaPipeline::kNoSlot, CsaPipeline::kNoSlot};
  DescramblerStats stats_;
};

}  // namespace usher::stb
