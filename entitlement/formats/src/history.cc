#include "usher/entitlement/history.h"

#include <stdexcept>
#include <string>

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

namespace {
constexpr std::size_t kSealedHeaderSize = 1 + 4 + 4 + 32 + crypto::kGcmNonceSize;
constexpr std::array<std::uint8_t, 16> kSealLabel = {'u', 's', 'h', 'e', 'r', '-', 'h', 'i', 's', 't', 'o', 'r', 'y', '-', 'v', '2'};

std::vector<std::uint8_t> header_bytes(const SealedHistoryHeader& h) {
  ByteWriter w;
  w.u8(kSealedHistoryVersion);
  w.u32(h.stb_id);
  w.u32(h.billing_id);
  w.bytes(h.ephemeral);
  w.bytes(h.nonce);
  return w.take();
}

Key256 sealing_key(const Secret<32>& shared, const SealedHistoryHeader& h, const crypto::PublicKey& billing_x25519) {
  ByteWriter info;
  info.bytes(kSealLabel);
  info.u32(h.stb_id);
  info.u32(h.billing_id);
  info.bytes(h.ephemeral);
  info.bytes(billing_x25519);
  return crypto::hkdf_sha256(shared.bytes(), kSealLabel, info.data());
}
}  // namespace

std::vector<std::uint8_t> seal_history(std::span<const HistoryRecord> records, std::uint32_t stb_id, std::uint32_t billing_id,
                                       const crypto::PublicKey& billing_x25519) {
  ByteWriter plain;
  plain.u16(static_cast<std::uint16_t>(records.size()));
  for (const auto& r : records) {
    const auto b = r.encode();
    plain.u16(static_cast<std::uint16_t>(b.size()));
    plain.bytes(b);
  }
  SealedHistoryHeader h;
  h.stb_id = stb_id;
  h.billing_id = billing_id;
  auto ephemeral = crypto::X25519KeyPair::generate();
  h.ephemeral = ephemeral.public_key;
  crypto::random_bytes(h.nonce);
  auto shared = crypto::x25519(ephemeral.private_key, billing_x25519);
  // Billing's key comes from a certificate the operator signed; a key with no shared secret would
  // be the operator's mistake, not input to recover from.
  if (!shared) throw std::runtime_error("sealing a history: billing " + std::to_string(billing_id) + "'s X25519 key is unusable");
  const auto header = header_bytes(h);
  const auto sealed = crypto::aead_seal(sealing_key(*shared, h, billing_x25519), h.nonce, header, plain.data());
  ByteWriter out;
  out.bytes(header);
  out.bytes(sealed);
  return out.take();
}

Result<SealedHistoryHeader> sealed_history_header(std::span<const std::uint8_t> sealed) {
  ByteReader r(sealed);
  std::uint8_t version = 0;
  if (!r.u8(version)) return make_error(Errc::malformed, "sealed history: truncated");
  if (version == 1) {
    return make_error(Errc::malformed, "sealed history: version 1 (sealed for the operator's key) is no longer accepted: the STB's "
                                       "software must seal for billing's key (version 2)");
  }
  if (version != kSealedHistoryVersion) return make_error(Errc::malformed, "sealed history: unsupported version " + std::to_string(version));
  SealedHistoryHeader h;
  r.u32(h.stb_id);
  r.u32(h.billing_id);
  r.bytes(h.ephemeral);
  r.bytes(h.nonce);
  if (r.failed() || r.remaining() < crypto::kGcmTagSize) return make_error(Errc::malformed, "sealed history: truncated");
  return h;
}

Result<std::uint32_t> sealed_history_stb(std::span<const std::uint8_t> sealed) {
  USHER_TRY(auto h, sealed_history_header(sealed));
  return h.stb_id;
}

Result<std::vector<HistoryRecord>> open_history(std::span<const std::uint8_t> sealed, std::uint32_t billing_id,
                                                const Secret<32>& billing_x25519_private) {
  USHER_TRY(auto h, sealed_history_header(sealed));
  if (h.billing_id != billing_id) {
    return make_error(Errc::not_entitled, "sealed history of STB " + std::to_string(h.stb_id) + " is sealed for billing " +
                                              std::to_string(h.billing_id) + ", not for this billing (" + std::to_string(billing_id) + ")");
  }
  auto shared = crypto::x25519(billing_x25519_private, h.ephemeral);
  if (!shared) return make_error(Errc::auth_failed, "sealed history: unusable ephemeral key");
  const auto key = sealing_key(*shared, h, crypto::x25519_public(billing_x25519_private));
  auto plain = crypto::aead_open(key, h.nonce, sealed.first(kSealedHeaderSize), sealed.subspan(kSealedHeaderSize));
  if (!plain) return make_error(plain.error().code, "sealed history: " + plain.error().message);
  return decode_history_records(*plain, h.stb_id);
}

Result<std::vector<HistoryRecord>> decode_history_records(std::span<const std::uint8_t> plain, std::uint32_t stb_id) {
  ByteReader r(plain);
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
