// Locators from the command line (udp://, rtp://, @GROUP, SOURCE@GROUP, [IPv6], ?ttl=&localaddr=),
// parsed for input and output: never a crash, and every refusal is Errc::invalid_argument, names a
// part right after the quoted locator, "... locator 'TEXT' (PART): ", and says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "usher/streams/locator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto direction : {usher::streams::Direction::input, usher::streams::Direction::output}) {
    const auto parsed = usher::streams::parse_locator(text, direction);
    if (!parsed) {
      const auto& e = parsed.error();
      if (e.code != usher::Errc::invalid_argument) __builtin_trap();
      const std::string quoted = "locator '" + std::string(text) + "' (";
      const auto at = e.message.find(quoted);
      if (at == std::string::npos) __builtin_trap();
      const auto close = e.message.find("): ", at + quoted.size());
      if (close == std::string::npos || close == at + quoted.size()) __builtin_trap();  // a part, named
      if (e.message.size() == close + 3) __builtin_trap();                                // and why
      continue;
    }
    const auto& l = *parsed;
    if (l.kind == usher::streams::Locator::Kind::ip) {
      if (l.ip.port == 0) __builtin_trap();
      if (direction == usher::streams::Direction::output && l.ip.receive_form) __builtin_trap();
      if (!usher::streams::is_network_locator(text)) __builtin_trap();
    }
  }
  return 0;
}
