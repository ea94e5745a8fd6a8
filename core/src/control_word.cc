#include "usher/core/control_word.h"

#include <array>
#include <fstream>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/hex.h"

namespace usher {

ControlWord ControlWord::random() {
  std::array<std::uint8_t, 8> b{};
  crypto::random_bytes(b);
  b[3] = static_cast<std::uint8_t>(b[0] + b[1] + b[2]);
  b[7] = static_cast<std::uint8_t>(b[4] + b[5] + b[6]);
  ControlWord cw{std::span<const std::uint8_t, 8>(b)};
  secure_zero(b.data(), b.size());
  return cw;
}

bool ControlWord::checksums_ok() const {
  const auto b = bytes();
  return b[3] == static_cast<std::uint8_t>(b[0] + b[1] + b[2]) &&
         b[7] == static_cast<std::uint8_t>(b[4] + b[5] + b[6]);
}

Result<FixedControlWords> read_cw_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::io, "cannot read control-word file " + path);
  std::vector<ControlWord> cws;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    auto bytes = from_hex(line);
    if (!bytes || bytes->size() != 8) {
      return make_error(Errc::malformed, path + ":" + std::to_string(number) + ": expected 16 hex digits");
    }
    cws.emplace_back(std::span<const std::uint8_t, 8>(bytes->data(), 8));
    secure_zero(bytes->data(), bytes->size());
  }
  if (cws.empty() || cws.size() > 2) {
    return make_error(Errc::malformed, path + ": expected one or two control words (even, then odd)");
  }
  FixedControlWords f{cws[0].clone(), cws.back().clone()};
  return f;
}

}  // namespace usher
