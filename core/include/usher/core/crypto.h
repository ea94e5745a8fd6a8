// The one place Usher calls OpenSSL: CSPRNG, AES-256-GCM, X25519, Ed25519, HKDF-SHA256.
// OpenSSL objects live in RAII handles inside crypto.cc; callers see spans and Secrets only.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/secret.h"

namespace usher::crypto {

inline constexpr std::size_t kGcmNonceSize = 12;
inline constexpr std::size_t kGcmTagSize = 16;

// Fills `out` from OpenSSL's CSPRNG; throws if the generator fails (cannot continue safely).
void random_bytes(std::span<std::uint8_t> out);

// AES-256-GCM. seal returns ciphertext || tag.
std::vector<std::uint8_t> aead_seal(const Key256& key, std::span<const std::uint8_t, kGcmNonceSize> nonce,
                                    std::span<const std::uint8_t> aad, std::span<const std::uint8_t> plaintext);
// Opens ciphertext || tag; Errc::auth_failed when the tag does not verify.
Result<std::vector<std::uint8_t>> aead_open(const Key256& key, std::span<const std::uint8_t, kGcmNonceSize> nonce,
                                            std::span<const std::uint8_t> aad,
                                            std::span<const std::uint8_t> sealed);

using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;

struct X25519KeyPair {
  Secret<32> private_key;
  PublicKey public_key;
  static X25519KeyPair generate();
};
// Diffie-Hellman; Errc::crypto for a low-order or invalid peer key.
Result<Secret<32>> x25519(const Secret<32>& private_key, const PublicKey& peer_public);
// X25519 of one private key with many peers (the engine's bulk work over a million boxes): the key
// is loaded into OpenSSL once, where x25519() loads it, and so computes its public key, at every
// call. Each object is for one thread at a time.
class X25519Agreement {
 public:
  explicit X25519Agreement(const Secret<32>& private_key);
  X25519Agreement(X25519Agreement&&) noexcept;
  X25519Agreement& operator=(X25519Agreement&&) noexcept;
  X25519Agreement(const X25519Agreement&) = delete;
  X25519Agreement& operator=(const X25519Agreement&) = delete;
  ~X25519Agreement();
  // As x25519(private_key, peer_public).
  [[nodiscard]] Result<Secret<32>> agree(const PublicKey& peer_public) const;

 private:
  struct Key;
  std::unique_ptr<Key> key_;
};
// The public key that belongs to a private key.
PublicKey x25519_public(const Secret<32>& private_key);

struct Ed25519KeyPair {
  Secret<32> private_key;  // the seed
  PublicKey public_key;
  static Ed25519KeyPair generate();
};
// The public key that belongs to a private key (the seed).
PublicKey ed25519_public(const Secret<32>& private_key);
Signature ed25519_sign(const Secret<32>& private_key, std::span<const std::uint8_t> message);
bool ed25519_verify(const PublicKey& public_key, std::span<const std::uint8_t> message, const Signature& sig);

using Digest = std::array<std::uint8_t, 32>;
Digest sha256(std::span<const std::uint8_t> data);

// PBKDF2-HMAC-SHA256 producing 32 bytes: for short secrets such as a parental PIN.
Key256 pbkdf2_sha256(std::string_view password, std::span<const std::uint8_t> salt, int iterations);

// HKDF-SHA256 producing a 32-byte key.
Key256 hkdf_sha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> salt,
                   std::span<const std::uint8_t> info);

}  // namespace usher::crypto
