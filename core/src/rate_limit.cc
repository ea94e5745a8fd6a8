#include "usher/core/rate_limit.h"

#include <algorithm>

namespace usher {
namespace {
constexpr std::size_t kForgetAbove = 4096;  // buckets kept before the full ones are let go
}

bool RateLimiter::admit(std::uint64_t caller, Clock::time_point now) {
  const std::int64_t full = static_cast<std::int64_t>(rate_.burst) * 1000;
  auto [it, fresh] = buckets_.try_emplace(caller, Bucket{full, now});
  auto& b = it->second;
  if (!fresh && now > b.updated) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - b.updated).count();
    b.milli_tokens = std::min(full, b.milli_tokens + ms * static_cast<std::int64_t>(rate_.per_second));
    b.updated = now;
  }
  if (b.milli_tokens < 1000) return false;
  b.milli_tokens -= 1000;
  if (buckets_.size() > kForgetAbove) forget_full_buckets(now);
  return true;
}

void RateLimiter::forget_full_buckets(Clock::time_point now) {
  // A bucket that has refilled is the same as none: forgetting it changes no answer.
  const std::int64_t full = static_cast<std::int64_t>(rate_.burst) * 1000;
  std::erase_if(buckets_, [&](const auto& entry) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - entry.second.updated).count();
    return entry.second.milli_tokens + ms * static_cast<std::int64_t>(rate_.per_second) >= full;
  });
}

}  // namespace usher
