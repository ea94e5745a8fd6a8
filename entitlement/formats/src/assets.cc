#include "usher/entitlement/assets.h"

#include <cctype>
#include <cstdio>

#include "usher/core/bytes.h"

namespace usher::entitlement {
namespace {

constexpr std::uint8_t kSpendVersion = 1;
constexpr std::size_t kMaxText = 255;

void put_text(ByteWriter& w, const std::string& s) {
  const auto n = std::min(s.size(), kMaxText);
  w.u8(static_cast<std::uint8_t>(n));
  w.bytes({reinterpret_cast<const std::uint8_t*>(s.data()), n});
}
bool get_text(ByteReader& r, std::string& s) {
  std::uint8_t n = 0;
  std::span<const std::uint8_t> v;
  if (!r.u8(n) || !r.view(n, v)) return false;
  s.assign(v.begin(), v.end());
  return true;
}

}  // namespace

Result<Currency> parse_currency(const std::string& text) {
  if (text.size() != 3 || !std::isupper(static_cast<unsigned char>(text[0])) ||
      !std::isupper(static_cast<unsigned char>(text[1])) || !std::isupper(static_cast<unsigned char>(text[2]))) {
    return make_error(Errc::invalid_argument, "currency must be an ISO 4217 code such as EUR, got '" + text + "'");
  }
  return Currency{text[0], text[1], text[2]};
}

std::string to_string(const Currency& c) { return std::string(c.begin(), c.end()); }

std::string format_money(const Money& m) {
  const std::int64_t whole = m.minor / 100;
  const std::int64_t cents = (m.minor < 0 ? -m.minor : m.minor) % 100;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%lld.%02lld %s", (m.minor < 0 && whole == 0) ? "-" : "",
                static_cast<long long>(whole), static_cast<long long>(cents), to_string(m.currency).c_str());
  return buf;
}

Result<std::int64_t> parse_amount(const std::string& text) {
  const auto dot = text.find('.');
  const std::string whole = text.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : text.substr(dot + 1);
  auto digits = [](const std::string& s) { return s.find_first_not_of("0123456789") == std::string::npos; };
  if (whole.empty() || whole.size() > 12 || !digits(whole) || frac.size() > 2 || !digits(frac) ||
      (dot != std::string::npos && frac.empty())) {
    return make_error(Errc::invalid_argument, "amount must look like 12.50 (at most two decimals), got '" + text + "'");
  }
  while (frac.size() < 2) frac += '0';
  return std::stoll(whole) * 100 + std::stoll(frac);
}

std::vector<std::uint8_t> Ticket::signed_part() const {
  ByteWriter w;
  w.u8(kAssetVersion);
  w.u8(type);
  w.u64(ticket_id);
  w.u32(event_id);
  w.u16(service_id);
  w.u32(stb_id);
  w.u64(valid_from);
  w.u64(valid_until);
  w.u64(issued);
  w.u8(transferable ? 1 : 0);
  put_text(w, title);
  w.u32(issuer_id);
  w.u32(provider_id);
  return w.take();
}

std::vector<std::uint8_t> Ticket::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}

Result<Ticket> Ticket::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::uint8_t version = 0, type = 0, transferable = 0;
  Ticket t;
  r.u8(version);
  r.u8(type);
  if (r.failed()) return make_error(Errc::malformed, "ticket: truncated");
  if (version != kAssetVersion) return make_error(Errc::malformed, "ticket: unsupported version " + std::to_string(version));
  if (type != kAssetTypePpvTicket && type != kAssetTypeServicePass) {
    return make_error(Errc::malformed, "ticket: unknown type " + std::to_string(type));
  }
  t.type = type;
  r.u64(t.ticket_id);
  r.u32(t.event_id);
  r.u16(t.service_id);
  r.u32(t.stb_id);
  r.u64(t.valid_from);
  r.u64(t.valid_until);
  r.u64(t.issued);
  r.u8(transferable);
  if (!get_text(r, t.title)) return make_error(Errc::malformed, "ticket: truncated title");
  r.u32(t.issuer_id);
  r.u32(t.provider_id);
  r.bytes(t.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "ticket: wrong length");
  if (transferable > 1) return make_error(Errc::malformed, "ticket: bad transferable flag");
  t.transferable = transferable == 1;
  return t;
}

void Ticket::sign(const Secret<32>& issuer_private) { signature = crypto::ed25519_sign(issuer_private, signed_part()); }
bool Ticket::verify(const crypto::PublicKey& issuer_public) const {
  return crypto::ed25519_verify(issuer_public, signed_part(), signature);
}

std::vector<std::uint8_t> SpendAuthorization::signed_part() const {
  ByteWriter w;
  w.u8(kSpendVersion);
  static constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 's', 'p', 'e', 'n', 'd'};
  w.bytes(kDomain);
  w.u64(card_id);
  w.u64(static_cast<std::uint64_t>(amount.minor));
  w.bytes({reinterpret_cast<const std::uint8_t*>(amount.currency.data()), 3});
  put_text(w, payee);
  w.bytes(nonce);
  return w.take();
}

std::vector<std::uint8_t> SpendAuthorization::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}

Result<SpendAuthorization> SpendAuthorization::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::uint8_t version = 0;
  std::array<std::uint8_t, 11> domain{};
  SpendAuthorization a;
  std::uint64_t amount = 0;
  std::array<std::uint8_t, 3> cur{};
  r.u8(version);
  r.bytes(domain);
  if (r.failed() || version != kSpendVersion) return make_error(Errc::malformed, "spend authorization: unsupported version");
  r.u64(a.card_id);
  r.u64(amount);
  r.bytes(cur);
  if (r.failed() || !get_text(r, a.payee)) return make_error(Errc::malformed, "spend authorization: truncated");
  r.bytes(a.nonce);
  r.bytes(a.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "spend authorization: wrong length");
  a.amount.minor = static_cast<std::int64_t>(amount);
  auto c = parse_currency(std::string(cur.begin(), cur.end()));
  if (!c) return make_error(Errc::malformed, "spend authorization: " + c.error().message);
  a.amount.currency = *c;
  return a;
}

void SpendAuthorization::sign(const Secret<32>& handset_private) {
  signature = crypto::ed25519_sign(handset_private, signed_part());
}
bool SpendAuthorization::verify(const crypto::PublicKey& handset_public) const {
  return crypto::ed25519_verify(handset_public, signed_part(), signature);
}

std::vector<std::uint8_t> PrepaidCardCertificate::signed_part() const {
  ByteWriter w;
  w.u8(kAssetVersion);
  w.u8(kAssetTypePrepaidCard);
  w.u64(card_id);
  w.bytes(holder_public);
  w.bytes({reinterpret_cast<const std::uint8_t*>(currency.data()), 3});
  w.u64(issued);
  w.u32(issuer_id);
  w.u32(provider_id);
  return w.take();
}
std::vector<std::uint8_t> PrepaidCardCertificate::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}
Result<PrepaidCardCertificate> PrepaidCardCertificate::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::uint8_t version = 0, type = 0;
  std::array<std::uint8_t, 3> cur{};
  PrepaidCardCertificate c;
  r.u8(version);
  r.u8(type);
  r.u64(c.card_id);
  r.bytes(c.holder_public);
  r.bytes(cur);
  r.u64(c.issued);
  r.u32(c.issuer_id);
  r.u32(c.provider_id);
  r.bytes(c.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "card certificate: wrong length");
  if (version != kAssetVersion || type != kAssetTypePrepaidCard) return make_error(Errc::malformed, "not a prepaid card certificate");
  auto parsed = parse_currency(std::string(cur.begin(), cur.end()));
  if (!parsed) return make_error(Errc::malformed, "card certificate: " + parsed.error().message);
  c.currency = *parsed;
  return c;
}
void PrepaidCardCertificate::sign(const Secret<32>& issuer_private) {
  signature = crypto::ed25519_sign(issuer_private, signed_part());
}
bool PrepaidCardCertificate::verify(const crypto::PublicKey& issuer_public) const {
  return crypto::ed25519_verify(issuer_public, signed_part(), signature);
}

std::vector<std::uint8_t> DeliveryAck::signed_part() const {
  ByteWriter w;
  static constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'a', 'c', 'k', '-', 'v', '1'};
  w.bytes(kDomain);
  w.u64(ticket_id);
  w.u32(stb_id);
  w.u64(stored);
  return w.take();
}
std::vector<std::uint8_t> DeliveryAck::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}
Result<DeliveryAck> DeliveryAck::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::array<std::uint8_t, 12> domain{};
  DeliveryAck a;
  r.bytes(domain);
  r.u64(a.ticket_id);
  r.u32(a.stb_id);
  r.u64(a.stored);
  r.bytes(a.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "delivery ack: wrong length");
  static constexpr std::array<std::uint8_t, 12> kDomain = {'u', 's', 'h', 'e', 'r', '-', 'a', 'c', 'k', '-', 'v', '1'};
  if (domain != kDomain) return make_error(Errc::malformed, "delivery ack: not a delivery ack");
  return a;
}
void DeliveryAck::sign(const Secret<32>& stb_private) { signature = crypto::ed25519_sign(stb_private, signed_part()); }
bool DeliveryAck::verify(const crypto::PublicKey& stb_public) const {
  return crypto::ed25519_verify(stb_public, signed_part(), signature);
}

std::string payee_for(std::uint32_t event_id, std::uint32_t stb_id) {
  return "ppv:event=" + std::to_string(event_id) + ":stb=" + std::to_string(stb_id);
}

std::string pass_payee_for(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id) {
  return "pass:service=" + std::to_string(service_id) + ":days=" + std::to_string(days) + ":stb=" + std::to_string(stb_id);
}

}  // namespace usher::entitlement
