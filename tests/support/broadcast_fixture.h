// BroadcastWorld: an operator store and set-top boxes in a temporary directory, for tests that need
// the real entitlement store and secure elements (tests and benchmarks). Failures throw.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store_backend.h"
#include "running_engine.h"
#include "temp_dir.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/store.h"
#include "usher/stb/secure_element.h"

namespace usher::testing {

// The carousel at `now` without what every box has had since groups (issue 11): the key EMM of each
// box's registration, and the group and global EMMs. What a test of one grant, ticket or revoke
// looks at (tests/entitlement/groups_test.cc tests the others).
inline std::vector<std::vector<std::uint8_t>> box_emm_sections(entitlement::EntitlementStore& store, std::uint64_t now) {
  std::vector<std::vector<std::uint8_t>> out;
  const auto queued = store.queued_emms();
  for (auto& section : store.emm_sections(now)) {
    const auto header = entitlement::peek_any_emm(section);
    if (!header || header->address.type != entitlement::EmmAddressType::unique) continue;
    const auto it = std::find_if(queued.begin(), queued.end(), [&](const entitlement::QueuedEmm& q) { return q.sequence == header->sequence; });
    if (it != queued.end() && it->topic == "keys") continue;
    out.push_back(std::move(section));
  }
  return out;
}

// A handset's prepaid card registered straight in the engine's store and topped up through the test
// acquirer; it signs spend authorizations as the wallet does.
class TestCard {
 public:
  TestCard(entitlement::EntitlementStore& store, const std::string& account, std::int64_t top_up_minor) {
    card_id_ = store.register_handset(account, keys_.public_key, {'E', 'U', 'R'}).value().card_id;
    entitlement::TestAcquirer acquirer;
    // The test acquirer approves at most 1000.00 a charge.
    for (std::int64_t left = top_up_minor; left > 0; left -= 100'000) {
      if (!store.top_up(card_id_, std::min<std::int64_t>(left, 100'000), "test-visa", acquirer)) throw std::runtime_error("top-up refused");
    }
  }
  [[nodiscard]] std::uint64_t card_id() const { return card_id_; }
  [[nodiscard]] const Secret<32>& private_key() const { return keys_.private_key; }
  [[nodiscard]] entitlement::RequestSigner signer() const { return {card_id_, &keys_.private_key}; }
  [[nodiscard]] const crypto::Ed25519KeyPair& keys() const { return keys_; }
  [[nodiscard]] entitlement::SpendAuthorization spend(const entitlement::Money& amount, const std::string& payee) const {
    entitlement::SpendAuthorization s;
    s.card_id = card_id_;
    s.amount = amount;
    s.payee = payee;
    crypto::random_bytes(s.nonce);
    s.sign(keys_.private_key);
    return s;
  }

 private:
  crypto::Ed25519KeyPair keys_ = crypto::Ed25519KeyPair::generate();
  std::uint64_t card_id_ = 0;
};

class BroadcastWorld {
 public:
  BroadcastWorld()
      : store_(entitlement::EntitlementStore::create(dir_.file("operator"), 0x4AFF, testing::store_database_url()).value()) {}

  entitlement::EntitlementStore& store() { return store_; }
  const TempDir& dir() const { return dir_; }

  // The operator's engine served over ZeroMQ from a thread, on a connection of its own to the
  // operator's store: how billing reaches it (BillingStore::create(..., engine_endpoint())).
  // Started at the first call.
  const std::string& engine_endpoint() {
    if (!served_engine_) {
      served_store_.emplace(entitlement::EntitlementStore::open(dir_.file("operator")).value());
      served_engine_ = std::make_unique<RunningEngine>(*served_store_);
      engine_endpoint_ = served_engine_->endpoint();
    }
    return engine_endpoint_;
  }
  // Stops the served engine (billing's requests then find nobody); engine_endpoint() serves again.
  void stop_engine() {
    served_engine_.reset();
    served_store_.reset();
  }

  void add_service(std::uint16_t id) { check(store_.add_service(id, "svc" + std::to_string(id))); }

  // A PPV event priced in EUR.
  entitlement::EventInfo add_event(std::uint32_t id, std::uint16_t service, std::uint64_t start, std::uint32_t duration,
                                   std::int64_t price_minor, const std::string& title = "Event", std::uint8_t min_age = 0) {
    entitlement::EventInfo e;
    e.event_id = id;
    e.service_id = service;
    e.start = start;
    e.duration = duration;
    e.title = title;
    e.min_age = min_age;
    e.price = {price_minor, {'E', 'U', 'R'}};
    check(store_.add_event(e));
    return e;
  }

  // Initialises an STB and registers it with the operator.
  stb::SecureElement& add_stb(std::uint32_t id) {
    auto op = entitlement::OperatorPublicFile::read(dir_.file("operator/operator.pub")).value();
    auto se = stb::SecureElement::init(stb_home(id), id, op);
    check(se);
    auto pub = se->public_identity();
    check(store_.register_stb({pub.stb_id, pub.x25519_public, pub.ed25519_public}));
    auto [it, inserted] = stbs_.emplace(id, std::make_unique<stb::SecureElement>(std::move(se.value())));
    return *it->second;
  }
  stb::SecureElement& stb(std::uint32_t id) { return *stbs_.at(id); }
  // Hands billing's certificate to every STB of the world (as the handset does with its request for
  // the history), so that they seal their history for that billing.
  void give_billing_certificate(const entitlement::BillingCertificate& certificate) {
    for (auto& [id, se] : stbs_) check(se->accept_billing_certificate(certificate.encode()));
  }
  std::string stb_home(std::uint32_t id) const { return dir_.file("stb-" + std::to_string(id)); }
  // Reopens an STB from disk (as after a restart).
  stb::SecureElement& reopen(std::uint32_t id) {
    stbs_.erase(id);
    auto se = stb::SecureElement::open(stb_home(id));
    check(se);
    return *stbs_.emplace(id, std::make_unique<stb::SecureElement>(std::move(se.value()))).first->second;
  }

 private:
  template <typename T>
  static void check(const Result<T>& r) {
    if (!r.ok()) throw std::runtime_error(r.error().message);
  }
  TempDir dir_;
  entitlement::EntitlementStore store_;
  std::map<std::uint32_t, std::unique_ptr<stb::SecureElement>> stbs_;
  std::optional<entitlement::EntitlementStore> served_store_;  // before the engine: it outlives it
  std::unique_ptr<RunningEngine> served_engine_;
  std::string engine_endpoint_;
};

}  // namespace usher::testing
