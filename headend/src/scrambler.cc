#include "usher/headend/scrambler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "input_survey.h"
#include "usher/core/clock.h"

namespace usher::headend {

using streams::Scrambling;
using streams::TsPacket;

// Who may watch a crypto period: the service's subscribers (event_id 0, the service key) or the
// ticket holders of the PPV event on air (that event's key).
struct Scrambler::Audience {
  std::uint32_t event_id = 0;
  std::uint8_t min_age = 0;
  Key256 key;
  std::uint16_t key_version = 0;  // of the service key (event_id 0)
};

struct Scrambler::Service {
  std::uint16_t service_id = 0;
  std::uint16_t pmt_pid = 0;
  std::uint16_t ecm_pid = 0;
  bool active = false;   // rewritten PMT and first ECM are out: its packets are scrambled
  bool blocked = false;  // no key: its packets are dropped rather than sent in clear
  bool vanished = false;  // no longer in the PAT: its packets are dropped until it returns
  std::unique_ptr<streams::SectionPacketizer> pmt_packetizer;
  std::unique_ptr<streams::SectionPacketizer> ecm_packetizer;
  std::vector<std::uint8_t> last_input_pmt;
  std::vector<std::uint8_t> rewritten_pmt;
  std::set<std::uint16_t> es_pids;
  CsaPipeline::Slot slot[2] = {CsaPipeline::kNoSlot, CsaPipeline::kNoSlot};  // by parity
  ControlWord cw[2];                                                          // by parity
  // Crypto periods are counted from 0 and cut every crypto_period_ms and at every PPV event's start
  // and end, so that each lies wholly within one audience: its control word is sealed for that
  // audience only, in the ECM of its own period and in the ECM of the period before.
  std::uint64_t period = 0;
  std::uint64_t period_start = 0;  // stream time (27 MHz)
  std::uint64_t period_end = 0;    // stream time at which the next period starts
  std::uint64_t period_time = 0;   // broadcast time at the period's start
  std::uint64_t next_replan = 0;   // stream time of the next look at the schedule (it may change)
  Audience audience;               // of the current period
  Audience next_audience;          // of the next one, whose control word the ECM announces
  // The key current at the period's start and, ahead of a rotation, the next one with its start:
  // a period is cut at that start, and the first period from it on uses the next key.
  std::optional<entitlement::ServiceKeys> keys;
  std::vector<std::uint8_t> ecm_section;
  std::uint64_t next_ecm = 0;
  std::vector<std::uint8_t> eit_content[2];  // last EIT p/f bodies sent, to bump the version on change
  std::uint8_t eit_version = 0;
};

namespace {

constexpr std::uint16_t kFirstFreePid = 0x0020;  // 0x0000-0x001F: PAT, CAT, TSDT, SI
constexpr std::uint16_t kLastFreePid = 0x1FFE;   // 0x1FFF: null packets
constexpr std::size_t kMaxSurveyPackets = 200'000;  // about 37 MB held back at most
constexpr std::uint64_t kMinSurveyMs = 500;          // to see the PIDs the input uses before placing ours

std::string pid_text(std::uint16_t pid) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%04X", static_cast<unsigned>(pid));
  return buf;
}

}  // namespace

Result<InsertPolicy> parse_insert_policy(std::string_view text) {
  if (text == "auto") return InsertPolicy::automatic;
  if (text == "replace-nulls") return InsertPolicy::replace_nulls;
  if (text == "add") return InsertPolicy::add;
  return make_error(Errc::invalid_argument, "--insert expects auto, replace-nulls or add, got '" + std::string(text) + "'");
}

Status validate(const ScramblerConfig& config, KeySource& keys) {
  for (const auto& [pid, option] : {std::pair{config.emm_pid, "--emm-pid"}, {config.ecm_pid_base, "--ecm-pid"}}) {
    if (pid < kFirstFreePid || pid > kLastFreePid) {
      return make_error(Errc::invalid_argument, std::string(option) + " " + pid_text(pid) +
                                                    " is reserved (0x0000-0x001F carry the PAT, CAT and SI, 0x1FFF null "
                                                    "packets); choose one from 0x0020 to 0x1FFE");
    }
  }
  for (const auto id : config.services) {
    if (id == 0) return make_error(Errc::invalid_argument, "service 0 is not a service (program 0 names the network PID)");
    if (auto key = keys.service_key(id); !key) {
      return make_error(Errc::not_found, "service " + std::to_string(id) + " cannot be scrambled: " + key.error().message +
                                             " (add it with `usher entitlement service add`); nothing is sent");
    }
  }
  return ok_status();
}

Scrambler::Scrambler(ScramblerConfig config, KeySource& keys)
    : config_(std::move(config)), keys_(keys), clock_(config_.assumed_bitrate) {
  if (config_.crypto_period_ms < 100) config_.crypto_period_ms = 100;
  pipeline_.set_max_hold(ms_to_ticks(config_.max_hold_ms));
  if (config_.start_unix == 0) {
    config_.start_unix = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  for (std::uint16_t pid = 0; pid < kFirstFreePid; ++pid) used_pids_.set(pid);
  used_pids_.set(streams::kNullPid);
  pat_assembler_ = std::make_unique<streams::SectionAssembler>([this](auto s) { on_pat(s); });
  cat_assembler_ = std::make_unique<streams::SectionAssembler>([this](auto s) { on_cat(s); });
  sdt_assembler_ = std::make_unique<streams::SectionAssembler>([this](auto s) { on_sdt(s); });
  survey_ = std::make_unique<InputSurvey>();
  if (auto valid = validate(config_, keys_); !valid) refuse(valid.error().code, valid.error().message);
}

Scrambler::~Scrambler() = default;

void Scrambler::refuse(Errc code, const std::string& message) {
  log_.error(message);
  refusal_ = make_error(code, message);
  survey_.reset();
  surveyed_.clear();
}

std::optional<std::uint16_t> Scrambler::allocate_pid(std::uint16_t preferred) {
  // The nearest free PID below the preferred one, else above it: never one in use.
  for (std::uint32_t pid = preferred; pid >= kFirstFreePid; --pid) {
    if (!used_pids_.test(pid)) {
      used_pids_.set(pid);
      return static_cast<std::uint16_t>(pid);
    }
  }
  for (std::uint32_t pid = preferred + 1u; pid <= kLastFreePid; ++pid) {
    if (!used_pids_.test(pid)) {
      used_pids_.set(pid);
      return static_cast<std::uint16_t>(pid);
    }
  }
  return std::nullopt;
}

void Scrambler::survey(bool at_end) {
  const InputSurvey& sv = *survey_;
  const bool out_of_time = at_end || sv.stream_ms() >= config_.survey_ms || surveyed_.size() >= kMaxSurveyPackets;
  const std::string within = at_end ? "in the whole input" : "in the first " + std::to_string(sv.stream_ms()) + " ms of the input";
  if (!sv.pat_complete()) {
    if (out_of_time) refuse(Errc::malformed, "no complete PAT " + within + ": nothing is sent");
    return;
  }
  const auto programs = sv.programs();
  std::vector<std::uint16_t> chosen;
  if (config_.services.empty()) {
    for (const auto& [number, pid] : programs) {
      if (number != 0) chosen.push_back(number);
    }
    if (chosen.empty()) return refuse(Errc::not_found, "the input's PAT lists no service: nothing is sent");
  } else {
    for (const auto id : config_.services) {
      if (programs.contains(id)) {
        chosen.push_back(id);
        continue;
      }
      std::string listed;
      for (const auto& [number, pid] : programs) {
        if (number != 0) listed += (listed.empty() ? "" : ", ") + std::to_string(number);
      }
      return refuse(Errc::not_found, "service " + std::to_string(id) + " is not in the input (its PAT lists " +
                                         (listed.empty() ? "no service" : listed) + "): nothing is sent");
    }
  }
  bool payload_seen = false;
  for (const auto id : chosen) {
    const auto* pmt = sv.pmt(id);
    if (pmt == nullptr) {
      if (out_of_time) {
        refuse(Errc::not_found, "no PMT for service " + std::to_string(id) + " (PID " + pid_text(programs.at(id)) + ") " + within +
                                    ": nothing is sent");
      }
      return;
    }
    for (const auto& st : pmt->streams) payload_seen = payload_seen || sv.payload_packets(st.pid) > 0;
  }
  // Wait for the first payloads (are they scrambled already?) and long enough to see the PIDs in use.
  if ((!payload_seen || sv.stream_ms() < kMinSurveyMs) && !out_of_time) return;
  if (!config_.pass_scrambled) {
    for (const auto id : chosen) {
      for (const auto& st : sv.pmt(id)->streams) {
        if (sv.scrambled_packets(st.pid) == 0) continue;
        return refuse(Errc::invalid_argument,
                      "service " + std::to_string(id) + ": PID " + pid_text(st.pid) + " of the input is already scrambled (" +
                          std::to_string(sv.scrambled_packets(st.pid)) + " of " + std::to_string(sv.payload_packets(st.pid)) +
                          " packets); give the clear input, or pass such packets through as they are (--pass-scrambled)");
      }
    }
  }
  std::vector<std::uint16_t> with_key;
  for (const auto id : chosen) {
    if (auto key = keys_.service_key(id)) {
      with_key.push_back(id);
    } else if (!config_.services.empty()) {
      return refuse(Errc::not_found, "service " + std::to_string(id) + " cannot be scrambled: " + key.error().message + ": nothing is sent");
    }
  }
  if (with_key.empty()) {
    return refuse(Errc::not_found, "no service of the input has a key (add them with `usher entitlement service add`): nothing is sent");
  }
  // CA PIDs go where nothing of the input is; the input's PSI PIDs are never taken over.
  std::bitset<8192> psi;
  for (std::uint16_t pid = 0; pid < kFirstFreePid; ++pid) psi.set(pid);
  for (const auto& [number, pid] : programs) psi.set(pid);
  used_pids_ |= sv.pids_seen() | psi;
  for (const auto& [number, pid] : programs) {
    if (const auto* pmt = sv.pmt(number)) {
      used_pids_.set(pmt->pcr_pid);
      for (const auto& st : pmt->streams) used_pids_.set(st.pid);
    }
  }
  for (const auto& [pid, option] : {std::pair{config_.emm_pid, "--emm-pid"}, {config_.ecm_pid_base, "--ecm-pid"}}) {
    if (psi.test(pid)) {
      return refuse(Errc::invalid_argument, std::string(option) + " " + pid_text(pid) +
                                                " is a PSI PID of the input (its PAT names it for a PMT or the network): nothing is sent");
    }
  }
  const auto emm = allocate_pid(config_.emm_pid);
  if (!emm) return refuse(Errc::invalid_argument, "no free PID left for the EMMs: nothing is sent");
  if (*emm != config_.emm_pid) log_.info("EMM PID ", *emm, " (", config_.emm_pid, " is in use in the input)");
  for (const auto id : with_key) {
    const auto ecm = allocate_pid(config_.ecm_pid_base);
    if (!ecm) {
      return refuse(Errc::invalid_argument, "no free PID left for the ECMs of service " + std::to_string(id) +
                                                " (the input uses every other one): nothing is sent");
    }
    planned_ecm_pids_[id] = *ecm;
    ca_pids_.set(*ecm);
  }
  emm_pid_ = *emm;
  ca_pids_.set(emm_pid_);
  std::uint64_t nulls = 0;
  for (const auto& p : surveyed_) nulls += p.pid() == streams::kNullPid ? 1 : 0;
  choose_policy(with_key.size(), nulls, sv.stream_ms());
  if (sv.clock().bitrate_measured()) input_bitrate_ = sv.clock().bitrate();
  input_has_sdt_ = sv.pids_seen().test(streams::kSdtPid);  // rewritten in place; else ours
  emm_packetizer_ = std::make_unique<streams::SectionPacketizer>(emm_pid_);

  // Go. The services and their elementary PIDs are known before the packets held back go through:
  // a packet that comes before its service's first PMT (which no receiver could descramble yet)
  // is dropped rather than sent in clear; from that PMT on, the service is scrambled.
  auto survey = std::move(survey_);
  auto held = std::move(surveyed_);
  start();
  for (const auto& section : survey->pat_sections()) on_pat(section);
  for (const auto id : chosen) {
    const auto it = services_by_pmt_pid_.find(programs.at(id));
    if (it == services_by_pmt_pid_.end()) continue;
    for (const auto& st : survey->pmt(id)->streams) {
      if (!streams::is_elementary_stream_type(st.stream_type)) continue;
      it->second->es_pids.insert(st.pid);
      services_by_es_pid_[st.pid] = it->second.get();
    }
  }
  for (const auto& p : held) handle(p);
}

void Scrambler::choose_policy(std::size_t services, std::uint64_t nulls, std::uint64_t ms) {
  // What the inserted streams need (bit/s): ECM and CAT repetitions, the EMM share, the EIT
  // present/following and the SDT; against what the input's stuffing carries.
  const std::uint64_t packet_bits = streams::kPacketSize * 8;
  // EMMs: their budget, used to the full while they wait.
  const std::uint64_t emm = config_.emm_bitrate;
  const std::uint64_t needed = services * packet_bits * 1000 / std::max<std::uint32_t>(config_.ecm_interval_ms, 1) +
                               packet_bits * 1000 / std::max<std::uint32_t>(config_.cat_interval_ms, 1) + emm +
                               services * 2 * packet_bits * 1000 / std::max<std::uint32_t>(config_.eit_interval_ms, 1) +
                               packet_bits * 1000 / std::max<std::uint32_t>(config_.sdt_interval_ms, 1);
  const std::uint64_t stuffing = nulls * packet_bits * 1000 / std::max<std::uint64_t>(ms, 1);
  const std::string figures = "the input's stuffing carries " + std::to_string(stuffing / 1000) + " kbit/s, inserted packets need about " +
                              std::to_string(needed / 1000) + " kbit/s";
  switch (config_.insert_policy) {
    case InsertPolicy::add:
      replace_nulls_ = false;
      break;
    case InsertPolicy::replace_nulls:
      replace_nulls_ = true;
      if (stuffing < needed) {
        log_.warn(figures, " (", (needed - stuffing + 999) / 1000,
                  " kbit/s missing): inserted packets replace nulls only, so repetitions wait or are skipped");
      }
      break;
    case InsertPolicy::automatic:
      replace_nulls_ = nulls > 0 && stuffing >= needed;
      if (replace_nulls_) {
        log_.info(figures, ": inserted packets replace null packets, the output rate is the input's");
      } else if (nulls > 0) {
        log_.warn(figures, " (", (needed - stuffing + 999) / 1000,
                  " kbit/s missing): inserted packets are added where no null is at hand (--insert replace-nulls never adds)");
      }
      break;
  }
  stats_.replacing_nulls = replace_nulls_;
}

void Scrambler::start() {
  // The CAT goes first; the EMMs follow it (none before the CAT that announces their PID) at their
  // bandwidth share, never as a burst of the whole carousel.
  refresh_emms();
  started_ = true;
  emit_cat(true);
  cat_out_ = true;  // nothing can come between it and the EMMs queued after it
  next_cat_ = clock_.now() + ms_to_ticks(config_.cat_interval_ms);
  // As many EMMs as the share's burst allows go with the CAT, ahead of the first ECM, so that boxes
  // watching from the start have their rights in time (one pass at most); the rest of the carousel
  // follows at the share.
  for (std::uint64_t i = 0; i < emm_carousel_live_ && queue_emm(true); ++i) {
  }
}

std::uint64_t Scrambler::broadcast_time_at(std::uint64_t stream_time) const {
  return config_.start_unix + stream_time / streams::kPcrHz;
}
std::uint64_t Scrambler::broadcast_time() const { return broadcast_time_at(clock_.now()); }

namespace {
// The TS packets a section takes on its PID (a pointer field before it, 184 payload bytes each).
std::uint64_t emm_packets_of(std::size_t section_bytes) { return (section_bytes + 1 + 183) / 184; }
}  // namespace

void Scrambler::drop_emm(std::size_t slot) {
  auto& e = emm_carousel_[slot];
  if (!e.section) return;
  const auto bytes = emm_packets_of(e.section->size()) * streams::kPacketSize;
  emm_carousel_bytes_ -= bytes;
  if (e.shared()) emm_shared_bytes_ -= bytes;
  e.section.reset();
  ++emm_removed_slots_;
}

void Scrambler::refresh_emms() {
  auto changes = keys_.emm_changes(emm_version_);
  emm_version_ = changes.version;
  const auto find = [this](std::uint64_t id) -> EmmEntry* {
    const auto it = std::lower_bound(emm_carousel_.begin(), emm_carousel_.end(), id,
                                     [](const EmmEntry& e, std::uint64_t v) { return e.id < v; });
    return it != emm_carousel_.end() && it->id == id && it->section ? &*it : nullptr;
  };
  std::set<std::uint64_t> held_before;  // on a restart: what was held already is not new
  if (changes.restart) {
    for (const auto& e : emm_carousel_) {
      if (e.section) held_before.insert(e.id);
    }
    emm_carousel_.clear();
    emm_removed_slots_ = 0;
    emm_next_ = 0;
    emm_next_shared_ = 0;
    emm_carousel_bytes_ = 0;
    emm_shared_bytes_ = 0;
  }
  // Ids are never reused: an entry both added and removed here is not taken at all.
  const std::set<std::uint64_t> removed(changes.removed.begin(), changes.removed.end());
  for (const auto id : changes.removed) {
    if (auto* e = find(id)) drop_emm(static_cast<std::size_t>(e - emm_carousel_.data()));
  }
  const std::uint64_t now = broadcast_time();
  for (auto& e : changes.added) {
    if (!e.section || removed.contains(e.id) || find(e.id) != nullptr) continue;
    const bool fresh = started_ && e.live_at(now) && !held_before.contains(e.id);
    if (fresh) emm_fresh_[static_cast<std::size_t>(e.priority)].emplace_back(e.section);
    if (!held_before.contains(e.id)) ++stats_.emm_sections;
    const auto bytes = emm_packets_of(e.section->size()) * streams::kPacketSize;
    emm_carousel_bytes_ += bytes;
    if (e.shared()) emm_shared_bytes_ += bytes;
    if (emm_carousel_.empty() || emm_carousel_.back().id < e.id) {
      emm_carousel_.push_back(std::move(e));
    } else {  // out of order (not from the engine's feed): kept in id order all the same
      const auto it = std::lower_bound(emm_carousel_.begin(), emm_carousel_.end(), e.id,
                                       [](const EmmEntry& x, std::uint64_t v) { return x.id < v; });
      if (it != emm_carousel_.end() && it->id == e.id) {
        *it = std::move(e);
        --emm_removed_slots_;
      } else {
        const auto at = static_cast<std::size_t>(it - emm_carousel_.begin());
        emm_carousel_.insert(it, std::move(e));
        if (at < emm_next_) ++emm_next_;
        if (at < emm_next_shared_) ++emm_next_shared_;
      }
    }
  }
  // What has had its time goes here too, whether or not the engine has purged it yet.
  emm_carousel_live_ = 0;
  emm_shared_live_ = 0;
  for (std::size_t i = 0; i < emm_carousel_.size(); ++i) {
    auto& e = emm_carousel_[i];
    if (!e.section) continue;
    if (e.carousel_until < now) {
      drop_emm(i);
    } else if (e.carousel_from <= now) {
      ++emm_carousel_live_;
      if (e.shared()) ++emm_shared_live_;
    }
  }
  if (emm_removed_slots_ > 0 && emm_removed_slots_ * 2 >= emm_carousel_.size()) {
    // Squeezed out, both round robins going on from the same entries.
    std::size_t next = 0;
    std::size_t next_shared = 0;
    for (std::size_t i = 0; i < emm_carousel_.size(); ++i) {
      if (!emm_carousel_[i].section) continue;
      if (i < emm_next_) ++next;
      if (i < emm_next_shared_) ++next_shared;
    }
    std::erase_if(emm_carousel_, [](const EmmEntry& e) { return !e.section; });
    emm_removed_slots_ = 0;
    emm_next_ = next;
    emm_next_shared_ = next_shared;
  }
  if (emm_next_ >= emm_carousel_.size()) emm_next_ = 0;
  if (emm_next_shared_ >= emm_carousel_.size()) emm_next_shared_ = 0;
  stats_.emm_carousel_entries = emm_carousel_live_;
  stats_.emm_carousel_bytes = emm_carousel_bytes_;
  std::uint64_t waiting = 0;
  for (const auto& q : emm_fresh_) waiting += q.size();
  stats_.emm_waiting = waiting;
  const auto entries = emm_carousel_.size() - emm_removed_slots_;
  if (entries != 0 && (logged_carousel_entries_ == 0 || entries > logged_carousel_entries_ * 11 / 10 ||
                       entries < logged_carousel_entries_ * 9 / 10)) {
    logged_carousel_entries_ = entries;
    const auto passes = emm_carousel_passes();
    char shared[32];
    char unique[32];
    std::snprintf(shared, sizeof(shared), "%.1f", passes.shared_seconds);
    std::snprintf(unique, sizeof(unique), "%.1f", passes.unique_seconds);
    log_.info("EMM carousel: ", entries, " entries, ", emm_carousel_bytes_ / 1000, " kB on the wire (", emm_shared_bytes_ / 1000,
              " kB group and global); at ", config_.emm_bitrate / 1000, " kbit/s a box that holds its group key waits at most ", shared,
              " s for the group and global EMMs, a box switched on for the first time ", unique, " s more for its key EMM");
  }
}

double Scrambler::emm_shared_share() const {
  // At least half to the shared EMMs, their share of the bytes if that is more: never slower
  // for them than one carousel for all, and never a unique pass longer than two of those.
  const auto unique = emm_carousel_bytes_ - emm_shared_bytes_;
  if (emm_shared_bytes_ == 0) return 0.0;
  if (unique == 0) return 1.0;
  return std::max(0.5, static_cast<double>(emm_shared_bytes_) / static_cast<double>(emm_carousel_bytes_));
}

EmmCarouselPasses Scrambler::emm_carousel_passes() const {
  EmmCarouselPasses p;
  if (config_.emm_bitrate == 0) return p;
  const double rate = static_cast<double>(config_.emm_bitrate);
  const double share = emm_shared_share();
  const auto unique = emm_carousel_bytes_ - emm_shared_bytes_;
  if (emm_shared_bytes_ > 0) p.shared_seconds = static_cast<double>(emm_shared_bytes_) * 8.0 / (rate * share);
  if (unique > 0) p.unique_seconds = static_cast<double>(unique) * 8.0 / (rate * (1.0 - share));
  return p;
}

double Scrambler::emm_carousel_cycle_seconds() const {
  const auto p = emm_carousel_passes();
  return p.shared_seconds + p.unique_seconds;
}

void Scrambler::emit_now(const TsPacket& packet) { pipeline_.push(packet, CsaPipeline::kNoSlot); }

void Scrambler::out_inserted(Pending& p) {
  const std::uint16_t pid = p.packet.pid();
  --pending_by_pid_[pid];
  if (p.urgent) --urgent_pending_;
  if (p.priority) --priority_pending_;
  if (pid == streams::kCatPid) cat_out_ = true;
  if (pid == emm_pid_) ++stats_.emm_packets;
  if (replace_nulls_ && !p.urgent && clock_.now() > p.deadline + ms_to_ticks(kLateAfterMs - kInsertionWindowMs)) {
    ++stats_.inserts_late;
    if (!warned_short_) {
      log_.warn("too little stuffing in the input: an inserted packet waited more than ", kLateAfterMs,
                " ms for a null packet (counted in inserts_late; --insert add adds them instead)");
    }
    warned_short_ = true;
  }
  emit_inserted_now(p.packet);
}

void Scrambler::emit_inserted_now(TsPacket& packet) {
  // Continuity counters of inserted PIDs are set as the packets leave, so that a repetition left
  // out of the queue leaves no gap.
  auto& cc = out_cc_[packet.pid()];
  packet.set_cc(cc);
  cc = static_cast<std::uint8_t>((cc + 1) & 0x0F);
  pipeline_.push(packet, CsaPipeline::kNoSlot);
}

void Scrambler::flush_inserts() {
  while (!inserts_.empty()) {
    out_inserted(inserts_.front());
    inserts_.pop_front();
    ++stats_.packets_added;
  }
}

void Scrambler::free_slot(const TsPacket* input_null) {
  if (!replace_nulls_) {
    // add: a null carries a waiting packet, else passes; a dropped packet leaves no slot.
    if (input_null == nullptr) return;
    if (inserts_.empty()) {
      pipeline_.push(*input_null, CsaPipeline::kNoSlot);
    } else {
      out_inserted(inserts_.front());
      inserts_.pop_front();
      ++stats_.nulls_replaced;
    }
    return;
  }
  // replace_nulls: one packet out for each packet in. The ECM of a new crypto period first (a
  // receiver needs it within the period), then a packet sent ahead is given back.
  if (priority_pending_ > 0) {
    const auto it = std::find_if(inserts_.begin(), inserts_.end(), [](const Pending& p) { return p.priority; });
    out_inserted(*it);
    inserts_.erase(it);
    ++stats_.nulls_replaced;
  } else if (debt_ > 0) {
    --debt_;
    ++stats_.nulls_given_back;
  } else if (!inserts_.empty()) {
    out_inserted(inserts_.front());
    inserts_.pop_front();
    ++stats_.nulls_replaced;
  } else if (input_null != nullptr) {
    pipeline_.push(*input_null, CsaPipeline::kNoSlot);
  } else {
    pipeline_.push(TsPacket::null_packet(), CsaPipeline::kNoSlot);
    ++stats_.nulls_inserted;
  }
}

void Scrambler::settle_inserts() {
  if (replace_nulls_) {
    // What must go at once goes ahead (with what is queued before it, to keep each PID's order);
    // the next nulls are given back for it.
    while (urgent_pending_ > 0) {
      out_inserted(inserts_.front());
      inserts_.pop_front();
      ++debt_;
      ++stats_.packets_borrowed;
    }
    return;
  }
  while (!inserts_.empty() && inserts_.front().deadline <= clock_.now()) {
    out_inserted(inserts_.front());
    inserts_.pop_front();
    ++stats_.packets_added;
  }
}

const TsPacket& Scrambler::restamped(const TsPacket& packet) {
  // While packets sent ahead are not given back yet, every packet is that many places later than in
  // the input: its PCR is moved on by as much, so PCRs stay true to their place at the input's
  // constant rate (no jitter) and the rate from PCR to PCR stays the input's.
  if (debt_ == 0 || !replace_nulls_) return packet;
  const std::uint64_t bitrate = clock_.bitrate_measured() ? clock_.bitrate() : input_bitrate_;  // the survey's until then
  const auto pcr = packet.pcr();
  if (!pcr || bitrate == 0) return packet;
  constexpr std::uint64_t kPcrWrap = (std::uint64_t{1} << 33) * 300;
  restamp_ = packet;
  restamp_.set_pcr((*pcr + debt_ * streams::kPacketSize * 8 * streams::kPcrHz / bitrate) % kPcrWrap);
  ++stats_.pcrs_restamped;
  return restamp_;
}

void Scrambler::queue_section(streams::SectionPacketizer& pz, std::span<const std::uint8_t> section, bool now, bool priority) {
  scratch_.clear();
  pz.packetize(section, scratch_);
  if (now && !replace_nulls_) {
    // add: sections waiting for a null packet go first, so that each CA/PSI PID keeps its order.
    flush_inserts();
    for (auto& p : scratch_) {
      emit_inserted_now(p);
      ++stats_.packets_added;
    }
    return;
  }
  // replace_nulls: what must go at once waits only for the end of the current input packet, whose
  // place it may take (settle_inserts).
  const std::uint64_t deadline = clock_.now() + (now ? 0 : ms_to_ticks(kInsertionWindowMs));
  if (priority && !scratch_.empty()) {
    // A new crypto period's ECM: repetitions of the last one still waiting are stale; they go.
    const std::uint16_t pid = scratch_.front().pid();
    const auto stale = std::remove_if(inserts_.begin(), inserts_.end(), [&](const Pending& p) {
      return p.packet.pid() == pid && !p.urgent && !p.priority;
    });
    for (auto it = stale; it != inserts_.end(); ++it) --pending_by_pid_[pid];
    if (stale != inserts_.end()) ++stats_.repetitions_skipped;
    inserts_.erase(stale, inserts_.end());
  }
  for (const auto& p : scratch_) {
    inserts_.push_back({p, deadline, now, priority});
    ++pending_by_pid_[p.pid()];
    if (now) ++urgent_pending_;
    if (priority) ++priority_pending_;
  }
}

void Scrambler::emit_in_place(streams::SectionPacketizer& pz, std::span<const std::uint8_t> section) {
  // A rewritten input section (PMT, SDT) in the place of the input's: with replace_nulls its
  // packets go now and the input packet's slot (freed right after) is given back for them.
  if (!replace_nulls_) return queue_section(pz, section, true);
  scratch_.clear();
  pz.packetize(section, scratch_);
  for (auto& p : scratch_) emit_inserted_now(p);
  debt_ += scratch_.size();
  stats_.packets_borrowed += scratch_.size();
}

std::uint16_t Scrambler::original_network_id() const {
  if (config_.original_network_id) return *config_.original_network_id;
  return input_onid_.value_or(kPrivateOriginalNetworkId);
}

void Scrambler::on_sdt(std::span<const std::uint8_t> section) {
  // The input's SDT: our scrambled services get free_CA_mode and, where the input names none, the
  // catalogue's name; other tables on the PID (SDT other, BAT) go out as they came.
  const auto view = streams::parse_section(section);
  if (view && view->header.table_id == streams::kTableSdtActual) {
    if (auto sdt = streams::Sdt::parse(section)) {
      input_onid_ = sdt->original_network_id;
      if (config_.original_network_id) sdt->original_network_id = *config_.original_network_id;
      for (auto& entry : sdt->services) {
        for (auto& [pid, s] : services_by_pmt_pid_) {
          if (s->service_id != entry.service_id || s->blocked) continue;
          entry.free_ca_mode = true;
          if (!streams::service_descriptor_name(entry.descriptors)) {
            auto name = keys_.service_name(s->service_id);
            if (name.empty()) name = "Service " + std::to_string(s->service_id);
            streams::append_service_descriptor(entry.descriptors, 0x01, config_.provider_name, name);
          }
        }
      }
      ++stats_.sdt_sections;
      return emit_in_place(sdt_packetizer_, sdt->serialize());
    }
  }
  emit_in_place(sdt_packetizer_, section);
}

void Scrambler::emit_sdt() {
  // Ours, when the input has none: every service we scramble, named from the catalogue.
  streams::Sdt sdt;
  sdt.transport_stream_id = transport_stream_id_;
  sdt.original_network_id = original_network_id();
  for (const auto& [pid, s] : services_by_pmt_pid_) {
    if (!s->active || s->blocked || s->vanished) continue;
    streams::Sdt::Service entry;
    entry.service_id = s->service_id;
    entry.free_ca_mode = true;
    entry.running_status = 4;
    auto name = keys_.service_name(s->service_id);
    if (name.empty()) name = "Service " + std::to_string(s->service_id);
    streams::append_service_descriptor(entry.descriptors, 0x01, config_.provider_name, name);
    sdt.services.push_back(std::move(entry));
  }
  if (sdt.services.empty()) return;
  sdt.version = sdt_version_;
  auto body = sdt.serialize();
  if (body != sdt_body_) {
    if (!sdt_body_.empty()) sdt_version_ = static_cast<std::uint8_t>((sdt_version_ + 1) & 0x1F);
    sdt.version = sdt_version_;
    body = sdt.serialize();
    sdt_body_ = body;
  }
  queue_section(sdt_packetizer_, body, false);
  ++stats_.sdt_sections;
}

void Scrambler::emit_cat(bool now) {
  streams::Cat cat;
  cat.version = cat_version_;
  cat.descriptors = input_cat_descriptors_;
  streams::append_ca_descriptor(cat.descriptors, {config_.ca_system_id, emm_pid_, {}});
  queue_section(cat_packetizer_, cat.serialize(), now);
}

void Scrambler::emit_eit(Service& s) {
  const std::uint64_t now = broadcast_time();
  const auto events = keys_.schedule(s.service_id, now, 2);
  streams::Eit eit[2];
  std::size_t next = 0;
  for (int section = 0; section < 2; ++section) {
    eit[section].service_id = s.service_id;
    eit[section].transport_stream_id = transport_stream_id_;
    eit[section].original_network_id = original_network_id();
    eit[section].section_number = static_cast<std::uint8_t>(section);
    // Section 0: the event on air (if any); section 1: the one after it.
    const bool on_air = next < events.size() && events[next].start <= now;
    if (next < events.size() && (section == 1 || on_air)) {
      const auto& e = events[next++];
      streams::Eit::Event ev;
      ev.event_id = static_cast<std::uint16_t>(e.event_id);
      ev.start = e.start;
      ev.duration = e.duration;
      ev.running_status = section == 0 ? 4 : 1;
      ev.free_ca_mode = true;
      streams::append_short_event_descriptor(ev.descriptors, "eng", e.title, "Pay-per-view " + entitlement::format_money(e.price));
      if (e.min_age > 0) streams::append_parental_rating_descriptor(ev.descriptors, "FRA", e.min_age);
      eit[section].events.push_back(std::move(ev));
    }
  }
  bool changed = false;
  for (int section = 0; section < 2; ++section) {
    eit[section].version = s.eit_version;
    auto body = eit[section].serialize();
    if (body != s.eit_content[section]) changed = true;
  }
  if (changed) {
    s.eit_version = static_cast<std::uint8_t>((s.eit_version + 1) & 0x1F);
    for (int section = 0; section < 2; ++section) {
      eit[section].version = s.eit_version;
      s.eit_content[section] = eit[section].serialize();
    }
  }
  for (int section = 0; section < 2; ++section) {
    eit[section].version = s.eit_version;
    queue_section(eit_packetizer_, eit[section].serialize(), false);
    ++stats_.eit_sections;
  }
}

void Scrambler::on_cat(std::span<const std::uint8_t> section) {
  if (const auto cat = streams::Cat::parse(section)) {
    auto descriptors = cat->descriptors;
    streams::remove_ca_descriptors(descriptors, config_.ca_system_id);
    if (descriptors != input_cat_descriptors_) {
      input_cat_descriptors_ = std::move(descriptors);
      cat_version_ = static_cast<std::uint8_t>((cat_version_ + 1) & 0x1F);
      emit_cat();
    }
  }
}

void Scrambler::on_pat(std::span<const std::uint8_t> section) {
  const auto pat = streams::Pat::parse(section);
  if (!pat) return;
  transport_stream_id_ = pat->transport_stream_id;
  for (const auto& prog : pat->programs) {
    used_pids_.set(prog.pid);
    if (prog.program_number == 0) continue;
    if (!config_.services.empty() && !config_.services.contains(prog.program_number)) {
      clear_services_.insert(prog.program_number);
      continue;
    }
    if (services_by_pmt_pid_.contains(prog.pid)) continue;
    auto s = std::make_unique<Service>();
    s->service_id = prog.program_number;
    s->pmt_pid = prog.pid;
    std::optional<std::uint16_t> ecm_pid;
    if (auto planned = planned_ecm_pids_.find(prog.program_number); planned != planned_ecm_pids_.end()) {
      ecm_pid = planned->second;
    } else {
      ecm_pid = allocate_pid(config_.ecm_pid_base);
    }
    if (!ecm_pid) {
      log_.error("service ", s->service_id, ": no free PID left for its ECMs; its packets are dropped rather than sent in clear");
      s->blocked = true;
      ecm_pid = 0;
    }
    s->ecm_pid = *ecm_pid;
    if (s->ecm_pid != 0) ca_pids_.set(s->ecm_pid);
    s->pmt_packetizer = std::make_unique<streams::SectionPacketizer>(prog.pid);
    s->ecm_packetizer = std::make_unique<streams::SectionPacketizer>(s->ecm_pid);
    s->slot[0] = pipeline_.add_slot();
    s->slot[1] = pipeline_.add_slot();
    const std::uint16_t pid = prog.pid;
    pmt_assemblers_[pid] = std::make_unique<streams::SectionAssembler>([this, pid](auto sec) { on_pmt(pid, sec); });
    log_.info("service ", s->service_id, ": PMT PID ", pid, ", ECM PID ", s->ecm_pid);
    services_by_pmt_pid_[pid] = std::move(s);
  }
  // A PAT in one section lists every service: one that is not in it any more has left the input.
  const auto view = streams::parse_section(section);
  if (!view || view->header.last_section_number != 0) return;
  for (auto& entry : services_by_pmt_pid_) {
    auto& s = entry.second;
    const bool listed = std::any_of(pat->programs.begin(), pat->programs.end(), [&](const auto& prog) {
      return prog.program_number == s->service_id && prog.pid == s->pmt_pid;
    });
    if (!listed && !s->vanished) {
      log_.error("service ", s->service_id, ": no longer in the input's PAT; its packets are dropped until it returns");
    } else if (listed && s->vanished) {
      log_.info("service ", s->service_id, ": back in the input's PAT");
    }
    s->vanished = !listed;
  }
}

Scrambler::Audience Scrambler::audience_at(const Service& s, std::uint64_t time) {
  if (auto event = keys_.current_event(s.service_id, time)) return Audience{event->event_id, event->min_age, event->key.clone(), 0};
  const auto& key = s.keys->at(time);
  return Audience{0, 0, key.key.clone(), key.key_version};
}

std::uint64_t Scrambler::period_end_after(const Service& s, std::uint64_t start) {
  const std::uint64_t length = ms_to_ticks(config_.crypto_period_ms);
  std::uint64_t end = (start / length + 1) * length;
  // The next event boundary (the end of the event on air, or the start of the next one) cuts the period.
  const std::uint64_t time = broadcast_time_at(start);
  const auto events = keys_.schedule(s.service_id, time, 1);
  if (!events.empty()) {
    const auto& e = events.front();
    const std::uint64_t boundary = e.start <= time ? e.end() : e.start;
    if (boundary > time) end = std::min(end, (boundary - config_.start_unix) * streams::kPcrHz);  // after `start`
  }
  // And at a rotation's start: the first period from it on is sealed under the next key.
  if (s.keys && s.keys->next && s.keys->next->starts > time) {
    end = std::min(end, (s.keys->next->starts - config_.start_unix) * streams::kPcrHz);
  }
  return end;
}

void Scrambler::start_period(Service& s) {
  const std::uint64_t now = clock_.now();
  const bool consecutive = s.active;
  const std::uint64_t period = consecutive ? s.period + 1 : 0;
  auto audience = audience_at(s, broadcast_time());
  // The control word announced for this period was sealed for the audience planned then; if the
  // schedule changed since, it may have reached others: this period gets one nobody has seen.
  const bool fresh_cw =
      !consecutive || audience.event_id != s.next_audience.event_id || audience.key_version != s.next_audience.key_version;
  if (fresh_cw) {
    if (consecutive) log_.info("service ", s.service_id, ": audience changed since the last ECM (schedule changed); new control word");
    s.cw[period % 2] = next_control_word(period);
    pipeline_.set_key(s.slot[period % 2], s.cw[period % 2]);
  }
  if (audience.event_id != s.audience.event_id || !consecutive) {
    if (audience.event_id != 0) log_.info("service ", s.service_id, ": PPV event ", audience.event_id, " on air");
    if (audience.event_id == 0 && consecutive) log_.info("service ", s.service_id, ": PPV event ", s.audience.event_id, " over");
  }
  s.period = period;
  s.period_start = now;
  s.period_time = broadcast_time();
  s.audience = std::move(audience);
  ++stats_.crypto_periods;
  plan_next_period(s);
  // A control word announced in the last period's ECMs is in the receivers already: with nulls to
  // replace, this period's ECM may wait for one. A control word nobody has seen goes at once.
  emit_ecm(s, fresh_cw || !replace_nulls_, true);
}

void Scrambler::plan_next_period(Service& s) {
  s.period_end = period_end_after(s, s.period_start);
  s.next_audience = audience_at(s, broadcast_time_at(s.period_end));
  s.next_replan = clock_.now() + ms_to_ticks(kReplanIntervalMs);
  const std::uint64_t next = s.period + 1;
  s.cw[next % 2] = next_control_word(next);
  pipeline_.set_key(s.slot[next % 2], s.cw[next % 2]);
  seal_ecm(s);
}

void Scrambler::replan(Service& s) {
  // An event added, moved or removed since the period started: a new end or a new audience for the
  // next period means a new next control word, announced to the right audience only.
  s.next_replan = clock_.now() + ms_to_ticks(kReplanIntervalMs);
  // The keys again: a rotation announced since is planned for (its start cuts a period).
  if (auto keys = keys_.service_keys(s.service_id, s.period_time)) {
    const bool announced = keys->next && (!s.keys || !s.keys->next || s.keys->next->key_version != keys->next->key_version);
    if (announced) log_.info("service ", s.service_id, ": key version ", keys->next->key_version, " in use from ", format_utc(keys->next->starts));
    s.keys = std::move(*keys);
  }
  const std::uint64_t end = period_end_after(s, s.period_start);
  const auto next_audience = audience_at(s, broadcast_time_at(end));
  if (end == s.period_end && next_audience.event_id == s.next_audience.event_id && next_audience.key_version == s.next_audience.key_version) {
    return;
  }
  log_.info("service ", s.service_id, ": PPV schedule or key rotation changed; crypto period ", s.period, " replanned");
  if (end <= clock_.now()) {
    s.period_end = end;  // the boundary has passed already: the next period starts with the next packet
    s.next_audience.event_id = ~std::uint32_t{0};  // announced for nobody: it gets a fresh control word
    return;
  }
  plan_next_period(s);
  emit_ecm(s, true);
}

void Scrambler::seal_ecm(Service& s) {
  auto access_for = [this](const Audience& a) {
    auto access = config_.access;
    access.min_age = std::max(access.min_age, a.min_age);
    return access;
  };
  entitlement::EcmContent ecm;
  ecm.service_id = s.service_id;
  // One key version in the header, for the blocks under the service key: the current period's, or
  // (during an event) the next's. In the last period before a rotation both blocks are the
  // service's: the next control word, the first of the new key's, is sealed under the current key
  // too, and the ECM of the first period from the rotation on names the new version.
  const bool both_service = s.audience.event_id == 0 && s.next_audience.event_id == 0;
  ecm.key_version = s.audience.event_id == 0 ? s.audience.key_version : s.next_audience.key_version;
  ecm.current.event_id = s.audience.event_id;
  ecm.current.crypto_period = static_cast<std::uint32_t>(s.period);
  ecm.current.time_unix = s.period_time;
  ecm.current.access = access_for(s.audience);
  ecm.current.cw = s.cw[s.period % 2].clone();
  ecm.next.event_id = s.next_audience.event_id;
  ecm.next.crypto_period = static_cast<std::uint32_t>(s.period + 1);
  ecm.next.time_unix = std::max(s.period_time, broadcast_time_at(s.period_end));
  ecm.next.access = access_for(s.next_audience);
  ecm.next.cw = s.cw[(s.period + 1) % 2].clone();
  s.ecm_section = entitlement::encode_ecm(ecm, s.audience.key, both_service ? s.audience.key : s.next_audience.key);
}

ControlWord Scrambler::next_control_word(std::uint64_t period) const {
  if (config_.fixed_cws) return (period % 2 == 0 ? config_.fixed_cws->even : config_.fixed_cws->odd).clone();
  return ControlWord::random();
}

void Scrambler::emit_ecm(Service& s, bool now, bool priority) {
  if (!now && !priority && pending_by_pid_[s.ecm_pid] > 0) {
    // The last repetition still waits for a null: another would only queue up behind it.
    s.next_ecm = clock_.now() + ms_to_ticks(config_.ecm_interval_ms);
    ++stats_.repetitions_skipped;
    return;
  }
  queue_section(*s.ecm_packetizer, s.ecm_section, now, priority);
  s.next_ecm = clock_.now() + ms_to_ticks(config_.ecm_interval_ms);
  ++stats_.ecm_sections;
}

void Scrambler::on_pmt(std::uint16_t pid, std::span<const std::uint8_t> section) {
  Service& s = *services_by_pmt_pid_.at(pid);
  const bool same = s.last_input_pmt.size() == section.size() &&
                    std::equal(section.begin(), section.end(), s.last_input_pmt.begin());
  if (!same) {
    auto pmt = streams::Pmt::parse(section);
    if (!pmt) return;
    for (auto es : s.es_pids) services_by_es_pid_.erase(es);
    s.es_pids.clear();
    for (const auto& st : pmt->streams) {
      used_pids_.set(st.pid);
      if (st.pid == s.ecm_pid || st.pid == emm_pid_) {
        log_.error("service ", s.service_id, ": elementary PID ", st.pid, " collides with a CA PID; choose --ecm-pid/--emm-pid");
      }
      if (streams::is_elementary_stream_type(st.stream_type)) {
        s.es_pids.insert(st.pid);
        services_by_es_pid_[st.pid] = &s;
      }
    }
    streams::remove_ca_descriptors(pmt->descriptors, config_.ca_system_id);
    streams::append_ca_descriptor(pmt->descriptors, {config_.ca_system_id, s.ecm_pid, {}});
    pmt->version = static_cast<std::uint8_t>((pmt->version + 1) & 0x1F);
    s.rewritten_pmt = pmt->serialize();
    s.last_input_pmt.assign(section.begin(), section.end());
    ++stats_.pmts_rewritten;
  }
  if (s.vanished) return;
  emit_in_place(*s.pmt_packetizer, s.rewritten_pmt);
  if (!s.active && !s.blocked) {
    auto keys = keys_.service_keys(s.service_id, broadcast_time());
    if (!keys) {
      s.blocked = true;
      log_.error("service ", s.service_id, ": ", keys.error().message,
                 "; its packets are dropped rather than sent in clear (add it with `usher entitlement service add`)");
      return;
    }
    s.keys = std::move(keys.value());
    start_period(s);
    s.active = true;
    ++stats_.services_scrambled;
  }
}

void Scrambler::schedule(bool) {
  const std::uint64_t now = clock_.now();
  for (auto& [pid, s] : services_by_pmt_pid_) {
    if (!s->active || s->vanished) continue;
    if (now >= s->period_end) {
      start_period(*s);
    } else if (now >= s->next_ecm) {
      if (now >= s->next_replan) replan(*s);
      if (now >= s->period_end) {
        start_period(*s);
      } else if (now >= s->next_ecm) {
        emit_ecm(*s, false);  // a repetition may wait for a null packet
      }
    }
  }
  if (now >= next_cat_) {
    if (pending_by_pid_[streams::kCatPid] > 0) {
      ++stats_.repetitions_skipped;
    } else {
      emit_cat();
    }
    next_cat_ = now + ms_to_ticks(config_.cat_interval_ms);
  }
  if (!input_has_eit_ && now >= next_eit_ && pending_by_pid_[streams::kEitPid] > 0) {
    ++stats_.repetitions_skipped;
    next_eit_ = now + ms_to_ticks(config_.eit_interval_ms);
  }
  if (!input_has_eit_ && now >= next_eit_) {
    for (auto& [pid, s] : services_by_pmt_pid_) {
      if (s->active && !keys_.schedule(s->service_id, broadcast_time(), 1).empty()) emit_eit(*s);
    }
    next_eit_ = now + ms_to_ticks(config_.eit_interval_ms);
  }
  if (!input_has_sdt_ && now >= next_sdt_ && stats_.services_scrambled > 0) {
    if (pending_by_pid_[streams::kSdtPid] > 0) {
      ++stats_.repetitions_skipped;
    } else {
      emit_sdt();
    }
    next_sdt_ = now + ms_to_ticks(config_.sdt_interval_ms);
  }
  schedule_emm();
}

void Scrambler::schedule_emm() {
  // The budget is used to the full: sections are queued as long as the token bucket allows and only
  // a few packets wait for their place in the output (no fixed interval between sections).
  while (pending_by_pid_[emm_pid_] < kEmmPendingPackets && queue_emm(false)) {
  }
}

bool Scrambler::queue_emm(bool now) {
  // The share is a token bucket in stream time (the generic cell rate algorithm): each EMM packet
  // takes its time at emm_bitrate; a section goes if that leaves the schedule no more than
  // kEmmBurstMs ahead of the clock. So in any window of W ms at most (W + kEmmBurstMs) at the share,
  // plus one section, go out. Only after the CAT that announces the EMM PID. New EMMs go first,
  // urgent ones before renewals before the rest; then the carousel, round robin over what is live.
  if (!cat_out_ || config_.emm_bitrate == 0) return false;
  const std::vector<std::uint8_t>* section = nullptr;
  std::deque<std::shared_ptr<const std::vector<std::uint8_t>>>* fresh = nullptr;
  for (auto& q : emm_fresh_) {
    if (!q.empty()) {
      fresh = &q;
      section = q.front().get();
      break;
    }
  }
  std::size_t slot = 0;
  bool shared_turn = false;
  if (section == nullptr) {
    if (emm_carousel_live_ == 0 || emm_carousel_.empty()) return false;
    const std::uint64_t time = broadcast_time();
    // The shared EMMs' turn while they are behind their share (or nothing else is live).
    const bool any_shared = emm_shared_live_ > 0;
    const bool any_unique = emm_carousel_live_ > emm_shared_live_;
    // With one kind alone live there is nothing to balance: no debt is run up for later (a burst).
    if (!any_shared || !any_unique) emm_share_balance_ = 0;
    shared_turn = any_shared && (!any_unique || emm_share_balance_ <= 0);
    const auto next_live = [&](bool shared, std::size_t from) -> std::optional<std::size_t> {
      std::size_t at = from;
      for (std::size_t looked = 0; looked < emm_carousel_.size(); ++looked) {
        const auto& e = emm_carousel_[at];
        if (e.section && e.shared() == shared && e.live_at(time)) return at;
        at = (at + 1) % emm_carousel_.size();
      }
      return std::nullopt;
    };
    auto found = next_live(shared_turn, shared_turn ? emm_next_shared_ : emm_next_);
    if (!found) {  // the counts are as of the last refresh: what they said live may have ended since
      shared_turn = !shared_turn;
      found = next_live(shared_turn, shared_turn ? emm_next_shared_ : emm_next_);
    }
    if (!found) return false;
    slot = *found;
    section = emm_carousel_[slot].section.get();
  }
  const std::uint64_t t = clock_.now();
  const std::uint64_t packets = emm_packets_of(section->size());
  const std::uint64_t packet_ticks = streams::kPacketSize * 8 * streams::kPcrHz / config_.emm_bitrate;
  const std::uint64_t tat = std::max(emm_tat_, t);
  if (tat + packets * packet_ticks > t + ms_to_ticks(kEmmBurstMs) + packet_ticks) return false;
  queue_section(*emm_packetizer_, *section, now);
  emm_tat_ = tat + packets * packet_ticks;
  if (fresh != nullptr) {
    fresh->pop_front();
    if (stats_.emm_waiting > 0) --stats_.emm_waiting;
  } else {
    const double bytes = static_cast<double>(packets * streams::kPacketSize);
    const double share = emm_shared_share();
    if (share <= 0.0 || share >= 1.0) {
      emm_share_balance_ = 0;  // one kind only: nothing to balance
    } else if (shared_turn) {
      emm_share_balance_ += bytes * (1.0 - share);
    } else {
      emm_share_balance_ -= bytes * share;
    }
    (shared_turn ? emm_next_shared_ : emm_next_) = (slot + 1) % emm_carousel_.size();
  }
  return true;
}

void Scrambler::handle(const TsPacket& packet) {
  ++stats_.packets_in;
  if (!input_cc_.check(packet)) ++stats_.input_cc_errors;
  clock_.observe(packet);
  pipeline_.advance_to(clock_.now());
  if (!warned_no_pcr_ && stats_.packets_in == 20'000 && !clock_.pcr_seen()) {
    warned_no_pcr_ = true;
    log_.warn("no PCR in the first 20000 packets: crypto periods and ECM repetition are timed at an assumed ",
              config_.assumed_bitrate, " bit/s (set --bitrate)");
  }
  schedule(false);

  const std::uint16_t pid = packet.pid();
  used_pids_.set(pid);  // later allocations keep away from it
  if (ca_pids_.test(pid)) {
    // The input started using one of our CA PIDs: sending both would corrupt the CA stream.
    ++stats_.packets_dropped;
    if (!warned_collision_) log_.error("the input now uses PID ", pid, ", one of the CA PIDs: those input packets are dropped");
    warned_collision_ = true;
    free_slot(nullptr);
    settle_inserts();
    return;
  }
  if (pid == streams::kEitPid && !input_has_eit_) {
    input_has_eit_ = true;  // the input's own EIT wins; ours would clash on the PID
    log_.info("the input carries an EIT: PPV events are not added to it");
  }
  if (pid == streams::kPatPid) {
    pat_assembler_->feed(packet);
    emit_now(restamped(packet));
  } else if (pid == streams::kCatPid) {
    cat_assembler_->feed(packet);  // replaced by our CAT, which carries its descriptors
    free_slot(nullptr);
  } else if (pid == streams::kSdtPid) {
    if (!input_has_sdt_) log_.info("the input carries an SDT: it is rewritten (free_CA_mode) rather than replaced by ours");
    input_has_sdt_ = true;
    sdt_assembler_->feed(packet);  // replaced by the rewritten SDT
    free_slot(nullptr);
  } else if (auto* a = pmt_assemblers_.find(pid)) {
    (*a)->feed(packet);  // replaced by the rewritten PMT
    free_slot(nullptr);
  } else if (auto* owner = services_by_es_pid_.find(pid)) {
    Service& s = **owner;
    if (s.blocked || s.vanished || !s.active) {
      ++stats_.packets_dropped;
      free_slot(nullptr);
    } else if (packet.scrambling() != Scrambling::clear) {
      ++stats_.already_scrambled;
      if (config_.pass_scrambled) {
        emit_now(restamped(packet));
      } else {
        ++stats_.packets_dropped;
        free_slot(nullptr);
        if (!warned_scrambled_) log_.error("service ", s.service_id, ": PID ", pid, " arrives scrambled already; dropped (--pass-scrambled passes it)");
        warned_scrambled_ = true;
      }
    } else if (packet.payload().empty()) {
      emit_now(restamped(packet));
    } else {
      const auto parity = s.period % 2;
      pipeline_.push(restamped(packet), s.slot[parity], parity == 0 ? Scrambling::even : Scrambling::odd);
      ++stats_.packets_scrambled;
    }
  } else if (pid == streams::kNullPid) {
    ++stats_.input_nulls;
    free_slot(&packet);
  } else {
    pipeline_.push(restamped(packet), CsaPipeline::kNoSlot);
  }
  settle_inserts();
}

void Scrambler::process(std::span<const TsPacket> in, std::vector<TsPacket>& out) {
  const std::size_t before = out.size();
  // Packets are scrambled in `out` itself; until take_ready its tail is the pipeline's (held, not
  // scrambled yet), so take_ready runs on every way out.
  pipeline_.output_to(out);
  try {
    for (const auto& p : in) {
      if (refusal_) break;
      if (survey_) {
        // Held back until the PSI is known; looked at again every so often (and at each PAT/PMT
        // packet) rather than at every packet.
        survey_->feed(p);
        surveyed_.push_back(p);
        if (surveyed_.size() % 256 == 0 || p.pid() == streams::kPatPid) survey(false);
      } else {
        handle(p);
      }
    }
  } catch (...) {
    pipeline_.take_ready(out);
    throw;
  }
  pipeline_.take_ready(out);
  if (refusal_) out.resize(before);  // nothing is sent once refused
  stats_.packets_out += out.size() - before;
}

void Scrambler::finish(std::vector<TsPacket>& out) {
  if (survey_ && !refusal_) survey(true);
  if (refusal_) return;
  const std::size_t before = out.size();
  if (replace_nulls_) {
    // Adding them now would change the count; what is left was repeated often enough already.
    stats_.inserts_unsent += inserts_.size();
    inserts_.clear();
    std::fill(pending_by_pid_.begin(), pending_by_pid_.end(), 0);
    urgent_pending_ = 0;
    priority_pending_ = 0;
    if (debt_ > 0 || stats_.inserts_unsent > 0) {
      log_.warn("too little stuffing at the end: ", debt_, " packets sent ahead were not given back, ", stats_.inserts_unsent,
                " inserted packets left unsent");
    }
  } else {
    flush_inserts();
  }
  pipeline_.flush(out);
  stats_.packets_out += out.size() - before;
}

const char* to_string(ServiceState::Mode mode) {
  switch (mode) {
    case ServiceState::Mode::waiting: return "waiting";
    case ServiceState::Mode::scrambled: return "scrambled";
    case ServiceState::Mode::no_key: return "no key";
    case ServiceState::Mode::vanished: return "vanished";
    case ServiceState::Mode::clear: return "clear";
  }
  return "?";
}

std::vector<ServiceState> Scrambler::service_states() const {
  std::map<std::uint16_t, ServiceState> by_id;
  for (const auto id : clear_services_) by_id[id] = ServiceState{id, ServiceState::Mode::clear, 0, 0};
  for (const auto& [pid, s] : services_by_pmt_pid_) {
    ServiceState state{s->service_id, ServiceState::Mode::waiting, s->period, s->ecm_pid};
    if (s->vanished) state.mode = ServiceState::Mode::vanished;
    else if (s->blocked) state.mode = ServiceState::Mode::no_key;
    else if (s->active) state.mode = ServiceState::Mode::scrambled;
    by_id[s->service_id] = state;
  }
  std::vector<ServiceState> states;
  for (const auto& [id, state] : by_id) states.push_back(state);
  return states;
}

ScramblerStats Scrambler::stats() const {
  ScramblerStats s = stats_;
  s.csa_full_batches = pipeline_.stats().full_batches;
  s.csa_partial_batches = pipeline_.stats().partial_batches;
  return s;
}

}  // namespace usher::headend
