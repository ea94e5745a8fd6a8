// The key bundle sealed for one headend (catalogue.h).
#include "usher/entitlement/catalogue.h"

#include <algorithm>
#include <array>

#include "usher/core/bytes.h"

namespace usher::entitlement {

namespace {
std::vector<std::uint8_t> bundle_aad(std::uint32_t headend_id) {
  ByteWriter w;
  static constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'k', 'e', 'y', 's', '-', 'v', '1'};
  w.bytes(kDomain);
  w.u32(headend_id);
  return w.take();
}
std::vector<std::uint8_t> key_versions_aad(std::uint32_t headend_id) {
  ByteWriter w;
  static constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'k', 'e', 'y', 'v', '-', 'v', '1'};
  w.bytes(kDomain);
  w.u32(headend_id);
  return w.take();
}
std::vector<std::uint8_t> seal_with_nonce(const Key256& key, std::span<const std::uint8_t> aad, std::vector<std::uint8_t> plain) {
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonce{};
  crypto::random_bytes(nonce);
  auto sealed = crypto::aead_seal(key, nonce, aad, plain);
  secure_zero(plain.data(), plain.size());
  ByteWriter out;
  out.bytes(nonce);
  out.bytes(sealed);
  return out.take();
}
}  // namespace

std::vector<std::uint8_t> seal_key_versions(const std::vector<KeyBundle::KeyVersionEntry>& versions, const Key256& key,
                                            std::uint32_t headend_id) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(versions.size()));
  for (const auto& v : versions) {
    w.u16(v.service_id);
    w.u16(v.version.key_version);
    w.u64(v.version.starts);
    w.bytes(v.version.key.bytes());
  }
  return seal_with_nonce(key, key_versions_aad(headend_id), w.take());
}

Result<std::vector<KeyBundle::KeyVersionEntry>> open_key_versions(std::span<const std::uint8_t> sealed, const Key256& key,
                                                                 std::uint32_t headend_id) {
  if (sealed.size() < crypto::kGcmNonceSize + crypto::kGcmTagSize) return make_error(Errc::malformed, "key versions too short");
  std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(sealed.data(), crypto::kGcmNonceSize);
  auto plain = crypto::aead_open(key, nonce, key_versions_aad(headend_id), sealed.subspan(crypto::kGcmNonceSize));
  if (!plain) return make_error(plain.error().code, "key versions: " + plain.error().message);
  ByteReader r(*plain);
  std::vector<KeyBundle::KeyVersionEntry> out;
  std::uint16_t n = 0;
  r.u16(n);
  for (int i = 0; i < n && !r.failed(); ++i) {
    KeyBundle::KeyVersionEntry v;
    r.u16(v.service_id);
    r.u16(v.version.key_version);
    r.u64(v.version.starts);
    r.bytes(v.version.key.mutable_bytes());
    out.push_back(std::move(v));
  }
  const bool bad = r.failed() || r.remaining() != 0;
  secure_zero(plain->data(), plain->size());
  if (bad) return make_error(Errc::malformed, "key versions have the wrong length");
  return out;
}

std::vector<std::uint8_t> seal_key_bundle(const KeyBundle& b, const Key256& key, std::uint32_t headend_id) {
  ByteWriter w;
  w.u64(b.generated);
  w.u16(static_cast<std::uint16_t>(b.services.size()));
  for (const auto& s : b.services) {
    w.u16(s.service_id);
    w.u16(s.key_version);
    w.bytes(s.key.bytes());
  }
  w.u16(static_cast<std::uint16_t>(b.events.size()));
  for (const auto& e : b.events) {
    w.u32(e.event_id);
    w.u16(e.service_id);
    w.u64(e.start);
    w.u32(e.duration);
    w.u8(e.min_age);
    w.bytes(e.key.bytes());
    const auto n = std::min<std::size_t>(e.title.size(), 255);
    w.u8(static_cast<std::uint8_t>(n));
    w.bytes({reinterpret_cast<const std::uint8_t*>(e.title.data()), n});
    w.u64(static_cast<std::uint64_t>(e.price.minor));
    w.bytes({reinterpret_cast<const std::uint8_t*>(e.price.currency.data()), 3});
  }
  auto plain = w.take();
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonce{};
  crypto::random_bytes(nonce);
  auto sealed = crypto::aead_seal(key, nonce, bundle_aad(headend_id), plain);
  secure_zero(plain.data(), plain.size());
  ByteWriter out;
  out.bytes(nonce);
  out.bytes(sealed);
  return out.take();
}

Result<KeyBundle> open_key_bundle(std::span<const std::uint8_t> sealed, const Key256& key, std::uint32_t headend_id) {
  if (sealed.size() < crypto::kGcmNonceSize + crypto::kGcmTagSize) return make_error(Errc::malformed, "key bundle too short");
  std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(sealed.data(), crypto::kGcmNonceSize);
  auto plain = crypto::aead_open(key, nonce, bundle_aad(headend_id), sealed.subspan(crypto::kGcmNonceSize));
  if (!plain) return make_error(plain.error().code, "key bundle: " + plain.error().message);
  ByteReader r(*plain);
  KeyBundle b;
  std::uint16_t n = 0;
  r.u64(b.generated);
  r.u16(n);
  for (int i = 0; i < n && !r.failed(); ++i) {
    KeyBundle::ServiceEntry s;
    r.u16(s.service_id);
    r.u16(s.key_version);
    r.bytes(s.key.mutable_bytes());
    b.services.push_back(std::move(s));
  }
  r.u16(n);
  for (int i = 0; i < n && !r.failed(); ++i) {
    KeyBundle::EventEntry e;
    r.u32(e.event_id);
    r.u16(e.service_id);
    r.u64(e.start);
    r.u32(e.duration);
    r.u8(e.min_age);
    r.bytes(e.key.mutable_bytes());
    std::uint8_t n_title = 0;
    std::span<const std::uint8_t> title;
    std::uint64_t price = 0;
    std::array<std::uint8_t, 3> cur{};
    r.u8(n_title);
    r.view(n_title, title);
    r.u64(price);
    r.bytes(cur);
    e.title.assign(title.begin(), title.end());
    e.price = {static_cast<std::int64_t>(price), {static_cast<char>(cur[0]), static_cast<char>(cur[1]), static_cast<char>(cur[2])}};
    b.events.push_back(std::move(e));
  }
  const bool bad = r.failed() || r.remaining() != 0;
  secure_zero(plain->data(), plain->size());
  if (bad) return make_error(Errc::malformed, "key bundle has the wrong length");
  return b;
}

}  // namespace usher::entitlement
