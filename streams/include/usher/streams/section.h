// PSI/SI sections (ISO/IEC 13818-1, 2.4.4): CRC-32, reassembly from TS packets, packetisation.
//
// SectionAssembler follows one PID: pointer field, sections spanning packets, several sections in
// one packet, 0xFF stuffing, continuity breaks. It hands out each complete section and counts the
// ones it had to drop (bad CRC, truncated, broken continuity). SectionPacketizer does the reverse
// with correct continuity counters.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/streams/ts_packet.h"

namespace usher::streams {

// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial 0xFFFFFFFF, no reflection, no final xor).
std::uint32_t crc32_mpeg2(std::span<const std::uint8_t> data);

inline constexpr std::size_t kMaxSectionSize = 4096;  // private sections; PSI tables stop at 1024

// The common header of a section. Long-form fields are meaningful only if syntax_indicator.
struct SectionHeader {
  std::uint8_t table_id = 0;
  bool syntax_indicator = false;
  std::uint16_t section_length = 0;  // bytes after the 3-byte header
  std::uint16_t table_id_extension = 0;
  std::uint8_t version = 0;
  bool current_next = true;
  std::uint8_t section_number = 0;
  std::uint8_t last_section_number = 0;
};

// Parses the header of a complete section and, for long-form sections, checks its CRC.
struct SectionView {
  SectionHeader header;
  std::span<const std::uint8_t> body;  // after the header (8 bytes long form, 3 short), before CRC
};
// A section (or, in psi.h, a table) that cannot be read is Errc::malformed, the message saying why:
// "truncated" (shorter than its own length fields say), "CRC-32 mismatch", "invalid syntax" (a field
// has a value the standard does not allow) or, for a table, "unexpected table_id".
Result<SectionView> parse_section(std::span<const std::uint8_t> bytes);

// Builds a long-form section (with CRC) from its header fields and body.
std::vector<std::uint8_t> build_long_section(const SectionHeader& header,
                                             std::span<const std::uint8_t> body);
// Builds a short-form private section (no CRC): table_id, flags, length, body.
std::vector<std::uint8_t> build_short_section(std::uint8_t table_id, std::span<const std::uint8_t> body);

class SectionAssembler {
 public:
  using Handler = std::function<void(std::span<const std::uint8_t> section)>;
  explicit SectionAssembler(Handler handler) : handler_(std::move(handler)) {}

  void feed(const TsPacket& packet);

  [[nodiscard]] std::uint64_t sections() const { return sections_; }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

 private:
  void take(std::span<const std::uint8_t> data);
  void deliver_complete();

  Handler handler_;
  std::vector<std::uint8_t> buffer_;
  bool in_section_ = false;
  int last_cc_ = -1;
  std::uint64_t sections_ = 0;
  std::uint64_t dropped_ = 0;
};

// Cuts sections into TS packets on one PID. Each section starts a new packet (pointer_field 0) and
// the last packet is padded with 0xFF, which every demultiplexer accepts.
class SectionPacketizer {
 public:
  explicit SectionPacketizer(std::uint16_t pid) : pid_(pid) {}
  void packetize(std::span<const std::uint8_t> section, std::vector<TsPacket>& out);
  [[nodiscard]] std::uint16_t pid() const { return pid_; }
  void set_next_cc(std::uint8_t cc) { cc_ = cc & 0x0F; }

 private:
  std::uint16_t pid_;
  std::uint8_t cc_ = 0;
};

}  // namespace usher::streams
