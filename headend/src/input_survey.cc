#include "input_survey.h"

namespace usher::headend {

InputSurvey::InputSurvey()
    : pat_assembler_(std::make_unique<streams::SectionAssembler>([this](auto s) { on_pat(s); })) {}

void InputSurvey::feed(const streams::TsPacket& packet) {
  clock_.observe(packet);
  const auto pid = packet.pid();
  pids_seen_.set(pid);
  if (pid == streams::kPatPid) {
    pat_assembler_->feed(packet);
  } else if (auto* a = pmt_assemblers_.find(pid)) {
    (*a)->feed(packet);
  }
  if (!packet.payload().empty() && pid != streams::kNullPid) {
    ++payloads_[pid];
    if (packet.scrambling() != streams::Scrambling::clear) ++scrambled_[pid];
  }
}

void InputSurvey::on_pat(std::span<const std::uint8_t> section) {
  const auto view = streams::parse_section(section);
  if (!view) return;
  const auto pat = streams::Pat::parse(section);
  if (!pat) return;
  const auto& h = view->header;
  if (pat_version_ != h.version) {  // a new PAT: start again
    pat_version_ = h.version;
    pat_sections_.clear();
    pat_raw_.clear();
  }
  pat_last_section_ = h.last_section_number;
  pat_sections_[h.section_number] = pat->programs;
  pat_raw_[h.section_number].assign(section.begin(), section.end());
  for (const auto& prog : pat->programs) {
    if (prog.program_number == 0 || pmt_assemblers_.contains(prog.pid) || prog.pid == streams::kPatPid) continue;
    pmt_assemblers_[prog.pid] = std::make_unique<streams::SectionAssembler>([this](auto s) { on_pmt(s); });
  }
}

void InputSurvey::on_pmt(std::span<const std::uint8_t> section) {
  if (auto pmt = streams::Pmt::parse(section)) pmts_[pmt->program_number] = std::move(*pmt);
}

bool InputSurvey::pat_complete() const {
  if (!pat_version_) return false;
  for (unsigned n = 0; n <= pat_last_section_; ++n) {
    if (!pat_sections_.contains(static_cast<std::uint8_t>(n))) return false;
  }
  return true;
}

std::map<std::uint16_t, std::uint16_t> InputSurvey::programs() const {
  std::map<std::uint16_t, std::uint16_t> out;
  for (const auto& [n, programs] : pat_sections_) {
    for (const auto& prog : programs) out[prog.program_number] = prog.pid;
  }
  return out;
}

const streams::Pmt* InputSurvey::pmt(std::uint16_t program_number) const {
  const auto it = pmts_.find(program_number);
  return it == pmts_.end() ? nullptr : &it->second;
}

std::vector<std::vector<std::uint8_t>> InputSurvey::pat_sections() const {
  std::vector<std::vector<std::uint8_t>> out;
  for (const auto& [n, bytes] : pat_raw_) out.push_back(bytes);
  return out;
}

std::uint64_t InputSurvey::payload_packets(std::uint16_t pid) const { return pid < payloads_.size() ? payloads_[pid] : 0; }

std::uint64_t InputSurvey::scrambled_packets(std::uint16_t pid) const { return pid < scrambled_.size() ? scrambled_[pid] : 0; }

}  // namespace usher::headend
