// A billing service made as an operator makes one: `usher billing init` (keys, billing.pub), the
// operator certifying billing.pub (`usher entitlement billing add`), billing installing the
// certificate (`usher billing certify --certificate`). For tests and benchmarks that link the
// engine; billing itself never opens the operator's store.
#pragma once

#include <cstdint>
#include <string>

#include "store_backend.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/store.h"

namespace usher::testing {

// Billing `billing_id` in `home`, certified by the operator whose store is `engine` (its home
// `engine_home`, for operator.pub), asking the engine at `engine_endpoint`.
inline Result<billing::BillingStore> certified_billing(entitlement::EntitlementStore& engine, const std::string& engine_home,
                                                       const std::string& home, std::uint32_t billing_id,
                                                       const std::string& engine_endpoint = billing::kDefaultEngineEndpoint) {
  USHER_TRY(auto op, entitlement::OperatorPublicFile::read(engine_home + "/" + entitlement::OperatorPublicFile::kFileName));
  USHER_TRY(auto store, billing::BillingStore::create(home, billing_id, op, engine_endpoint, store_database_url()));
  const auto pub = store.public_file();
  USHER_CHECK(store.install_certificate(engine.certify_billing(pub.billing_id, pub.ed25519_public, pub.x25519_public, unix_now())));
  return store;
}

}  // namespace usher::testing
