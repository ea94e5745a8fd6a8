// Billing's requests to the engine: signing and the bodies' codecs (billing_requests.h).
#include "usher/entitlement/billing_requests.h"

#include "usher/core/bytes.h"
#include "usher/entitlement/wire.h"

namespace usher::entitlement {
namespace {
using namespace wire;
constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'b', 'i', 'l', 'l', 'i', 'n', 'g', '-', 'v', '1'};
constexpr std::uint8_t kReplayDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'b', 'i', 'l', 'l', 'i', 'n', 'g', '-', 'i', 'd'};

std::vector<std::uint8_t> signed_bytes(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner, std::uint64_t billing_id,
                                       std::uint64_t time) {
  ByteWriter w;
  w.bytes(kDomain);
  w.u8(type);
  w.bytes(id);
  w.u64(billing_id);
  w.u64(time);
  w.bytes(inner);
  return w.take();
}
}  // namespace

std::vector<std::uint8_t> sign_billing_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner,
                                               std::uint32_t billing_id, std::uint64_t time, const Secret<32>& billing_private) {
  const auto signature = crypto::ed25519_sign(billing_private, signed_bytes(type, id, inner, billing_id, time));
  ByteWriter w;
  w.bytes(inner);
  w.u64(billing_id);
  w.u64(time);
  w.bytes(signature);
  return w.take();
}

bool verify_billing_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner, std::uint64_t billing_id,
                            std::uint64_t time, const crypto::Signature& signature, const crypto::PublicKey& billing_public) {
  return crypto::ed25519_verify(billing_public, signed_bytes(type, id, inner, billing_id, time), signature);
}

crypto::Digest billing_replay_key(std::uint64_t billing_id, const RequestId& id) {
  ByteWriter w;
  w.bytes(kReplayDomain);
  w.u64(billing_id);
  w.bytes(id);
  return crypto::sha256(w.data());
}

std::vector<std::uint8_t> encode(const HoldingQuery& q) {
  ByteWriter w;
  w.u32(q.stb_id);
  w.u32(q.event_id);
  return w.take();
}
Result<HoldingQuery> decode_holding_query(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  HoldingQuery q;
  if (!r.u32(q.stb_id) || !r.u32(q.event_id) || !finished(r)) return bad("holding");
  return q;
}
std::vector<std::uint8_t> encode(const HoldingReply& h) {
  ByteWriter w;
  w.u8(h.held ? 1 : 0);
  w.u64(h.ticket_id);
  w.u64(h.impulse_sequence);
  return w.take();
}
Result<HoldingReply> decode_holding_reply(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  HoldingReply h;
  std::uint8_t held = 0;
  if (!r.u8(held) || held > 1 || !r.u64(h.ticket_id) || !r.u64(h.impulse_sequence) || !finished(r)) return bad("holding reply");
  h.held = held == 1;
  return h;
}

std::vector<std::uint8_t> encode(const ImpulsePurchases& q) {
  ByteWriter w;
  w.u32(q.stb_id);
  w.u16(static_cast<std::uint16_t>(q.entries.size()));
  for (const auto& e : q.entries) {
    w.u32(e.event_id);
    w.u64(e.sequence);
  }
  return w.take();
}
Result<ImpulsePurchases> decode_impulse_purchases(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  ImpulsePurchases q;
  std::uint16_t n = 0;
  if (!r.u32(q.stb_id) || !r.u16(n)) return bad("impulse purchases");
  // Each entry is 12 bytes: a count the body cannot hold is refused before anything is reserved.
  if (r.remaining() != static_cast<std::size_t>(n) * 12) return bad("impulse purchases");
  q.entries.resize(n);
  for (auto& e : q.entries) {
    if (!r.u32(e.event_id) || !r.u64(e.sequence)) return bad("impulse purchases");
  }
  if (!finished(r)) return bad("impulse purchases");
  return q;
}

std::vector<std::uint8_t> encode(const SettlementCharge& q) {
  ByteWriter w;
  put_blob(w, q.spend.encode());
  put_money(w, q.amount);
  put_text(w, q.payee);
  return w.take();
}
Result<SettlementCharge> decode_settlement_charge(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  SettlementCharge q;
  std::vector<std::uint8_t> spend;
  if (!get_blob(r, spend) || !get_money(r, q.amount) || !get_text(r, q.payee) || !finished(r)) return bad("settlement charge");
  return with_spend(std::move(q), spend);
}

std::vector<std::uint8_t> encode(const SettlementRefund& q) {
  ByteWriter w;
  w.u64(q.card_id);
  put_money(w, q.amount);
  put_text(w, q.payee);
  return w.take();
}
Result<SettlementRefund> decode_settlement_refund(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  SettlementRefund q;
  if (!r.u64(q.card_id) || !get_money(r, q.amount) || !get_text(r, q.payee) || !finished(r)) return bad("settlement refund");
  return q;
}

std::vector<std::uint8_t> encode(const std::vector<TicketPaymentLine>& lines) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(lines.size()));
  for (const auto& l : lines) {
    w.u64(l.ticket_id);
    w.u8(l.kind);
    put_text(w, l.title);
    w.u32(l.event_id);
    w.u64(l.time);
    put_money(w, l.amount);
  }
  return w.take();
}
Result<std::vector<TicketPaymentLine>> decode_ticket_payment_lines(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint16_t n = 0;
  std::vector<TicketPaymentLine> out;
  if (!r.u16(n)) return bad("ticket payments");
  for (std::uint16_t i = 0; i < n; ++i) {
    TicketPaymentLine l;
    if (!r.u64(l.ticket_id) || !r.u8(l.kind) || !get_text(r, l.title) || !r.u32(l.event_id) || !r.u64(l.time) || !get_money(r, l.amount)) {
      return bad("ticket payments");
    }
    out.push_back(std::move(l));
  }
  if (!finished(r)) return bad("ticket payments");
  return out;
}

std::vector<std::uint8_t> encode_u32(std::uint32_t v) {
  ByteWriter w;
  w.u32(v);
  return w.take();
}
Result<std::uint32_t> decode_u32(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint32_t v = 0;
  if (!r.u32(v) || !finished(r)) return bad("u32 body");
  return v;
}
std::vector<std::uint8_t> encode_u64(std::uint64_t v) {
  ByteWriter w;
  w.u64(v);
  return w.take();
}
Result<std::uint64_t> decode_u64(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint64_t v = 0;
  if (!r.u64(v) || !finished(r)) return bad("u64 body");
  return v;
}
std::vector<std::uint8_t> encode_text(const std::string& s) {
  ByteWriter w;
  put_text(w, s);
  return w.take();
}
Result<std::string> decode_text(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::string s;
  if (!get_text(r, s) || !finished(r)) return bad("text body");
  return s;
}
std::vector<std::uint8_t> encode_stb_ids(const std::vector<std::uint32_t>& ids) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(ids.size()));
  for (auto id : ids) w.u32(id);
  return w.take();
}
Result<std::vector<std::uint32_t>> decode_stb_ids(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint16_t n = 0;
  if (!r.u16(n) || r.remaining() != static_cast<std::size_t>(n) * 4) return bad("STB ids");
  std::vector<std::uint32_t> ids(n);
  for (auto& id : ids) r.u32(id);
  if (!finished(r)) return bad("STB ids");
  return ids;
}

}  // namespace usher::entitlement
