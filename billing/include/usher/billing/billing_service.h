// BillingService: billing's network protocol (entitlement::BillingMessage frames, docs/protocol.md)
// over a BillingStore. `usher billing serve` carries the bytes over ZeroMQ; handsets relay and pay,
// hotel room STBs report.
//
// Requests that arrive together are answered as a group that shares its disk syncs (group commit):
// with a hundred handsets relaying at once, billing's throughput is bounded by its CPU rather than
// by one sync per step of every request. No reply leaves before what it reports is durable.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "usher/billing/billing_store.h"
#include "usher/core/crypto.h"
#include "usher/core/log.h"
#include "usher/core/rate_limit.h"
#include "usher/entitlement/protocol.h"
#include "usher/core/zmq.h"

namespace usher::billing {

// What billing accepts per request: its largest is a sealed history (a u16 count of ~160-byte
// records, so at most about 10.3 MB). Few wait per connection, each being that large.
inline constexpr net::ServerLimits kBillingServerLimits{12 * 1024 * 1024, 4};

class BillingService {
 public:
  // `per_card`: how many relays and prepayments (each may store a quote) a card may ask for.
  explicit BillingService(BillingStore& store, RateLimiter::Rate per_card = {64, 8}) : store_(store), per_card_(per_card) {}
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);
  // One reply per request, in order (net::ReplyServer::BatchHandler).
  std::vector<std::vector<std::uint8_t>> handle_batch(const std::vector<std::span<const std::uint8_t>>& requests);

 private:
  struct Payment;
  Result<std::vector<std::uint8_t>> dispatch(std::uint8_t type, std::span<const std::uint8_t> body, std::uint64_t now,
                                             std::vector<Payment>& payments, std::size_t index, std::uint64_t signer_card);
  // relay and prepay name a card: signed by its handset (request_auth.h), within the time window
  // and the card's limit. Returns the inner body.
  Result<std::span<const std::uint8_t>> authenticate(const entitlement::Frame& frame, std::uint64_t now);
  BillingStore& store_;
  RateLimiter per_card_;
  // Replies to signed requests, kept while the request's time is within the window: the same
  // request again (a retry, or a replay) gets the same reply and does nothing more.
  std::map<crypto::Digest, std::pair<std::uint64_t, std::vector<std::uint8_t>>> answered_;
  Logger log_{"billing"};
};

}  // namespace usher::billing
