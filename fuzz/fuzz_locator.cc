// Locators from the command line (udp://, rtp://, @GROUP, SOURCE@GROUP, [IPv6], ?ttl=&localaddr=),
// parsed for input and output: never a crash, and every refusal names a part and says why.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "usher/streams/locator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto direction : {usher::streams::Direction::input, usher::streams::Direction::output}) {
    const auto parsed = usher::streams::parse_locator(text, direction);
    if (const auto* e = std::get_if<usher::streams::LocatorError>(&parsed)) {
      if (e->part.empty() || e->message.empty()) __builtin_trap();
      continue;
    }
    const auto& l = std::get<usher::streams::Locator>(parsed);
    if (l.kind == usher::streams::Locator::Kind::ip) {
      if (l.ip.port == 0) __builtin_trap();
      if (direction == usher::streams::Direction::output && l.ip.receive_form) __builtin_trap();
      if (!usher::streams::is_network_locator(text)) __builtin_trap();
    }
  }
  return 0;
}
