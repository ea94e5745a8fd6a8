// The engine's side of billing's requests (billing_requests.h): the billings the operator
// certified, and EngineService's answers to them.
#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/entitlement/billing_requests.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/store.h"
#include "usher/entitlement/wire.h"

namespace usher::entitlement {
using namespace wire;

void EntitlementStore::remember_billing(const BillingCertificate& c) {
  auto st = db_.prepare("INSERT INTO billings VALUES (?, ?, ?) ON CONFLICT (billing_id) DO UPDATE SET "
                        "ed25519_public = excluded.ed25519_public, certified = excluded.certified");
  st.bind(1, c.billing_id).bind(2, c.billing_public).bind(3, static_cast<std::int64_t>(c.issued));
  st.run();
}

std::optional<StbInfo> EntitlementStore::stb(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT x25519_public, ed25519_public FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return std::nullopt;
  const auto x = st.column_blob(0);
  const auto ed = st.column_blob(1);
  StbInfo info;
  info.stb_id = stb_id;
  if (x.size() != info.x25519_public.size() || ed.size() != info.ed25519_public.size()) return std::nullopt;
  std::copy(x.begin(), x.end(), info.x25519_public.begin());
  std::copy(ed.begin(), ed.end(), info.ed25519_public.begin());
  return info;
}

Result<PrepaidCardCertificate> EntitlementStore::card_certificate(std::uint64_t card_id) {
  USHER_TRY(auto c, card(card_id));
  auto st = db_.prepare("SELECT issued FROM cards WHERE card_id = ?");
  st.bind(1, static_cast<std::int64_t>(card_id));
  if (!st.step()) return make_error(Errc::not_found, "no prepaid card " + std::to_string(card_id));
  // The certificate register_handset issued: the same fields, so the same signature (Ed25519 is
  // deterministic).
  PrepaidCardCertificate cert{card_id, c.handset_public, c.currency, static_cast<std::uint64_t>(st.column_int(0)), 1, ca_system_id_, {}};
  cert.sign(signing_private());
  return cert;
}

std::optional<crypto::PublicKey> EntitlementStore::billing_public(std::uint32_t billing_id) {
  auto st = db_.prepare("SELECT ed25519_public FROM billings WHERE billing_id = ?");
  st.bind(1, billing_id);
  if (!st.step()) return std::nullopt;
  const auto blob = st.column_blob(0);
  crypto::PublicKey key{};
  if (blob.size() != key.size()) return std::nullopt;
  std::copy(blob.begin(), blob.end(), key.begin());
  return key;
}

Result<std::vector<std::uint8_t>> EngineService::dispatch_billing(const Frame& f) {
  const auto type = static_cast<MessageType>(f.type_or_status);
  auto s = split_signed(f.body);
  if (!s) return make_error(Errc::auth_failed, "billing's requests must be signed by a billing the operator certified");
  // One answer whether the billing is unknown or the key is wrong.
  const auto key = s->card_id <= 0xFFFFFFFFu ? store_.billing_public(static_cast<std::uint32_t>(s->card_id)) : std::nullopt;
  if (!key || !verify_billing_request(f.type_or_status, f.id, s->body, s->card_id, s->time, s->signature, *key)) {
    return make_error(Errc::auth_failed, "the request is not signed by a billing the operator certified (billing " + std::to_string(s->card_id) + ")");
  }
  const auto now = unix_now();
  USHER_CHECK(check_request_time(s->time, now));
  const auto body = s->body;
  auto answer = [&]() -> Result<std::vector<std::uint8_t>> {
    switch (type) {
      case MessageType::billing_event: {
        USHER_TRY(auto id, decode_u32(body));
        USHER_TRY(auto ev, store_.event(id));
        return encode_events({ev});
      }
      case MessageType::billing_stb_key: {
        USHER_TRY(auto id, decode_u32(body));
        auto stb = store_.stb(id);
        if (!stb) return make_error(Errc::not_found, "no STB " + std::to_string(id) + " registered with the operator");
        return std::vector<std::uint8_t>(stb->ed25519_public.begin(), stb->ed25519_public.end());
      }
      case MessageType::billing_card: {
        USHER_TRY(auto id, decode_u64(body));
        USHER_TRY(auto cert, store_.card_certificate(id));
        ByteWriter w;
        put_blob(w, cert.encode());
        return w.take();
      }
      case MessageType::billing_holding: {
        USHER_TRY(auto q, decode_holding_query(body));
        HoldingReply reply;
        if (auto held = store_.holding(q.stb_id, q.event_id)) reply = {true, held->ticket_id, held->impulse_sequence};
        return encode(reply);
      }
      case MessageType::billing_impulse_purchases: {
        USHER_TRY(auto q, decode_impulse_purchases(body));
        std::vector<HistoryRecord> records;
        for (const auto& e : q.entries) {
          HistoryRecord r;
          r.stb_id = q.stb_id;
          r.event_id = e.event_id;
          r.sequence = e.sequence;
          records.push_back(r);
        }
        store_.record_impulse_purchases(q.stb_id, records);
        ByteWriter w;  // a reply of its own (the engine keeps no empty one): how many it was told of
        w.u16(static_cast<std::uint16_t>(records.size()));
        return w.take();
      }
      case MessageType::billing_charge: {
        USHER_TRY(auto q, decode_settlement_charge(body));
        // Under billing's request id, derived from the settlement and the spend: a retry (billing
        // restarted, a reply lost) gets the first answer whenever it comes, and no second debit.
        return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
          USHER_TRY(auto bal, store_.charge_settlement(q.spend, q.amount, q.payee));
          return encode_money(bal);
        });
      }
      case MessageType::billing_refund: {
        USHER_TRY(auto q, decode_settlement_refund(body));
        return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
          USHER_TRY(auto bal, store_.refund_settlement(q.card_id, q.amount, q.payee));
          return encode_money(bal);
        });
      }
      case MessageType::billing_ticket_payments: {
        USHER_TRY(auto id, decode_u32(body));
        std::vector<TicketPaymentLine> lines;
        for (const auto& p : store_.ticket_payments(id)) {
          lines.push_back({p.ticket_id, static_cast<std::uint8_t>(p.kind), p.title, p.event_id, p.time, p.amount});
        }
        return encode(lines);
      }
      case MessageType::billing_account_stbs: {
        USHER_TRY(auto account, decode_text(body));
        return encode_stb_ids(store_.account_stbs(account));
      }
      default:
        break;
    }
    return make_error(Errc::invalid_argument, "not a billing request type");
  };
  // Charges and refunds are answered once per billing and request id (the nonce): the same request
  // again gets the first answer. The others are only checked: answering a read twice changes
  // nothing, impulse purchases are recorded once however often they are told (and a relay tells
  // them each time), and keeping their replies would cost a disk sync each.
  const bool changes = type == MessageType::billing_charge || type == MessageType::billing_refund;
  if (!changes) return answer();
  return store_.once_signed(billing_replay_key(s->card_id, f.id), s->card_id, s->time, now, answer);
}

}  // namespace usher::entitlement
