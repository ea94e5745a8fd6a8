// SyntheticStb: an STB made of bare keys, registered with the operator like any other, so that a
// benchmark can write viewing histories of any length without buying through a secure element.
// Its records are of event 7 on service 1 at `time`, one minor unit of EUR each, sealed for
// billing's key as a secure element seals them.
#pragma once

#include <cstdint>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/store.h"

namespace usher::bench {

struct SyntheticStb {
  std::uint32_t stb_id = 0;
  crypto::Ed25519KeyPair signing = crypto::Ed25519KeyPair::generate();
  entitlement::HistoryRecord last;

  // Registers STB `id` in the operator's `store`.
  SyntheticStb(entitlement::EntitlementStore& store, std::uint32_t id) : stb_id(id) {
    auto x = crypto::X25519KeyPair::generate();
    (void)store.register_stb({id, x.public_key, signing.public_key});
  }
  // Sealed for billing's key, as a secure element seals.
  [[nodiscard]] std::vector<std::uint8_t> seal(const std::vector<entitlement::HistoryRecord>& records,
                                               const entitlement::BillingCertificate& billing) const {
    return entitlement::seal_history(records, stb_id, billing.billing_id, billing.billing_x25519);
  }
  // The next `n` records of the STB's chain.
  std::vector<entitlement::HistoryRecord> next(int n, std::uint64_t time) {
    std::vector<entitlement::HistoryRecord> out;
    for (int i = 0; i < n; ++i) {
      entitlement::HistoryRecord r;
      r.stb_id = stb_id;
      r.sequence = last.sequence + 1;
      r.previous = last.sequence == 0 ? crypto::Digest{} : last.hash();
      r.time = time;
      r.event_id = 7;
      r.service_id = 1;
      r.price = {1, {'E', 'U', 'R'}};
      r.sign(signing.private_key);
      out.push_back(r);
      last = r;
    }
    return out;
  }
};

}  // namespace usher::bench
