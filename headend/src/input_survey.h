// InputSurvey: what the scrambler learns of its input before it writes a packet: the whole PAT
// (every section), the PMT of every program, every PID in use, and which PIDs already carry
// scrambled payloads. The scrambler holds the input back meanwhile, so that it can refuse a run
// (a requested service missing, an input already scrambled, no PID left for its CA streams) before
// anything is sent, and place its CA PIDs where nothing of the input is.
#pragma once

#include <bitset>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "usher/streams/pid_map.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"
#include "usher/streams/stream_clock.h"

namespace usher::headend {

class InputSurvey {
 public:
  InputSurvey();
  void feed(const streams::TsPacket& packet);

  // Every section of the current PAT version has been seen.
  [[nodiscard]] bool pat_complete() const;
  // program_number -> PMT PID (program 0 is the network PID), from the complete PAT.
  [[nodiscard]] std::map<std::uint16_t, std::uint16_t> programs() const;
  [[nodiscard]] const streams::Pmt* pmt(std::uint16_t program_number) const;
  // The PAT's sections as they came, to be handed to the scrambler before the packets held back.
  [[nodiscard]] std::vector<std::vector<std::uint8_t>> pat_sections() const;
  [[nodiscard]] const std::bitset<8192>& pids_seen() const { return pids_seen_; }
  [[nodiscard]] std::uint64_t payload_packets(std::uint16_t pid) const;
  [[nodiscard]] std::uint64_t scrambled_packets(std::uint16_t pid) const;
  [[nodiscard]] std::uint64_t stream_ms() const { return clock_.now() / 27'000; }
  [[nodiscard]] const streams::StreamClock& clock() const { return clock_; }

 private:
  void on_pat(std::span<const std::uint8_t> section);
  void on_pmt(std::span<const std::uint8_t> section);

  streams::StreamClock clock_;
  std::unique_ptr<streams::SectionAssembler> pat_assembler_;
  streams::PidMap<std::unique_ptr<streams::SectionAssembler>> pmt_assemblers_;
  std::optional<std::uint8_t> pat_version_;
  std::uint8_t pat_last_section_ = 0;
  std::map<std::uint8_t, std::vector<streams::Pat::Program>> pat_sections_;  // by section_number
  std::map<std::uint8_t, std::vector<std::uint8_t>> pat_raw_;                // by section_number
  std::map<std::uint16_t, streams::Pmt> pmts_;                                 // by program_number
  std::bitset<8192> pids_seen_;
  std::vector<std::uint32_t> payloads_ = std::vector<std::uint32_t>(8192);   // payload packets by PID
  std::vector<std::uint32_t> scrambled_ = std::vector<std::uint32_t>(8192);  // of which flagged scrambled
};

}  // namespace usher::headend
