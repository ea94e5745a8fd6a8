// EngineClient: billing's only way to the operator's engine: its requests (billing_requests.h)
// over the engine's ZeroMQ protocol, each signed with billing's Ed25519 key, so that billing holds
// no part of the engine's database and can run on another host (docs/protocol.md, "Billing's
// requests"). What it needs: prices and events, STB keys, handsets' card keys (from their
// certificates, checked against the operator's signing key), what an STB holds, charging a card for
// a settlement and refunding it (each under a request id of billing's, so it happens once), and the
// ticket payments and account STBs a statement shows.
//
//   EngineClient engine("tcp://127.0.0.1:7700", billing_id, std::move(key), operator_ed25519);
//   auto event = engine.event(7);
//   auto balance = engine.charge_settlement(request_id, spend, amount, payee);
//
// A peer that is down or refuses: each call returns the error (Errc::io when the engine did not
// answer, with its endpoint in the message); nothing is cached but keys and events, which never change.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/secret.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/billing_requests.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {

// Where `usher entitlement serve` listens unless told otherwise.
inline constexpr const char* kDefaultEngineEndpoint = "tcp://127.0.0.1:7700";
// How long billing waits for the engine: two attempts of 2 s, so that a handset waiting for
// billing hears of an engine that is down within its own retries.
inline constexpr net::ClientOptions kEngineClientOptions{std::chrono::milliseconds(2000), 2, 1};

class EngineClient {
 public:
  EngineClient(std::string endpoint, std::uint32_t billing_id, Secret<32> billing_private, const crypto::PublicKey& operator_signing_public,
               net::ClientOptions options = kEngineClientOptions);
  EngineClient(EngineClient&&) noexcept;
  EngineClient& operator=(EngineClient&&) noexcept;
  ~EngineClient();

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  // The operator's issuing key (from operator.pub): what billing's certificate must be signed by.
  [[nodiscard]] const crypto::PublicKey& operator_signing_public() const { return operator_signing_public_; }

  // A PPV event of the catalogue (Errc::not_found: no such event).
  Result<entitlement::EventInfo> event(std::uint32_t event_id);
  // An STB's Ed25519 key (Errc::not_found: the operator does not know the STB).
  Result<crypto::PublicKey> stb_key(std::uint32_t stb_id);
  // The key of the handset holding card `card_id`, from the card's certificate (Errc::not_found).
  Result<crypto::PublicKey> card_key(std::uint64_t card_id);
  // What the STB holds for an event (nullopt: nothing).
  struct Holding {
    std::uint64_t ticket_id = 0;
    std::uint64_t impulse_sequence = 0;
  };
  Result<std::optional<Holding>> holding(std::uint32_t stb_id, std::uint32_t event_id);
  // Tells the engine of the events an STB bought on impulse (from a verified history).
  Status record_impulse_purchases(std::uint32_t stb_id, const std::vector<entitlement::HistoryRecord>& records);
  // Charges a card for a settlement, once per `request_id`: a retry with the same id gets the first
  // answer. Returns the card's balance after it.
  Result<entitlement::Money> charge_settlement(const entitlement::RequestId& request_id, const entitlement::SpendAuthorization& spend,
                                               const entitlement::Money& amount, const std::string& payee);
  // Gives a settlement's charge back to the card, once per `request_id`.
  Result<entitlement::Money> refund_settlement(const entitlement::RequestId& request_id, std::uint64_t card_id,
                                               const entitlement::Money& amount, const std::string& payee);
  Result<std::vector<entitlement::TicketPaymentLine>> ticket_payments(std::uint32_t stb_id);
  Result<std::vector<std::uint32_t>> account_stbs(const std::string& account);

 private:
  Result<std::vector<std::uint8_t>> call(entitlement::MessageType type, const entitlement::RequestId& id,
                                         std::span<const std::uint8_t> body);
  std::string endpoint_;
  std::uint32_t billing_id_ = 0;
  Secret<32> billing_private_;
  crypto::PublicKey operator_signing_public_{};
  net::ClientOptions options_;
  std::unique_ptr<net::RequestClient> client_;  // connected at the first call
  std::map<std::uint32_t, entitlement::EventInfo> events_;  // an event, once added, never changes
  std::map<std::uint32_t, crypto::PublicKey> stb_keys_;
  std::map<std::uint64_t, crypto::PublicKey> card_keys_;
};

}  // namespace usher::billing
