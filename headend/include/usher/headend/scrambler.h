// Scrambler: the headend's transport-stream transform. Feed it the packets of a clear multiplex in
// order; it hands back the scrambled multiplex with CA signalling:
//
//  - the elementary streams of the chosen services (default: all) scrambled with DVB-CSA2 through
//    libdvbcsa's bitslice batches; PSI/SI, PCR-only packets, null packets and adaptation fields stay
//    clear;
//  - control words from the CSPRNG, odd/even rotation every crypto period of stream time and at
//    every PPV event's start and end, the next CW announced in the ECM of the current period;
//  - one ECM PID per scrambled service, its ECM repeated every ecm_interval; each control word in it
//    is sealed for its own period's audience: the service key, or while a PPV event is on air that
//    event's key (only ticket holders open it). No event's control word is sealed under a key its
//    non-buyers hold, before, during or after it;
//  - EIT present/following on PID 0x12 for the scrambled services with PPV events (same event ids
//    as their ECMs, the PAT's transport_stream_id), unless the input carries its own EIT;
//  - an SDT naming the scrambled services (catalogue names, free_CA_mode set), or the input's own
//    SDT rewritten in place with free_CA_mode set for them;
//  - the PMT of each scrambled service rewritten with a CA_descriptor (version + 1, new CRC), a CAT
//    whose CA_descriptor points at the EMM PID, and the EMM carousel on that PID.
//
// Inserted packets (CAT, PMT, ECM, EMM, EIT) and the dropped input packets are handled by the
// insertion policy (docs/headend.md): with stuffing in the input, each inserted packet takes the
// place of a null packet (or of a dropped input packet) and every input packet gives exactly one
// output packet, so the rate between PCRs is the input's; a packet that must go at once (the first
// ECM, a rewritten PMT) goes ahead and the next null is given back. Without stuffing (or with `add`)
// they are added to the rate as today. EMMs have a bandwidth share of their own and start after the
// first CAT; there is no EMM burst at start nor when the engine hands over a batch.
//
// A chosen service is never sent in clear. The scrambler first holds the input back (at most
// survey_ms of stream time) until it has the whole PAT and the PMT of every chosen service, and
// refuses the run, having output nothing, if a requested service is missing or has no key, if the
// input is already scrambled (unless pass_scrambled), if a CA PID given is one of the input's PSI
// PIDs, or if no PID is left for the CA streams. CA PIDs are placed where nothing of the input is.
// A service that leaves the PAT later has its packets dropped until it returns.
//
//   Scrambler scrambler(config, keys);
//   while (source->read(in, 4096)) { scrambler.process(in, out); sink->write(out); ... }
//   scrambler.finish(out);
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "usher/core/log.h"
#include "usher/entitlement/messages.h"
#include "usher/entitlement/catalogue.h"
#include "usher/entitlement/protocol.h"
#include "usher/streams/csa.h"
#include "usher/streams/pid_map.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"
#include "usher/streams/stream_clock.h"

namespace usher::headend {

// One EMM of the carousel as the headend holds it: its section (shared, never copied between the
// key source and the scheduler), how soon it must go, and while when it is repeated.
struct EmmEntry {
  std::uint64_t id = 0;  // the engine's queue entry: ids grow with each entry queued
  entitlement::EmmPriority priority = entitlement::EmmPriority::background;
  std::uint64_t carousel_from = 0;   // unix seconds, broadcast time
  std::uint64_t carousel_until = 0;  // inclusive
  std::shared_ptr<const std::vector<std::uint8_t>> section;
  [[nodiscard]] bool live_at(std::uint64_t time) const { return carousel_from <= time && time <= carousel_until; }
  // A group or global EMM (many boxes' renewals and keys), not one box's own.
  [[nodiscard]] bool shared() const { return section && !section->empty() && (*section)[0] != entitlement::kTableEmmUnique; }
};

// The carousel's two passes at the budget. Group and global EMMs (few: one per group and package)
// and unique EMMs (one box each: a million key EMMs) take turns, the shared ones getting at least
// half of what the carousel sends (their share of the bytes if more), so that a box that holds its
// group key, however many boxes there are, catches up with renewals and key rotations within the
// shared pass; a box switched on for the first time needs its key EMM (the unique pass) first.
struct EmmCarouselPasses {
  double shared_seconds = 0;  // stream seconds for every live group and global EMM to go once
  double unique_seconds = 0;  // the same for the unique ones
};

// What the EMM queue gained and lost since a version the key source gave before.
struct EmmChanges {
  std::uint64_t version = 0;  // pass it to the next call
  bool restart = false;       // drop everything held before, then apply
  std::vector<EmmEntry> added;          // in id order
  std::vector<std::uint64_t> removed;   // entry ids
};

// Where the scrambler gets service keys and EMMs: the engine over ZeroMQ (EngineKeySource,
// engine_link.h), or the operator's store in the same process (StoreKeySource, store_key_source.h).
class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual Result<entitlement::ServiceKey> service_key(std::uint16_t service_id) = 0;
  // The service's key current at broadcast time `time` and the next one announced by a rotation,
  // with its start: the scrambler switches to it at that time in the stream. By default the one
  // key of service_key, with no rotation (a source that knows none).
  virtual Result<entitlement::ServiceKeys> service_keys(std::uint16_t service_id, std::uint64_t /*time*/) {
    USHER_TRY(auto key, service_key(service_id));
    return entitlement::ServiceKeys{{key.key_version, std::move(key.key), 0}, std::nullopt};
  }
  // The EMM queue's changes since `version` (0: from the start, as a restart). Cheap when nothing
  // changed: the scrambler asks every second, never for the whole queue again.
  virtual EmmChanges emm_changes(std::uint64_t version) = 0;
  // The PPV event on air on a service at a broadcast time, whose key seals the ECMs meanwhile.
  virtual std::optional<entitlement::EventKey> current_event(std::uint16_t service_id, std::uint64_t time) = 0;
  // The PPV events of a service that end after `time`, earliest first, at most `count` (for the EIT).
  virtual std::vector<entitlement::EventInfo> schedule(std::uint16_t service_id, std::uint64_t time, std::size_t count) = 0;
  // The service's name in the catalogue, for the SDT ("" when unknown: the SDT says "Service N").
  virtual std::string service_name(std::uint16_t /*service_id*/) { return {}; }
};

// Where inserted packets go. automatic: replace_nulls when the input's stuffing (measured during the
// survey) carries what is inserted, else add. replace_nulls: never adds to the rate (a packet that
// must go at once is given back at the next null); with too little stuffing, repetitions wait or
// are skipped and the shortfall is counted and logged. add: inserted packets wait up to
// kInsertionWindowMs for a null, else are added.
enum class InsertPolicy { automatic, replace_nulls, add };
// "auto", "replace-nulls", "add" (the spellings of `headend run --insert`).
Result<InsertPolicy> parse_insert_policy(std::string_view text);

struct ScramblerConfig {
  std::uint16_t ca_system_id = entitlement::kDefaultCaSystemId;
  std::set<std::uint16_t> services;        // empty: every service in the PAT
  std::uint32_t crypto_period_ms = 10'000;
  std::uint32_t ecm_interval_ms = 100;
  std::uint32_t cat_interval_ms = 500;
  std::uint64_t emm_bitrate = 128'000;     // EMMs' bandwidth budget (bit/s of stream time, packets counted
                                           // whole), used to the full while EMMs wait: new ones by priority,
                                           // then the carousel; kEmmBurstMs of it may go at once, never more
  InsertPolicy insert_policy = InsertPolicy::automatic;
  std::uint32_t eit_interval_ms = 2000;    // EIT present/following repetition
  std::uint32_t sdt_interval_ms = 2000;    // our SDT's repetition, when the input has none
  // original_network_id of the SDT and EIT: this one if set, else the input SDT's, else
  // kPrivateOriginalNetworkId (0xFF01, a value for temporary private use).
  std::optional<std::uint16_t> original_network_id;
  std::string provider_name = "Usher";    // in the service_descriptors we write
  // CA PIDs: 0x0020..0x1FFE and not one of the input's PSI PIDs (PAT, CAT, SI, PMTs), else refused;
  // moved to the nearest free PID (downwards, then upwards) if the input uses them.
  std::uint16_t emm_pid = 0x1FF0;
  std::uint16_t ecm_pid_base = 0x1FE0;     // first ECM PID; one per service, downwards
  bool pass_scrambled = false;             // input packets of a chosen service already scrambled pass as
                                           // they are; otherwise the run is refused (or, later, they are dropped)
  std::uint32_t survey_ms = 5000;          // input held back, at most, to find its PAT and PMTs
  std::optional<FixedControlWords> fixed_cws;  // test mode (--cw-file)
  entitlement::AccessCriteria access;
  std::uint64_t start_unix = 0;            // broadcast time of the first packet (0 = now)
  std::uint64_t assumed_bitrate = 10'000'000;  // used until PCRs give the real one
  // A packet waits at most this much stream time for its CSA batch to fill (latency against CPU:
  // a service fills its batches within it from about 10 Mbit/s up).
  std::uint32_t max_hold_ms = 20;
};

struct ScramblerStats {
  std::uint64_t packets_in = 0;
  std::uint64_t packets_out = 0;
  std::uint64_t packets_scrambled = 0;
  std::uint64_t already_scrambled = 0;    // input packets of a chosen service found scrambled
  std::uint64_t packets_dropped = 0;      // of keyless or vanished services, scrambled input, colliding PIDs
  std::uint64_t ecm_sections = 0;
  std::uint64_t emm_sections = 0;
  std::uint64_t pmts_rewritten = 0;
  std::uint64_t nulls_replaced = 0;
  std::uint64_t packets_added = 0;        // to the input's rate
  std::uint64_t packets_borrowed = 0;     // replace_nulls: sent at once ahead of a null given back later
  std::uint64_t nulls_given_back = 0;     // input nulls left out for a packet borrowed earlier
  std::uint64_t nulls_inserted = 0;       // replace_nulls: in place of a dropped input packet
  std::uint64_t inserts_late = 0;         // replace_nulls: waited longer than kLateAfterMs for a null
  std::uint64_t pcrs_restamped = 0;       // replace_nulls: PCRs moved on while packets sent ahead were not given back
  std::uint64_t inserts_unsent = 0;       // replace_nulls: still waiting for a null at the end
  std::uint64_t repetitions_skipped = 0;  // an ECM/CAT/EIT repetition while the last one still waits
  std::uint64_t emm_packets = 0;
  std::uint64_t emm_carousel_entries = 0;  // live on the carousel now
  std::uint64_t emm_carousel_bytes = 0;    // their sections' bytes
  std::uint64_t emm_waiting = 0;           // new EMMs waiting for their first sending
  std::uint64_t input_nulls = 0;
  bool replacing_nulls = false;           // the policy in force (automatic decides after the survey)
  std::uint64_t crypto_periods = 0;
  std::uint64_t eit_sections = 0;
  std::uint64_t sdt_sections = 0;         // written by us or rewritten from the input's
  std::uint64_t services_scrambled = 0;
  std::uint64_t csa_full_batches = 0;
  std::uint64_t csa_partial_batches = 0;
  std::uint64_t input_cc_errors = 0;      // continuity errors in the input (13818-1, 2.4.3.3)
};

// What the scrambler is doing with one service of the input (status lines, metrics).
struct ServiceState {
  enum class Mode {
    waiting,    // chosen; its PMT or first ECM is not out yet
    scrambled,  // its packets go out scrambled
    no_key,     // chosen but no key (or no ECM PID): its packets are dropped, never sent in clear
    vanished,   // no longer in the input's PAT
    clear,      // not chosen (--services): passed in clear
  };
  std::uint16_t service_id = 0;
  Mode mode = Mode::waiting;
  std::uint64_t crypto_period = 0;  // scrambled: the current period's number
  std::uint16_t ecm_pid = 0;
};
// "waiting", "scrambled", "no key", "vanished", "clear".
const char* to_string(ServiceState::Mode mode);

// What can be refused before reading the input: a CA PID out of range or reserved (0x0000-0x001F,
// 0x1FFF), a requested service without a key (it would go out in clear). Errc::invalid_argument or
// Errc::not_found, with a message naming the option or service.
Status validate(const ScramblerConfig& config, KeySource& keys);

class InputSurvey;

class Scrambler {
 public:
  static constexpr std::uint32_t kInsertionWindowMs = 20;
  // The EMM share's burst: this much of it may go at once (at start, with the CAT), never more.
  static constexpr std::uint32_t kEmmBurstMs = 250;
  // replace_nulls: an inserted packet that waits longer than this for a null is counted late (CBR
  // muxers put their stuffing in bursts between frames: tens of milliseconds apart).
  static constexpr std::uint32_t kLateAfterMs = 100;
  // How often the PPV schedule is looked at again within a crypto period (events can be added late).
  static constexpr std::uint32_t kReplanIntervalMs = 1000;
  static constexpr std::uint16_t kPrivateOriginalNetworkId = 0xFF01;

  Scrambler(ScramblerConfig config, KeySource& keys);
  Scrambler(const Scrambler&) = delete;
  Scrambler& operator=(const Scrambler&) = delete;
  ~Scrambler();

  // Processes input packets; appends finished output packets to `out` (some may be held back
  // until their CSA batch is full, at most config.max_hold_ms of stream time).
  void process(std::span<const streams::TsPacket> in, std::vector<streams::TsPacket>& out);
  // End of input: scrambles what is held back and appends it.
  void finish(std::vector<streams::TsPacket>& out);
  // Takes the EMM queue's changes from the key source: new EMMs go first (by priority) within the
  // budget, then the carousel again; expired ones are dropped.
  void refresh_emms();
  // How long a box switched on for the first time waits at most for its EMMs on the carousel
  // (stream seconds at the budget, plus new EMMs ahead of them): its key EMM in the unique pass,
  // then the shared pass. A box that holds its group key waits the shared pass only.
  [[nodiscard]] double emm_carousel_cycle_seconds() const;
  [[nodiscard]] EmmCarouselPasses emm_carousel_passes() const;

  // Set when the scrambler refuses to go on; it outputs nothing from then on. A refusal while the
  // input is surveyed (see above) means that nothing at all was output: report it and stop.
  [[nodiscard]] const std::optional<Error>& refusal() const { return refusal_; }
  [[nodiscard]] bool surveying() const { return survey_ != nullptr; }

  [[nodiscard]] ScramblerStats stats() const;
  // Every service of the input's PAT seen so far, by service_id.
  [[nodiscard]] std::vector<ServiceState> service_states() const;
  [[nodiscard]] const streams::StreamClock& clock() const { return clock_; }
  [[nodiscard]] std::uint16_t emm_pid() const { return emm_pid_; }

 private:
  struct Service;
  struct Pending {
    streams::TsPacket packet;
    std::uint64_t deadline;
    bool urgent;    // must leave before the next input packet
    bool priority;  // replace_nulls: takes the first free slot (a new crypto period's ECM)
  };

  void handle(const streams::TsPacket& packet);
  void survey(bool at_end);
  void refuse(Errc code, const std::string& message);
  void start();
  void on_pat(std::span<const std::uint8_t> section);
  void on_pmt(std::uint16_t pid, std::span<const std::uint8_t> section);
  void on_cat(std::span<const std::uint8_t> section);
  void schedule(bool force);
  void emit_cat(bool now = false);
  void emit_eit(Service& s);
  void emit_sdt();
  void on_sdt(std::span<const std::uint8_t> section);
  void emit_in_place(streams::SectionPacketizer& pz, std::span<const std::uint8_t> section);
  [[nodiscard]] std::uint16_t original_network_id() const;
  void emit_ecm(Service& s, bool now, bool priority = false);
  struct Audience;
  void start_period(Service& s);
  void plan_next_period(Service& s);
  void replan(Service& s);
  void seal_ecm(Service& s);
  Audience audience_at(const Service& s, std::uint64_t time);
  std::uint64_t period_end_after(const Service& s, std::uint64_t start);
  [[nodiscard]] ControlWord next_control_word(std::uint64_t period) const;
  void queue_section(streams::SectionPacketizer& pz, std::span<const std::uint8_t> section, bool now, bool priority = false);
  void emit_now(const streams::TsPacket& packet);
  void flush_inserts();
  const streams::TsPacket& restamped(const streams::TsPacket& packet);
  void out_inserted(Pending& p);
  void emit_inserted_now(streams::TsPacket& packet);
  void free_slot(const streams::TsPacket* input_null);
  void settle_inserts();
  void schedule_emm();
  bool queue_emm(bool now);
  void choose_policy(std::size_t services, std::uint64_t nulls, std::uint64_t ms);
  std::optional<std::uint16_t> allocate_pid(std::uint16_t preferred);
  [[nodiscard]] std::uint64_t ms_to_ticks(std::uint32_t ms) const { return std::uint64_t{ms} * 27'000; }
  [[nodiscard]] std::uint64_t broadcast_time() const;
  [[nodiscard]] std::uint64_t broadcast_time_at(std::uint64_t stream_time) const;

  ScramblerConfig config_;
  KeySource& keys_;
  Logger log_{"headend"};
  streams::StreamClock clock_;
  CsaPipeline pipeline_{CsaDirection::encrypt};
  std::bitset<8192> used_pids_;
  std::bitset<8192> ca_pids_;  // ours: input packets on them are dropped
  std::unique_ptr<InputSurvey> survey_;
  std::vector<streams::TsPacket> surveyed_;  // input held back while surveying
  std::map<std::uint16_t, std::uint16_t> planned_ecm_pids_;  // by service id
  std::optional<Error> refusal_;
  bool warned_collision_ = false;
  bool warned_scrambled_ = false;
  std::map<std::uint16_t, std::unique_ptr<Service>> services_by_pmt_pid_;
  streams::PidMap<Service*> services_by_es_pid_;
  std::set<std::uint16_t> clear_services_;  // in the PAT but not chosen
  streams::ContinuityChecker input_cc_;
  std::unique_ptr<streams::SectionAssembler> pat_assembler_;
  std::unique_ptr<streams::SectionAssembler> cat_assembler_;
  streams::PidMap<std::unique_ptr<streams::SectionAssembler>> pmt_assemblers_;
  std::vector<std::uint8_t> input_cat_descriptors_;
  std::uint8_t cat_version_ = 0;
  streams::SectionPacketizer cat_packetizer_{streams::kCatPid};
  std::uint16_t emm_pid_ = 0;
  std::unique_ptr<streams::SectionPacketizer> emm_packetizer_;
  // The carousel, in id order (the order entries are added); removed ones are left as empty slots
  // until they are half of it, then squeezed out.
  std::vector<EmmEntry> emm_carousel_;
  std::size_t emm_removed_slots_ = 0;
  std::size_t emm_next_ = 0;         // the unique EMMs' round robin
  std::size_t emm_next_shared_ = 0;  // the group and global EMMs'
  std::uint64_t emm_version_ = 0;  // of the key source's changes
  std::uint64_t emm_carousel_bytes_ = 0;         // on the wire, live or not yet
  std::uint64_t emm_shared_bytes_ = 0;           // of which group and global
  std::uint64_t emm_carousel_live_ = 0;
  std::uint64_t emm_shared_live_ = 0;            // of which group and global
  // Bytes the shared EMMs are ahead (> 0) of their share of the carousel (< 0: behind).
  double emm_share_balance_ = 0;
  [[nodiscard]] double emm_shared_share() const;
  std::size_t logged_carousel_entries_ = 0;
  void drop_emm(std::size_t slot);
  std::uint64_t next_cat_ = 0;
  std::uint64_t next_eit_ = 0;
  bool input_has_eit_ = false;
  streams::SectionPacketizer eit_packetizer_{streams::kEitPid};
  std::uint16_t transport_stream_id_ = 0;  // the input PAT's
  std::optional<std::uint16_t> input_onid_;  // the input SDT's original_network_id
  bool input_has_sdt_ = false;
  std::unique_ptr<streams::SectionAssembler> sdt_assembler_;
  streams::SectionPacketizer sdt_packetizer_{streams::kSdtPid};
  std::vector<std::uint8_t> sdt_body_;  // our last SDT, to bump the version on change
  std::uint8_t sdt_version_ = 0;
  std::uint64_t next_sdt_ = 0;
  bool started_ = false;
  bool warned_no_pcr_ = false;
  std::deque<Pending> inserts_;
  std::vector<std::uint32_t> pending_by_pid_ = std::vector<std::uint32_t>(8192);  // packets in inserts_
  std::vector<std::uint8_t> out_cc_ = std::vector<std::uint8_t>(8192);  // continuity of inserted PIDs
  std::size_t urgent_pending_ = 0;
  std::size_t priority_pending_ = 0;
  bool replace_nulls_ = false;  // the policy in force
  std::uint64_t debt_ = 0;      // packets borrowed ahead of a null, to give back
  bool warned_short_ = false;
  bool cat_out_ = false;
  streams::TsPacket restamp_;
  std::uint64_t input_bitrate_ = 0;  // measured during the survey
  std::uint64_t emm_tat_ = 0;  // EMM share: stream time when the packets sent so far are paid for        // the first CAT (which announces the EMM PID) has left
  // Handed over since the start, waiting for their first sending: by priority (urgent first).
  std::array<std::deque<std::shared_ptr<const std::vector<std::uint8_t>>>, entitlement::kEmmPriorityLast + 1> emm_fresh_;
  // At most this many EMM packets wait for their place in the output at once.
  static constexpr std::uint32_t kEmmPendingPackets = 8;
  std::vector<streams::TsPacket> scratch_;
  ScramblerStats stats_;
};

}  // namespace usher::headend
