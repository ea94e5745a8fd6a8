#include "usher/entitlement/settlement.h"

#include "usher/entitlement/wire.h"

namespace usher::entitlement {
namespace {
using namespace wire;

constexpr std::uint8_t kReceiptVersion = 1;
constexpr std::uint8_t kRoomStateVersion = 1;
constexpr std::uint8_t kRelayVersion = 1;

// Reads "signed part | signature" where the signed part is everything but the last 64 bytes.
bool split_signature(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t>& body, crypto::Signature& sig) {
  if (bytes.size() < sig.size()) return false;
  body = bytes.first(bytes.size() - sig.size());
  std::copy(bytes.end() - static_cast<std::ptrdiff_t>(sig.size()), bytes.end(), sig.begin());
  return true;
}

bool get_certificate(ByteReader& r, BillingCertificate& c) {
  std::vector<std::uint8_t> b;
  if (!get_blob(r, b)) return false;
  auto cert = BillingCertificate::decode(b);
  if (!cert) return false;
  c = *cert;
  return true;
}

}  // namespace

const char* to_string(SettlementKind kind) {
  switch (kind) {
    case SettlementKind::deferred: return "deferred";
    case SettlementKind::prepayment: return "prepayment";
    case SettlementKind::folio: return "folio";
  }
  return "unknown";
}

std::vector<std::uint8_t> BillingCertificate::signed_part() const {
  ByteWriter w;
  w.u8(version);
  w.u32(billing_id);
  w.bytes(billing_public);
  if (version >= kVersionWithSealing) w.bytes(billing_x25519);
  w.u64(issued);
  return w.take();
}
std::vector<std::uint8_t> BillingCertificate::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}
Result<BillingCertificate> BillingCertificate::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  BillingCertificate c;
  if (!r.u8(c.version) || (c.version != kVersionSigningOnly && c.version != kVersionWithSealing)) {
    return make_error(Errc::malformed, "billing certificate: unknown version");
  }
  r.u32(c.billing_id);
  r.bytes(c.billing_public);
  if (c.version >= kVersionWithSealing) r.bytes(c.billing_x25519);
  r.u64(c.issued);
  r.bytes(c.signature);
  if (!finished(r)) return make_error(Errc::malformed, "billing certificate: wrong length");
  return c;
}
Result<crypto::PublicKey> BillingCertificate::sealing_key() const {
  if (version < kVersionWithSealing) {
    return make_error(Errc::not_entitled, "billing " + std::to_string(billing_id) +
                                              "'s certificate is version 1 and carries no X25519 key to seal histories for: "
                                              "have the operator certify billing's keys again (usher billing certify)");
  }
  return billing_x25519;
}
void BillingCertificate::sign(const Secret<32>& issuer_private) { signature = crypto::ed25519_sign(issuer_private, signed_part()); }
bool BillingCertificate::verify(const crypto::PublicKey& issuer_public) const {
  return crypto::ed25519_verify(issuer_public, signed_part(), signature);
}

std::vector<std::uint8_t> Receipt::signed_part() const {
  ByteWriter w;
  w.u8(kReceiptVersion);
  w.u8(static_cast<std::uint8_t>(kind));
  w.u64(receipt_id);
  w.u32(stb_id);
  w.u64(first_sequence);
  w.u64(last_sequence);
  w.bytes(last_hash);
  put_money(w, amount);
  w.u64(card_id);
  w.u64(stay_id);
  w.u64(issued);
  put_blob(w, certificate.encode());
  return w.take();
}
std::vector<std::uint8_t> Receipt::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}
Result<Receipt> Receipt::decode(std::span<const std::uint8_t> bytes) {
  std::span<const std::uint8_t> body;
  Receipt rc;
  if (!split_signature(bytes, body, rc.signature)) return make_error(Errc::malformed, "receipt: truncated");
  ByteReader r(body);
  std::uint8_t version = 0;
  std::uint8_t kind = 0;
  if (!r.u8(version) || version != kReceiptVersion) return make_error(Errc::malformed, "receipt: unknown version");
  r.u8(kind);
  if (kind < 1 || kind > 3) return make_error(Errc::malformed, "receipt: unknown settlement kind");
  rc.kind = static_cast<SettlementKind>(kind);
  r.u64(rc.receipt_id);
  r.u32(rc.stb_id);
  r.u64(rc.first_sequence);
  r.u64(rc.last_sequence);
  r.bytes(rc.last_hash);
  if (!get_money(r, rc.amount)) return make_error(Errc::malformed, "receipt: bad amount");
  r.u64(rc.card_id);
  r.u64(rc.stay_id);
  r.u64(rc.issued);
  if (!get_certificate(r, rc.certificate) || !finished(r)) return make_error(Errc::malformed, "receipt: wrong length");
  if (rc.first_sequence > rc.last_sequence) return make_error(Errc::malformed, "receipt: first record after last");
  return rc;
}
void Receipt::sign(const Secret<32>& billing_private) { signature = crypto::ed25519_sign(billing_private, signed_part()); }
bool Receipt::verify(const crypto::PublicKey& issuer_public) const {
  return certificate.verify(issuer_public) && crypto::ed25519_verify(certificate.billing_public, signed_part(), signature);
}

std::vector<std::uint8_t> RoomState::signed_part() const {
  ByteWriter w;
  w.u8(kRoomStateVersion);
  w.u32(stb_id);
  w.u64(counter);
  w.u64(stay_id);
  put_money(w, credit_limit);
  w.u8(clear ? 1 : 0);
  put_text(w, billing_endpoint);
  put_blob(w, certificate.encode());
  return w.take();
}
std::vector<std::uint8_t> RoomState::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}
Result<RoomState> RoomState::decode(std::span<const std::uint8_t> bytes) {
  std::span<const std::uint8_t> body;
  RoomState s;
  if (!split_signature(bytes, body, s.signature)) return make_error(Errc::malformed, "room state: truncated");
  ByteReader r(body);
  std::uint8_t version = 0;
  std::uint8_t clear = 0;
  if (!r.u8(version) || version != kRoomStateVersion) return make_error(Errc::malformed, "room state: unknown version");
  r.u32(s.stb_id);
  r.u64(s.counter);
  r.u64(s.stay_id);
  if (!get_money(r, s.credit_limit)) return make_error(Errc::malformed, "room state: bad credit limit");
  r.u8(clear);
  if (clear > 1) return make_error(Errc::malformed, "room state: clear must be 0 or 1");  // one encoding per state
  s.clear = clear != 0;
  if (!get_text(r, s.billing_endpoint) || !get_certificate(r, s.certificate) || !finished(r)) {
    return make_error(Errc::malformed, "room state: wrong length");
  }
  return s;
}
void RoomState::sign(const Secret<32>& billing_private) { signature = crypto::ed25519_sign(billing_private, signed_part()); }
bool RoomState::verify(const crypto::PublicKey& issuer_public) const {
  return certificate.verify(issuer_public) && crypto::ed25519_verify(certificate.billing_public, signed_part(), signature);
}

std::string settlement_payee(std::uint64_t settlement_id, std::uint32_t stb_id) {
  return "settle:" + std::to_string(settlement_id) + ":stb=" + std::to_string(stb_id);
}

std::vector<std::uint8_t> encode(const RelayReply& a) {
  ByteWriter w;
  w.u8(kRelayVersion);
  w.u16(static_cast<std::uint16_t>(a.receipts.size()));
  for (const auto& rc : a.receipts) put_blob(w, rc);
  w.u8(a.has_quote ? 1 : 0);
  if (a.has_quote) {
    w.u64(a.quote.settlement_id);
    w.u8(static_cast<std::uint8_t>(a.quote.kind));
    w.u32(a.quote.stb_id);
    put_money(w, a.quote.amount);
    w.u64(a.quote.first_sequence);
    w.u64(a.quote.last_sequence);
    put_text(w, a.quote.payee);
  }
  return w.take();
}
Result<RelayReply> decode_relay_reply(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  RelayReply a;
  std::uint8_t version = 0;
  std::uint16_t n = 0;
  std::uint8_t has = 0;
  if (!r.u8(version) || version != kRelayVersion || !r.u16(n)) return bad("relay reply");
  for (int i = 0; i < n; ++i) {
    std::vector<std::uint8_t> rc;
    if (!get_blob(r, rc)) return bad("relay reply");
    a.receipts.push_back(std::move(rc));
  }
  if (!r.u8(has)) return bad("relay reply");
  a.has_quote = has != 0;
  if (a.has_quote) {
    std::uint8_t kind = 0;
    r.u64(a.quote.settlement_id);
    r.u8(kind);
    if (kind < 1 || kind > 3) return bad("relay reply");
    a.quote.kind = static_cast<SettlementKind>(kind);
    r.u32(a.quote.stb_id);
    if (!get_money(r, a.quote.amount)) return bad("relay reply");
    r.u64(a.quote.first_sequence);
    r.u64(a.quote.last_sequence);
    if (!get_text(r, a.quote.payee)) return bad("relay reply");
  }
  if (!finished(r)) return bad("relay reply");
  return a;
}

std::vector<std::uint8_t> encode(const RelayRequest& q) {
  ByteWriter w;
  put_blob(w, q.sealed_history);
  w.u64(q.card_id);
  return w.take();
}
Result<RelayRequest> decode_relay_request(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  RelayRequest q;
  if (!get_blob(r, q.sealed_history) || !r.u64(q.card_id) || !finished(r)) return bad("relay");
  return q;
}

std::vector<std::uint8_t> encode(const PayRequest& q) {
  ByteWriter w;
  w.u64(q.settlement_id);
  put_blob(w, q.spend.encode());
  return w.take();
}
Result<PayRequest> decode_pay_request(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  PayRequest q;
  std::vector<std::uint8_t> spend;
  if (!r.u64(q.settlement_id) || !get_blob(r, spend) || !finished(r)) return bad("pay");
  return with_spend(std::move(q), spend);
}

std::vector<std::uint8_t> encode(const PrepayRequest& q) {
  ByteWriter w;
  w.u32(q.stb_id);
  put_money(w, q.amount);
  w.u64(q.card_id);
  return w.take();
}
Result<PrepayRequest> decode_prepay_request(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  PrepayRequest q;
  if (!r.u32(q.stb_id) || !get_money(r, q.amount) || !r.u64(q.card_id) || !finished(r)) return bad("prepay");
  if (q.amount.minor <= 0) return make_error(Errc::invalid_argument, "a prepayment must be positive");
  return q;
}

}  // namespace usher::entitlement
