#include "usher/entitlement/history.h"

#include "usher/core/bytes.h"

namespace usher::entitlement {
namespace {
constexpr std::array<std::uint8_t, 13> kDomain = {'u', 's', 'h', 'e', 'r', '-', 'h', 'i', 's', 't', '-', 'v', '1'};
}

std::vector<std::uint8_t> HistoryRecord::signed_part() const {
  ByteWriter w;
  w.bytes(kDomain);
  w.u32(stb_id);
  w.u64(sequence);
  w.u64(time);
  w.u32(event_id);
  w.u16(service_id);
  w.u64(static_cast<std::uint64_t>(price.minor));
  w.bytes({reinterpret_cast<const std::uint8_t*>(price.currency.data()), 3});
  w.u8(payment);
  w.u64(stay_id);
  w.bytes(previous);
  return w.take();
}

std::vector<std::uint8_t> HistoryRecord::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}

Result<HistoryRecord> HistoryRecord::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::array<std::uint8_t, 13> domain{};
  std::array<std::uint8_t, 3> cur{};
  std::uint64_t price = 0;
  HistoryRecord h;
  r.bytes(domain);
  r.u32(h.stb_id);
  r.u64(h.sequence);
  r.u64(h.time);
  r.u32(h.event_id);
  r.u16(h.service_id);
  r.u64(price);
  r.bytes(cur);
  r.u8(h.payment);
  r.u64(h.stay_id);
  r.bytes(h.previous);
  r.bytes(h.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "history record: wrong length");
  if (domain != kDomain) return make_error(Errc::malformed, "not a history record");
  if (h.payment > kPaymentPrepaid) return make_error(Errc::malformed, "history record: unknown payment kind");
  if (price > static_cast<std::uint64_t>(INT64_MAX)) return make_error(Errc::malformed, "history record: price out of range");
  auto c = parse_currency(std::string(cur.begin(), cur.end()));
  if (!c) return make_error(Errc::malformed, "history record: " + c.error().message);
  h.price = {static_cast<std::int64_t>(price), *c};
  return h;
}

crypto::Digest HistoryRecord::hash() const { return crypto::sha256(encode()); }

void HistoryRecord::sign(const Secret<32>& stb_private) { signature = crypto::ed25519_sign(stb_private, signed_part()); }

Status verify_history(std::span<const HistoryRecord> records, const crypto::PublicKey& stb_public,
                      std::uint64_t after_sequence, const crypto::Digest& after_hash) {
  std::uint64_t expected = after_sequence + 1;
  crypto::Digest previous = after_hash;
  for (const auto& r : records) {
    if (r.sequence != expected) {
      return make_error(Errc::stale, "history record " + std::to_string(r.sequence) + " where " + std::to_string(expected) +
                                         " was expected (a gap, a reordering or a replay)");
    }
    if (!crypto::ed25519_verify(stb_public, r.signed_part(), r.signature)) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " is not signed by STB " +
                                               std::to_string(r.stb_id));
    }
    if (r.previous != previous) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " does not follow the one before");
    }
    previous = r.hash();
    ++expected;
  }
  return ok_status();
}

Key256 history_key(const Key256& emm_key) {
  static constexpr std::uint8_t kSalt[] = {'u', 's', 'h', 'e', 'r', '-', 'h', 'i', 's', 't', 'o', 'r', 'y', '-', 'v', '1'};
  return crypto::hkdf_sha256(emm_key.bytes(), kSalt, {});
}

namespace {
constexpr std::uint8_t kSealedVersion = 1;
std::vector<std::uint8_t> sealed_aad(std::uint32_t stb_id) {
  ByteWriter w;
  w.u8(kSealedVersion);
  w.u32(stb_id);
  return w.take();
}
}  // namespace

std::vector<std::uint8_t> seal_history(std::span<const HistoryRecord> records, std::uint32_t stb_id, const Key256& key) {
  ByteWriter plain;
  plain.u16(static_cast<std::uint16_t>(records.size()));
  for (const auto& r : records) {
    const auto b = r.encode();
    plain.u16(static_cast<std::uint16_t>(b.size()));
    plain.bytes(b);
  }
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonce{};
  crypto::random_bytes(nonce);
  const auto aad = sealed_aad(stb_id);
  const auto sealed = crypto::aead_seal(key, nonce, aad, plain.data());
  ByteWriter out;
  out.bytes(aad);
  out.bytes(nonce);
  out.bytes(sealed);
  return out.take();
}

Result<std::uint32_t> sealed_history_stb(std::span<const std::uint8_t> sealed) {
  ByteReader r(sealed);
  std::uint8_t version = 0;
  std::uint32_t stb_id = 0;
  if (!r.u8(version) || !r.u32(stb_id)) return make_error(Errc::malformed, "sealed history: truncated");
  if (version != kSealedVersion) return make_error(Errc::malformed, "sealed history: unsupported version " + std::to_string(version));
  return stb_id;
}

Result<std::vector<HistoryRecord>> open_history(std::span<const std::uint8_t> sealed, const Key256& key) {
  USHER_TRY(auto stb_id, sealed_history_stb(sealed));
  if (sealed.size() < 5 + crypto::kGcmNonceSize + crypto::kGcmTagSize) return make_error(Errc::malformed, "sealed history: truncated");
  std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(sealed.data() + 5, crypto::kGcmNonceSize);
  auto plain = crypto::aead_open(key, nonce, sealed_aad(stb_id), sealed.subspan(5 + crypto::kGcmNonceSize));
  if (!plain) return make_error(plain.error().code, "sealed history: " + plain.error().message);
  ByteReader r(*plain);
  std::uint16_t n = 0;
  std::vector<HistoryRecord> out;
  if (!r.u16(n)) return make_error(Errc::malformed, "sealed history: no record count");
  for (int i = 0; i < n; ++i) {
    std::uint16_t len = 0;
    std::span<const std::uint8_t> b;
    if (!r.u16(len) || !r.view(len, b)) return make_error(Errc::malformed, "sealed history: truncated record");
    USHER_TRY(auto rec, HistoryRecord::decode(b));
    if (rec.stb_id != stb_id) return make_error(Errc::auth_failed, "sealed history: a record of another STB");
    out.push_back(rec);
  }
  if (r.remaining() != 0) return make_error(Errc::malformed, "sealed history: trailing bytes");
  return out;
}

}  // namespace usher::entitlement
