// EngineService: the entitlement engine's side of its protocol (protocol.h). It turns request bytes
// into reply bytes over the operator's EntitlementStore; the ZeroMQ server in `usher entitlement
// serve` only carries them. Part of usher_engine: only the engine's process links it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/core/rate_limit.h"
#include "usher/core/result.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {

// Per-caller limits of the engine (docs/protocol.md, "Limits"): each card's signed requests and
// purchases, and registrations of new handsets by anyone (one shared bucket: a new key is free to
// make, so the caller of a registration cannot be told apart).
struct EngineLimits {
  RateLimiter::Rate per_card{64, 8};
  RateLimiter::Rate registrations{256, 4};
};

class EngineService {
 public:
  EngineService(EntitlementStore& store, FundingSource& funding, EngineLimits limits = {})
      : store_(store), funding_(funding), per_card_(limits.per_card), registrations_(limits.registrations) {}
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);
  // Handles a group in one database transaction (each request in its own savepoint, so a refused
  // one changes nothing) and returns the replies only after the commit: one disk sync for the group,
  // and no reply for a change that is not yet durable. Reads of the EMM feed (emm_changes) are
  // answered after the commit, outside the transaction.
  std::vector<std::vector<std::uint8_t>> handle_batch(const std::vector<std::span<const std::uint8_t>>& requests);

 private:
  Result<std::vector<std::uint8_t>> dispatch(const Frame& frame);
  // emm_changes: purges a few expired entries (a short write), then reads a page of the feed.
  std::vector<std::uint8_t> emm_changes(std::uint64_t cursor);
  // register_handset, top_up, balance, ticket_status, account_stbs: checked (signature, time,
  // limit), then answered once.
  Result<std::vector<std::uint8_t>> dispatch_signed(const Frame& frame);
  // Billing's requests (billing_requests.h): checked (a certified billing's signature, time), then
  // answered once per billing and request id. In billing_requests_engine.cc.
  Result<std::vector<std::uint8_t>> dispatch_billing(const Frame& frame);
  // A purchase's card pays from its bucket once its spend verifies (so that nobody else empties it).
  Status admit_spend(const SpendAuthorization& spend);
  EntitlementStore& store_;
  FundingSource& funding_;
  RateLimiter per_card_;
  RateLimiter registrations_;
};

}  // namespace usher::entitlement
