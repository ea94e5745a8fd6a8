// BillingService: billing's network protocol (entitlement::BillingMessage frames, docs/protocol.md)
// over a BillingStore. `usher billing serve` carries the bytes over ZeroMQ; handsets relay and pay,
// hotel room STBs report.
//
// Requests that arrive together are answered as a group that shares its disk syncs (group commit):
// with a hundred handsets relaying at once, billing's throughput is bounded by its CPU rather than
// by one sync per step of every request. No reply leaves before what it reports is durable.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/billing/billing_store.h"
#include "usher/core/log.h"
#include "usher/core/zmq.h"

namespace usher::billing {

// What billing accepts per request: its largest is a sealed history (a u16 count of ~160-byte
// records, so at most about 10.3 MB). Few wait per connection, each being that large.
inline constexpr net::ServerLimits kBillingServerLimits{12 * 1024 * 1024, 4};

class BillingService {
 public:
  explicit BillingService(BillingStore& store) : store_(store) {}
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);
  // One reply per request, in order (net::ReplyServer::BatchHandler).
  std::vector<std::vector<std::uint8_t>> handle_batch(const std::vector<std::span<const std::uint8_t>>& requests);

 private:
  struct Payment;
  Result<std::vector<std::uint8_t>> dispatch(std::uint8_t type, std::span<const std::uint8_t> body, std::uint64_t now,
                                             std::vector<Payment>& payments, std::size_t index);
  BillingStore& store_;
  Logger log_{"billing"};
};

}  // namespace usher::billing
