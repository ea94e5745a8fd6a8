// Wall-clock time in unix seconds: what tickets, history records, receipts and folios are stamped
// with. Stream time (PCR) is separate: see streams/stream_clock.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace usher {

inline std::uint64_t unix_now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// `t` (unix seconds) as UTC text in strftime's `format`.
inline std::string format_utc(std::uint64_t t, const char* format = "%Y-%m-%dT%H:%M:%SZ") {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  const auto n = std::strftime(buf, sizeof(buf), format, &tm);
  return std::string(buf, n);
}

}  // namespace usher
