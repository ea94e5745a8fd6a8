// A DVB-CSA2 control word as a secret value type, and the fixed-control-word file of the test mode.
// Kept apart from the scrambling itself (streams/csa.h, which wraps libdvbcsa) so that what only
// carries control words (ECMs, the secure element) needs neither libdvbcsa nor MPEG-TS packets.
//
//   ControlWord cw = ControlWord::random();   // checksum bytes already right
//   auto fixed = read_cw_file("cw.txt");        // Errc::malformed names the line at fault
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "usher/core/result.h"
#include "usher/core/secret.h"

namespace usher {

// An 8-byte DVB-CSA2 control word. DVB practice: byte 3 = b0+b1+b2, byte 7 = b4+b5+b6 (mod 256).
class ControlWord {
 public:
  ControlWord() = default;
  explicit ControlWord(std::span<const std::uint8_t, 8> bytes) : bytes_(bytes) {}
  // A fresh control word from the CSPRNG with correct checksum bytes.
  static ControlWord random();
  [[nodiscard]] bool checksums_ok() const;
  [[nodiscard]] std::span<const std::uint8_t, 8> bytes() const { return bytes_.bytes(); }
  [[nodiscard]] ControlWord clone() const { return ControlWord(bytes_.bytes()); }
  [[nodiscard]] bool operator==(const ControlWord& o) const { return bytes_ == o.bytes_; }

 private:
  Secret<8> bytes_;
};

// Reads a fixed-control-word file (test mode): one or two lines of 16 hex digits, the even CW then the
// odd CW (the odd defaults to the even). Errc::malformed with the line at fault otherwise.
struct FixedControlWords {
  ControlWord even;
  ControlWord odd;
};
Result<FixedControlWords> read_cw_file(const std::string& path);

}  // namespace usher
