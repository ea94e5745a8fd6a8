// TsPacket: one 188-byte MPEG-TS packet (ISO/IEC 13818-1, 2.4.3) as a value type.
//
// An array of TsPacket is a stream: no allocation per packet, trivially copyable. Accessors read and
// write the header bit fields in place; every bit field is declared here once.
//
//   TsPacket p = TsPacket::null_packet();
//   p.set_pid(0x100); p.set_scrambling(Scrambling::even);
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

namespace usher::streams {

inline constexpr std::size_t kPacketSize = 188;
inline constexpr std::size_t kHeaderSize = 4;
inline constexpr std::uint8_t kSyncByte = 0x47;
inline constexpr std::uint16_t kPatPid = 0x0000;
inline constexpr std::uint16_t kCatPid = 0x0001;
inline constexpr std::uint16_t kNullPid = 0x1FFF;
inline constexpr std::uint16_t kMaxPid = 0x1FFF;

// transport_scrambling_control (2 bits). DVB (ETR 289): 10 = even key, 11 = odd key.
enum class Scrambling : std::uint8_t { clear = 0, reserved = 1, even = 2, odd = 3 };

// 27 MHz PCR units per second.
inline constexpr std::uint64_t kPcrHz = 27'000'000;

struct TsPacket {
  std::array<std::uint8_t, kPacketSize> bytes;

  static TsPacket null_packet();

  [[nodiscard]] bool sync_ok() const { return bytes[0] == kSyncByte; }
  [[nodiscard]] bool transport_error() const { return (bytes[1] & 0x80) != 0; }
  [[nodiscard]] bool pusi() const { return (bytes[1] & 0x40) != 0; }
  void set_pusi(bool on) { bytes[1] = static_cast<std::uint8_t>((bytes[1] & ~0x40) | (on ? 0x40 : 0)); }
  [[nodiscard]] std::uint16_t pid() const {
    return static_cast<std::uint16_t>(((bytes[1] & 0x1F) << 8) | bytes[2]);
  }
  void set_pid(std::uint16_t pid) {
    bytes[1] = static_cast<std::uint8_t>((bytes[1] & 0xE0) | ((pid >> 8) & 0x1F));
    bytes[2] = static_cast<std::uint8_t>(pid & 0xFF);
  }
  [[nodiscard]] Scrambling scrambling() const { return static_cast<Scrambling>(bytes[3] >> 6); }
  void set_scrambling(Scrambling s) {
    bytes[3] = static_cast<std::uint8_t>((bytes[3] & 0x3F) | (static_cast<std::uint8_t>(s) << 6));
  }
  [[nodiscard]] bool has_adaptation() const { return (bytes[3] & 0x20) != 0; }
  [[nodiscard]] bool has_payload() const { return (bytes[3] & 0x10) != 0; }
  void set_adaptation_payload(bool adaptation, bool payload) {
    bytes[3] = static_cast<std::uint8_t>((bytes[3] & 0xCF) | (adaptation ? 0x20 : 0) | (payload ? 0x10 : 0));
  }
  [[nodiscard]] std::uint8_t cc() const { return bytes[3] & 0x0F; }
  void set_cc(std::uint8_t cc) { bytes[3] = static_cast<std::uint8_t>((bytes[3] & 0xF0) | (cc & 0x0F)); }

  // Offset of the payload, or kPacketSize when the packet has none or the adaptation field length
  // is out of range (a corrupt packet then has an empty payload rather than a wild one).
  [[nodiscard]] std::size_t payload_offset() const {
    if (!has_payload()) return kPacketSize;
    if (!has_adaptation()) return kHeaderSize;
    return std::min<std::size_t>(kHeaderSize + 1 + bytes[4], kPacketSize);
  }
  [[nodiscard]] std::span<std::uint8_t> payload() { return std::span(bytes).subspan(payload_offset()); }
  [[nodiscard]] std::span<const std::uint8_t> payload() const {
    return std::span(bytes).subspan(payload_offset());
  }
  [[nodiscard]] bool discontinuity() const { return has_adaptation() && bytes[4] > 0 && (bytes[5] & 0x80) != 0; }
  // The PCR in 27 MHz units, when the adaptation field carries one. (Inline, as the packet
  // accessors above: every packet of every stream is asked.)
  [[nodiscard]] std::optional<std::uint64_t> pcr() const {
    if (!has_adaptation() || bytes[4] < 7 || (bytes[5] & 0x10) == 0) return std::nullopt;
    const std::uint64_t base = (std::uint64_t{bytes[6]} << 25) | (std::uint64_t{bytes[7]} << 17) |
                               (std::uint64_t{bytes[8]} << 9) | (std::uint64_t{bytes[9]} << 1) |
                               (std::uint64_t{bytes[10]} >> 7);
    const std::uint64_t ext = (std::uint64_t{bytes[10]} & 0x01) << 8 | bytes[11];
    return base * 300 + ext;
  }
  void set_pcr(std::uint64_t pcr27);
};

static_assert(sizeof(TsPacket) == kPacketSize);
static_assert(std::is_trivially_copyable_v<TsPacket>);

// Tracks continuity counters per PID and counts errors (ISO/IEC 13818-1, 2.4.3.3): a packet with
// payload must increment the counter; one duplicate is allowed; a discontinuity flag resets.
class ContinuityChecker {
 public:
  // Returns false when the packet breaks continuity on its PID.
  bool check(const TsPacket& packet);
  [[nodiscard]] std::uint64_t errors() const { return errors_; }

 private:
  std::array<std::int8_t, kMaxPid + 1> last_{[] {
    std::array<std::int8_t, kMaxPid + 1> a{};
    a.fill(-1);
    return a;
  }()};
  std::uint64_t errors_ = 0;
};

}  // namespace usher::streams
