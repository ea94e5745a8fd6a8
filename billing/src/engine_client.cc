#include "usher/billing/engine_client.h"

#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/entitlement/assets.h"

namespace usher::billing {
namespace ent = entitlement;

EngineClient::EngineClient(std::string endpoint, std::uint32_t billing_id, Secret<32> billing_private,
                           const crypto::PublicKey& operator_signing_public, net::ClientOptions options)
    : endpoint_(std::move(endpoint)),
      billing_id_(billing_id),
      billing_private_(std::move(billing_private)),
      operator_signing_public_(operator_signing_public),
      options_(options) {}
EngineClient::EngineClient(EngineClient&&) noexcept = default;
EngineClient& EngineClient::operator=(EngineClient&&) noexcept = default;
EngineClient::~EngineClient() = default;

Result<std::vector<std::uint8_t>> EngineClient::call(ent::MessageType type, const ent::RequestId& id, std::span<const std::uint8_t> body) {
  const auto t = static_cast<std::uint8_t>(type);
  const auto signed_body = ent::sign_billing_request(t, id, body, billing_id_, unix_now(), billing_private_);
  if (!client_) client_ = std::make_unique<net::RequestClient>(endpoint_, options_);
  auto reply = client_->call(ent::encode_request(type, id, signed_body));
  if (!reply) {
    client_.reset();  // a fresh socket for the next call (a REQ socket left waiting cannot send)
    return make_error(reply.error().code, "the entitlement engine at " + endpoint_ + " did not answer (" + reply.error().message + ")");
  }
  return ent::reply_body(*reply, id);
}

Result<ent::EventInfo> EngineClient::event(std::uint32_t event_id) {
  if (auto it = events_.find(event_id); it != events_.end()) return it->second;
  auto body = call(ent::MessageType::billing_event, ent::new_request_id(), ent::encode_u32(event_id));
  if (!body) return body.error();
  auto events = ent::decode_events(*body);
  if (!events) return events.error();
  if (events->size() != 1) return make_error(Errc::malformed, "the engine answered with " + std::to_string(events->size()) + " events");
  events_[event_id] = events->front();
  return std::move(events->front());
}

Result<crypto::PublicKey> EngineClient::stb_key(std::uint32_t stb_id) {
  if (auto it = stb_keys_.find(stb_id); it != stb_keys_.end()) return it->second;
  auto body = call(ent::MessageType::billing_stb_key, ent::new_request_id(), ent::encode_u32(stb_id));
  if (!body) return body.error();
  crypto::PublicKey key{};
  if (body->size() != key.size()) return make_error(Errc::malformed, "the engine's STB key is not 32 bytes");
  std::copy(body->begin(), body->end(), key.begin());
  stb_keys_[stb_id] = key;
  return key;
}

Result<crypto::PublicKey> EngineClient::card_key(std::uint64_t card_id) {
  if (auto it = card_keys_.find(card_id); it != card_keys_.end()) return it->second;
  auto body = call(ent::MessageType::billing_card, ent::new_request_id(), ent::encode_u64(card_id));
  if (!body) return body.error();
  ByteReader r(*body);
  std::uint16_t n = 0;
  std::span<const std::uint8_t> cert_bytes;
  if (!r.u16(n) || !r.view(n, cert_bytes) || r.remaining() != 0) return make_error(Errc::malformed, "the engine's card reply is malformed");
  auto cert = ent::PrepaidCardCertificate::decode(cert_bytes);
  if (!cert) return cert.error();
  // The certificate is the operator's word: a key the engine's reply carried is trusted only so.
  if (cert->card_id != card_id || !cert->verify(operator_signing_public_)) {
    return make_error(Errc::auth_failed, "card " + std::to_string(card_id) + "'s certificate is not the operator's");
  }
  card_keys_[card_id] = cert->holder_public;
  return cert->holder_public;
}

Result<std::optional<EngineClient::Holding>> EngineClient::holding(std::uint32_t stb_id, std::uint32_t event_id) {
  auto body = call(ent::MessageType::billing_holding, ent::new_request_id(), ent::encode(ent::HoldingQuery{stb_id, event_id}));
  if (!body) return body.error();
  auto h = ent::decode_holding_reply(*body);
  if (!h) return h.error();
  if (!h->held) return std::optional<Holding>();
  return std::optional<Holding>(Holding{h->ticket_id, h->impulse_sequence});
}

Status EngineClient::record_impulse_purchases(std::uint32_t stb_id, const std::vector<ent::HistoryRecord>& records) {
  if (records.empty()) return ok_status();
  ent::ImpulsePurchases q;
  q.stb_id = stb_id;
  for (const auto& r : records) q.entries.push_back({r.event_id, r.sequence});
  auto body = call(ent::MessageType::billing_impulse_purchases, ent::new_request_id(), ent::encode(q));
  if (!body) return body.error();
  return ok_status();
}

Result<ent::Money> EngineClient::charge_settlement(const ent::RequestId& request_id, const ent::SpendAuthorization& spend,
                                                   const ent::Money& amount, const std::string& payee) {
  auto body = call(ent::MessageType::billing_charge, request_id, ent::encode(ent::SettlementCharge{spend, amount, payee}));
  if (!body) return body.error();
  return ent::decode_money(*body);
}

Result<ent::Money> EngineClient::refund_settlement(const ent::RequestId& request_id, std::uint64_t card_id, const ent::Money& amount,
                                                   const std::string& payee) {
  auto body = call(ent::MessageType::billing_refund, request_id, ent::encode(ent::SettlementRefund{card_id, amount, payee}));
  if (!body) return body.error();
  return ent::decode_money(*body);
}

Result<std::vector<ent::TicketPaymentLine>> EngineClient::ticket_payments(std::uint32_t stb_id) {
  auto body = call(ent::MessageType::billing_ticket_payments, ent::new_request_id(), ent::encode_u32(stb_id));
  if (!body) return body.error();
  return ent::decode_ticket_payment_lines(*body);
}

Result<std::vector<std::uint32_t>> EngineClient::account_stbs(const std::string& account) {
  auto body = call(ent::MessageType::billing_account_stbs, ent::new_request_id(), ent::encode_text(account));
  if (!body) return body.error();
  return ent::decode_stb_ids(*body);
}

}  // namespace usher::billing
