// BillingService: billing's network protocol (entitlement::BillingMessage frames, docs/protocol.md)
// over a BillingStore. `usher billing serve` carries the bytes over ZeroMQ; handsets relay and pay,
// hotel room STBs report.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/billing/billing_store.h"
#include "usher/core/log.h"

namespace usher::billing {

class BillingService {
 public:
  explicit BillingService(BillingStore& store) : store_(store) {}
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);

 private:
  BillingStore& store_;
  Logger log_{"billing"};
};

}  // namespace usher::billing
