#include "usher/stb/descrambler.h"

#include <algorithm>
#include <cstdio>

namespace usher::stb {

using streams::Scrambling;
using streams::TsPacket;

struct Descrambler::Service {
  std::uint16_t service_id = 0;
  std::uint16_t pmt_pid = 0;
  std::optional<std::uint16_t> ecm_pid;
  std::set<std::uint16_t> es_pids;
  CsaPipeline::Slot slot[2] = {CsaPipeline::kNoSlot, CsaPipeline::kNoSlot};
  std::vector<std::uint8_t> last_ecm;
  // Broadcast time and crypto period of the newest current control word taken: an ECM that is not
  // newer is a replay (or a reordering) and changes nothing.
  std::optional<std::pair<std::uint64_t, std::uint32_t>> freshest;
  bool descrambling = false;
  bool pmt_seen = false;
  std::set<std::uint16_t> other_ca_systems;  // CA systems of its PMT that are not this STB's
  // The last refusal of its ECMs (none: no ECM refused since the last one taken).
  std::optional<ServiceOutcome> refused_as;
  std::string reason;
  std::uint64_t packets_descrambled = 0;
  std::uint64_t packets_left_scrambled = 0;
};

Descrambler::Descrambler(SecureElement* se, DescramblerConfig config) : se_(se), config_(std::move(config)) {
  pipeline_.set_max_hold(std::uint64_t{config_.max_hold_ms} * (streams::kPcrHz / 1000));
  if (config_.fixed_cws) {
    fixed_slot_[0] = pipeline_.add_slot();
    fixed_slot_[1] = pipeline_.add_slot();
    pipeline_.set_key(fixed_slot_[0], config_.fixed_cws->even);
    pipeline_.set_key(fixed_slot_[1], config_.fixed_cws->odd);
  } else if (se_ == nullptr) {
    throw std::invalid_argument("Descrambler needs a secure element unless control words are fixed");
  }
  assemblers_[streams::kPatPid] = std::make_unique<streams::SectionAssembler>([this](auto s) { on_pat(s); });
  assemblers_[streams::kCatPid] = std::make_unique<streams::SectionAssembler>([this](auto s) { on_cat(s); });
}

Descrambler::~Descrambler() = default;

void Descrambler::on_pat(std::span<const std::uint8_t> section) {
  const auto pat = streams::Pat::parse(section);
  if (!pat) return;
  pat_seen_ = true;
  for (const auto& prog : pat->programs) {
    // A PID already followed for another role (PAT, CAT, EMM, another PMT or an ECM) is refused:
    // a hostile PAT must not replace the assembler that is running this callback.
    if (prog.program_number == 0 || assemblers_.contains(prog.pid)) continue;
    auto s = std::make_unique<Service>();
    s->service_id = prog.program_number;
    s->pmt_pid = prog.pid;
    s->slot[0] = pipeline_.add_slot();
    s->slot[1] = pipeline_.add_slot();
    const auto pid = prog.pid;
    assemblers_[pid] = std::make_unique<streams::SectionAssembler>([this, pid](auto sec) { on_pmt(pid, sec); });
    services_[pid] = std::move(s);
  }
}

void Descrambler::on_cat(std::span<const std::uint8_t> section) {
  if (se_ == nullptr) return;
  const auto cat = streams::Cat::parse(section);
  if (!cat) return;
  for (const auto& ca : streams::find_ca_descriptors(cat->descriptors)) {
    if (ca.ca_system_id != se_->ca_system_id() || emm_pid_ == ca.ca_pid || assemblers_.contains(ca.ca_pid)) continue;
    emm_pid_ = ca.ca_pid;
    assemblers_[ca.ca_pid] = std::make_unique<streams::SectionAssembler>([this](auto s) { on_emm(s); });
    log_.info("EMM PID ", ca.ca_pid, " (CA_system_id 0x", std::hex, ca.ca_system_id, std::dec, ")");
  }
}

void Descrambler::on_pmt(std::uint16_t pid, std::span<const std::uint8_t> section) {
  const auto pmt = streams::Pmt::parse(section);
  if (!pmt) return;
  Service& s = *services_.at(pid);
  s.pmt_seen = true;
  for (auto es : s.es_pids) by_es_pid_.erase(es);
  s.es_pids.clear();
  for (const auto& st : pmt->streams) {
    s.es_pids.insert(st.pid);
    by_es_pid_[st.pid] = &s;
  }
  if (se_ == nullptr) return;
  std::optional<std::uint16_t> ecm_pid;
  s.other_ca_systems.clear();
  for (const auto& ca : streams::find_ca_descriptors(pmt->descriptors)) {
    if (ca.ca_system_id == se_->ca_system_id()) ecm_pid = ca.ca_pid;
    else s.other_ca_systems.insert(ca.ca_system_id);
  }
  if (ecm_pid && ecm_pid != s.ecm_pid && !assemblers_.contains(*ecm_pid)) {
    if (s.ecm_pid) assemblers_.erase(*s.ecm_pid);
    s.ecm_pid = ecm_pid;
    Service* sp = &s;
    assemblers_[*ecm_pid] = std::make_unique<streams::SectionAssembler>([this, sp](auto sec) { on_ecm(*sp, sec); });
    log_.info("service ", s.service_id, ": ECM PID ", *ecm_pid);
  }
}

void Descrambler::deny(Service& s, ServiceOutcome outcome, const std::string& reason) {
  if (reason != s.reason || s.descrambling) log_.warn("cannot descramble ", reason);
  s.descrambling = false;
  s.refused_as = outcome;
  s.reason = reason;
  ++stats_.ecm_denied;
}

namespace {

// Whether a control word from an ECM moves forward from the newest current one taken: its broadcast
// time later, or the same second and a later crypto period (`or_same`: or that very period). Time
// first, so that a restarted headend, whose periods count from 0 again, is still followed.
bool moves_forward(const entitlement::EcmPeriod& p, const std::optional<std::pair<std::uint64_t, std::uint32_t>>& freshest,
                   bool or_same) {
  if (!freshest) return true;
  if (p.time_unix != freshest->first) return p.time_unix > freshest->first;
  return or_same ? p.crypto_period >= freshest->second : p.crypto_period > freshest->second;
}

}  // namespace

void Descrambler::on_ecm(Service& s, std::span<const std::uint8_t> section) {
  using entitlement::EcmPart;
  // The same ECM repeats every ~100 ms: open it once.
  if (section.size() == s.last_ecm.size() && std::equal(section.begin(), section.end(), s.last_ecm.begin())) return;
  s.last_ecm.assign(section.begin(), section.end());
  const auto header = entitlement::peek_ecm(section);
  if (!header) {
    deny(s, ServiceOutcome::bad_ecm, header.error().message);
    return;
  }
  if (header->service_id != s.service_id) {
    deny(s, ServiceOutcome::bad_ecm, "service " + std::to_string(s.service_id) + ": ECM is for service " + std::to_string(header->service_id));
    return;
  }
  // Each control word is sealed for its own period's audience (the service's subscribers, or one PPV
  // event's ticket holders): open each on its own.
  auto current = se_->open_ecm(section, EcmPart::current);
  auto next = se_->open_ecm(section, EcmPart::next);
  if ((!current && current.error().code == Errc::not_entitled) || (!next && next.error().code == Errc::not_entitled)) {
    // A ticket may have arrived over the local link, stored by `usher stb link`.
    if (auto reloaded = se_->reload(); !reloaded) store_failed(reloaded.error());
    if (!current && current.error().code == Errc::not_entitled) current = se_->open_ecm(section, EcmPart::current);
    if (!next && next.error().code == Errc::not_entitled) next = se_->open_ecm(section, EcmPart::next);
  }
  const int current_parity = header->table_id == entitlement::kTableEcmEven ? 0 : 1;
  if (current && !moves_forward(*current, s.freshest, true)) {
    // A replayed or reordered ECM: the keys in use stay.
    ++stats_.ecm_stale;
    log_.warn("service ", s.service_id, ": ECM of crypto period ", current->crypto_period, " (broadcast time ",
              current->time_unix, ") is older than the one in use; refused");
    return;
  }
  // The parental limit applies to each control word by its own period's rating.
  auto rated_above_limit = [&](const entitlement::EcmPeriod& p) {
    return p.access.min_age > se_->parental_max_age() && !config_.parental_unlocked;
  };
  if (next && !moves_forward(*next, s.freshest, false)) {
    ++stats_.ecm_stale;
    log_.warn("service ", s.service_id, ": ECM announces crypto period ", next->crypto_period, " older than the one in use; refused");
    return;
  }
  if (next && !rated_above_limit(*next)) {
    pipeline_.set_key(s.slot[1 - current_parity], next->cw);
  } else if (next || next.error().code == Errc::not_entitled) {
    pipeline_.clear_key(s.slot[1 - current_parity]);  // the next period is not ours: no old key left to try
  }
  if (!current) {
    // Not entitled: the key of this parity is no longer ours to use. Forged or damaged: keep what we hold.
    if (current.error().code == Errc::not_entitled) pipeline_.clear_key(s.slot[current_parity]);
    deny(s, current.error().code == Errc::not_entitled ? ServiceOutcome::no_entitlement : ServiceOutcome::bad_ecm,
         current.error().message);
    return;
  }
  if (rated_above_limit(*current)) {
    pipeline_.clear_key(s.slot[current_parity]);
    deny(s, ServiceOutcome::parental_lock, "service " + std::to_string(s.service_id) + ": rated " + std::to_string(current->access.min_age) +
                "+, above this STB's parental limit of " + std::to_string(se_->parental_max_age()) +
                "; enter the PIN (usher stb run --pin)");
    return;
  }
  if (!current->cw.checksums_ok()) log_.debug("service ", s.service_id, ": CW checksum bytes differ from DVB practice");
  if (current->event_id != 0) {
    if (auto marked = se_->mark_watched(current->event_id); !marked) store_failed(marked.error());
  }
  s.freshest = std::pair{current->time_unix, current->crypto_period};
  pipeline_.set_key(s.slot[current_parity], current->cw);
  if (!s.descrambling) log_.info("service ", s.service_id, ": descrambling (crypto period ", current->crypto_period, ")");
  s.descrambling = true;
  s.refused_as.reset();
  s.reason.clear();
  ++stats_.ecm_accepted;
}

void Descrambler::store_failed(const Error& error) {
  // The carousel repeats the same EMM every few seconds: say it the first time and then at each
  // power of two, and count every one.
  ++stats_.store_failures;
  if ((stats_.store_failures & (stats_.store_failures - 1)) == 0) {
    log_.error("cannot store (", stats_.store_failures, " times so far), descrambling with what is held: ", error.message);
  }
}

void Descrambler::on_emm(std::span<const std::uint8_t> section) {
  auto outcome = se_->apply_emm(section);
  if (!outcome && outcome.error().code == Errc::storage) {
    store_failed(outcome.error());
    return;
  }
  if (!outcome) {
    ++stats_.emm_refused;
    log_.warn("EMM refused: ", outcome.error().message);
    return;
  }
  switch (*outcome) {
    case EmmOutcome::applied:
      ++stats_.emm_taken;
      log_.info("EMM applied for STB ", se_->stb_id());
      // New rights: an ECM refused before this EMM may open now; its next repetition is looked at
      // again rather than skipped as already seen.
      for (auto& [pid, service] : services_) service->last_ecm.clear();
      break;
    case EmmOutcome::duplicate: ++stats_.emm_duplicate; break;
    case EmmOutcome::not_addressed: ++stats_.emm_other_stb; break;
    case EmmOutcome::nothing_for_this_stb: ++stats_.emm_nothing_for_stb; break;
  }
}

void Descrambler::handle(const TsPacket& packet) {
  ++stats_.packets_in;
  clock_.observe(packet);
  pipeline_.advance_to(clock_.now());
  if (!continuity_.check(packet)) ++stats_.cc_errors;
  const auto pid = packet.pid();
  if (auto* a = assemblers_.find(pid)) (*a)->feed(packet);
  const auto sc = packet.scrambling();
  if (sc != Scrambling::even && sc != Scrambling::odd) {
    pipeline_.push(packet, CsaPipeline::kNoSlot);
    return;
  }
  const int parity = sc == Scrambling::even ? 0 : 1;
  Service* owner = nullptr;
  if (auto* o = by_es_pid_.find(pid)) owner = *o;
  CsaPipeline::Slot slot = CsaPipeline::kNoSlot;
  if (config_.fixed_cws) {
    slot = fixed_slot_[parity];
  } else if (owner != nullptr && pipeline_.has_key(owner->slot[parity])) {
    slot = owner->slot[parity];
  }
  if (slot == CsaPipeline::kNoSlot) {
    ++stats_.packets_left_scrambled;
    if (owner != nullptr) ++owner->packets_left_scrambled;
    pipeline_.push(packet, CsaPipeline::kNoSlot);
    return;
  }
  pipeline_.push(packet, slot, Scrambling::clear);
  ++stats_.packets_descrambled;
  if (owner != nullptr) ++owner->packets_descrambled;
}

void Descrambler::process(std::span<const TsPacket> in, std::vector<TsPacket>& out) {
  const auto before = out.size();
  // Packets are descrambled in `out` itself; until take_ready its tail is the pipeline's.
  pipeline_.output_to(out);
  try {
    for (const auto& p : in) handle(p);
  } catch (...) {
    pipeline_.take_ready(out);
    throw;
  }
  pipeline_.take_ready(out);
  stats_.packets_out += out.size() - before;
}

void Descrambler::finish(std::vector<TsPacket>& out) {
  const auto before = out.size();
  pipeline_.flush(out);
  stats_.packets_out += out.size() - before;
}

DescramblerStats Descrambler::stats() const {
  DescramblerStats s = stats_;
  assemblers_.for_each([&](std::uint16_t, const auto& a) { s.sections_dropped += a->dropped(); });
  return s;
}

const char* to_string(ServiceOutcome outcome) {
  switch (outcome) {
    case ServiceOutcome::descrambled: return "descrambled";
    case ServiceOutcome::not_scrambled: return "not scrambled";
    case ServiceOutcome::no_entitlement: return "no entitlement";
    case ServiceOutcome::parental_lock: return "parental lock";
    case ServiceOutcome::no_ecm: return "no ECM seen";
    case ServiceOutcome::bad_ecm: return "bad ECM";
    case ServiceOutcome::other_ca_system: return "another CA system";
    case ServiceOutcome::no_pmt: return "no PMT seen";
    case ServiceOutcome::not_in_stream: return "not in the stream";
  }
  return "unknown";
}

bool watchable(ServiceOutcome outcome) { return outcome == ServiceOutcome::descrambled || outcome == ServiceOutcome::not_scrambled; }

namespace {
std::string hex4(std::uint16_t v) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%04X", unsigned{v});
  return text;
}
}  // namespace

ServiceStatus Descrambler::status_of(const Service& s) const {
  ServiceStatus st{s.service_id, s.descrambling, s.reason, ServiceOutcome::descrambled, s.packets_descrambled, s.packets_left_scrambled};
  const std::string svc = "service " + std::to_string(s.service_id);
  auto set = [&](ServiceOutcome outcome, std::string reason) {
    st.outcome = outcome;
    st.reason = std::move(reason);
  };
  if (!s.pmt_seen) {
    set(ServiceOutcome::no_pmt, svc + ": the PAT lists it, but its PMT (PID " + std::to_string(s.pmt_pid) + ") never came");
  } else if (s.descrambling || (config_.fixed_cws && s.packets_descrambled > 0)) {
    st.descrambling = true;
    st.reason.clear();
  } else if (s.packets_descrambled + s.packets_left_scrambled == 0) {
    // Nothing of it was scrambled: the viewer has it as it came, ECMs or not.
    set(ServiceOutcome::not_scrambled, svc + ": not scrambled (clear in the stream, passed through as it is)");
  } else if (s.refused_as) {
    set(*s.refused_as, s.reason);
  } else if (s.ecm_pid) {
    set(ServiceOutcome::no_ecm, svc + ": scrambled, and no ECM seen on PID " + std::to_string(*s.ecm_pid));
  } else if (!s.other_ca_systems.empty() && se_ != nullptr) {
    std::string systems;
    for (auto id : s.other_ca_systems) systems += (systems.empty() ? "" : ", ") + hex4(id);
    set(ServiceOutcome::other_ca_system,
        svc + ": scrambled for CA system " + systems + " only, not this STB's (" + hex4(se_->ca_system_id()) + ")");
  } else {
    set(ServiceOutcome::no_ecm, svc + ": scrambled, but its PMT announces no ECM" +
                                    (se_ != nullptr ? " for this STB's CA system (" + hex4(se_->ca_system_id()) + ")" : std::string()));
  }
  return st;
}

std::vector<ServiceStatus> Descrambler::services() const {
  std::vector<ServiceStatus> out;
  for (const auto& [pid, s] : services_) out.push_back(status_of(*s));
  return out;
}

std::vector<ServiceStatus> Descrambler::services(std::span<const std::uint16_t> requested) const {
  if (requested.empty()) return services();
  std::vector<ServiceStatus> out;
  for (auto id : requested) {
    const auto found = std::find_if(services_.begin(), services_.end(), [&](const auto& entry) { return entry.second->service_id == id; });
    if (found != services_.end()) {
      out.push_back(status_of(*found->second));
      continue;
    }
    std::string listed;
    for (const auto& [pid, s] : services_) listed += (listed.empty() ? "" : ", ") + std::to_string(s->service_id);
    ServiceStatus st;
    st.service_id = id;
    st.outcome = ServiceOutcome::not_in_stream;
    st.reason = "service " + std::to_string(id) + " is not in the stream (" +
                (!pat_seen_ ? std::string("no PAT seen") : listed.empty() ? std::string("its PAT lists no service")
                                                                          : "its PAT lists service" + std::string(services_.size() == 1 ? " " : "s ") + listed) +
                ")";
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace usher::stb
