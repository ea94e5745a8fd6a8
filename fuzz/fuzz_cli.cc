// The command line's value parsers on arbitrary text (anything typed, or pasted by a script):
// numbers, durations and times either refuse or give a value inside the field's range, and never
// read past the text.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cli.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher::cli;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto v = parse_integer<std::uint16_t>(text, 1, 0xFFFF); v && *v == 0) __builtin_trap();
  if (auto v = parse_integer<std::uint32_t>(text, 1, 36500); v && (*v < 1 || *v > 36500)) __builtin_trap();
  if (auto v = parse_integer<std::uint16_t>(text, 0x20, 0x1FFE, true); v && (*v < 0x20 || *v > 0x1FFE)) __builtin_trap();
  if (auto v = parse_integer<std::int8_t>(text); v && (*v < -128 || *v > 127)) __builtin_trap();
  (void)parse_integer<std::uint64_t>(text, 1, UINT64_MAX);
  constexpr std::int64_t kHundredYearsMs = 100LL * 366 * 86400 * 1000;
  if (auto d = parse_duration(text); d && (d->count() < 0 || d->count() > kHundredYearsMs)) __builtin_trap();
  if (auto d = parse_duration(text, std::chrono::milliseconds(1)); d && (d->count() < 0 || d->count() > kHundredYearsMs)) __builtin_trap();
  if (auto t = parse_time(text, 1'800'000'000); t && *t > kLatestTime) __builtin_trap();
  if (auto t = parse_time(text, 0); t && *t > kLatestTime) __builtin_trap();
  (void)closest_match(std::string(text.substr(0, 64)), {"--home", "--stb", "--service", "--days", "buy"});
  return 0;
}
