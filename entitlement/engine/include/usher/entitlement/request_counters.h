// RequestCounters: what a framed service (the engine's `entitlement serve`, `billing serve`) has
// answered, by kind of request and outcome, for its status lines, its --metrics endpoint and its
// final counters. The serving thread counts each request with its reply; any thread may take a
// snapshot (a mutex: scrapes and status lines are rare next to requests).
//
//   RequestCounters counters(entitlement_message_kind);
//   auto replies = engine.handle_batch(requests);
//   for (i...) counters.count(requests[i], replies[i]);
//   auto now = counters.snapshot();   // now.served, now.refused, now.by_kind["top_up"]
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace usher::entitlement {

// The name of a request kind (a MessageType or BillingMessage value); "unknown" for others.
std::string engine_message_kind(std::uint8_t type);
std::string billing_message_kind(std::uint8_t type);

class RequestCounters {
 public:
  struct Outcome {
    std::uint64_t served = 0;   // answered ok
    std::uint64_t refused = 0;  // answered with an error
    friend bool operator==(const Outcome&, const Outcome&) = default;
  };
  struct Snapshot {
    std::uint64_t served = 0;
    std::uint64_t refused = 0;
    std::map<std::string, Outcome> by_kind;  // "malformed": not a frame of ours
    friend bool operator==(const Snapshot&, const Snapshot&) = default;
  };

  explicit RequestCounters(std::function<std::string(std::uint8_t)> kind_name) : kind_name_(std::move(kind_name)) {}
  // One request and the reply it got.
  void count(std::span<const std::uint8_t> request, std::span<const std::uint8_t> reply);
  void count_batch(const std::vector<std::span<const std::uint8_t>>& requests,
                   const std::vector<std::vector<std::uint8_t>>& replies);
  [[nodiscard]] Snapshot snapshot() const;

 private:
  std::function<std::string(std::uint8_t)> kind_name_;
  mutable std::mutex mutex_;
  Snapshot counts_;
};

}  // namespace usher::entitlement
