// RateLimiter: how many requests each caller may make, as token buckets keyed by the caller's
// identity (an authenticated card id; one shared key for callers nobody has authenticated). A
// caller may burst up to `burst` requests, then `per_second` more each second. The services use it
// for requests that create rows, so that no caller can fill a database (docs/protocol.md, "Limits").
//
//   RateLimiter limiter({/*burst=*/64, /*per_second=*/8});
//   if (!limiter.admit(card_id, std::chrono::steady_clock::now())) -> Errc::busy
#pragma once

#include <chrono>
#include <cstdint>
#include <unordered_map>

namespace usher {

class RateLimiter {
 public:
  struct Rate {
    std::uint32_t burst = 64;
    std::uint32_t per_second = 8;
  };
  using Clock = std::chrono::steady_clock;

  explicit RateLimiter(Rate rate) : rate_(rate) {}
  // Takes one request's token from `caller`'s bucket; false (nothing taken) when it is empty.
  bool admit(std::uint64_t caller, Clock::time_point now);

 private:
  // Tokens are counted in thousandths, so that refilling by elapsed milliseconds stays in integers.
  struct Bucket {
    std::int64_t milli_tokens = 0;
    Clock::time_point updated;
  };
  void forget_full_buckets(Clock::time_point now);
  Rate rate_;
  std::unordered_map<std::uint64_t, Bucket> buckets_;
};

}  // namespace usher
