// Wall-clock time in unix seconds: what tickets, history records, receipts and folios are stamped
// with. Stream time (PCR) is separate: see streams/stream_clock.h.
#pragma once

#include <chrono>
#include <cstdint>

namespace usher {

inline std::uint64_t unix_now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace usher
