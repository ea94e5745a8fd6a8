#include "usher/core/crypto.h"

#include <gtest/gtest.h>

#include "usher/core/hex.h"

namespace usher::crypto {
namespace {

std::vector<std::uint8_t> hex(const char* s) { return *from_hex(s); }
template <std::size_t N>
std::array<std::uint8_t, N> arr(const char* s) {
  auto v = hex(s);
  std::array<std::uint8_t, N> a{};
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}
Secret<32> secret(const char* s) {
  auto a = arr<32>(s);
  return Secret<32>(std::span<const std::uint8_t, 32>(a));
}

TEST(Hkdf, Rfc5869Case1) {
  const auto ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const auto salt = hex("000102030405060708090a0b0c");
  const auto info = hex("f0f1f2f3f4f5f6f7f8f9");
  const auto okm = hkdf_sha256(ikm, salt, info);
  EXPECT_EQ(to_hex(okm.bytes()), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");
}

TEST(X25519, Rfc7748KnownAnswer) {
  const auto alice = secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const auto bob_pub = arr<32>("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  EXPECT_EQ(to_hex(x25519_public(alice)), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  auto shared = x25519(alice, bob_pub);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(to_hex(shared->bytes()), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

// RFC 8032, section 7.1, test 1: the public key of a seed (what a key file is checked with).
TEST(Ed25519, PublicKeyOfASeedIsRfc8032s) {
  const auto seed = secret("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  EXPECT_EQ(to_hex(ed25519_public(seed)), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const auto pair = Ed25519KeyPair::generate();
  EXPECT_EQ(ed25519_public(pair.private_key), pair.public_key);
}

TEST(X25519, GeneratedPairsAgreeAndLowOrderKeyIsRefused) {
  auto a = X25519KeyPair::generate();
  auto b = X25519KeyPair::generate();
  EXPECT_EQ(*x25519(a.private_key, b.public_key), *x25519(b.private_key, a.public_key));
  PublicKey zero{};
  EXPECT_FALSE(x25519(a.private_key, zero).ok());
}

TEST(Ed25519, Rfc8032Test1AndTamper) {
  const auto sk = secret("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const auto pk = arr<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const auto sig = ed25519_sign(sk, {});
  EXPECT_EQ(to_hex(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(ed25519_verify(pk, {}, sig));
  auto bad = sig;
  bad[0] ^= 1;
  EXPECT_FALSE(ed25519_verify(pk, {}, bad));
  const std::vector<std::uint8_t> msg = {1};
  EXPECT_FALSE(ed25519_verify(pk, msg, sig));
}

TEST(Aead, RoundTripAndEveryTamperIsRefused) {
  Key256 key;
  random_bytes(key.mutable_bytes());
  std::array<std::uint8_t, kGcmNonceSize> nonce{};
  random_bytes(nonce);
  const std::vector<std::uint8_t> aad = {1, 2, 3};
  const std::vector<std::uint8_t> plain = {10, 20, 30, 40, 50};
  const auto sealed = aead_seal(key, nonce, aad, plain);
  ASSERT_EQ(sealed.size(), plain.size() + kGcmTagSize);
  auto opened = aead_open(key, nonce, aad, sealed);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, plain);
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    auto t = sealed;
    t[i] ^= 0x80;
    auto r = aead_open(key, nonce, aad, t);
    ASSERT_FALSE(r.ok()) << i;
    EXPECT_EQ(r.error().code, Errc::auth_failed);
  }
  auto other_aad = aad;
  other_aad[0] = 9;
  EXPECT_FALSE(aead_open(key, nonce, other_aad, sealed).ok());
  EXPECT_EQ(aead_open(key, nonce, aad, std::span(sealed).first(5)).error().code, Errc::malformed);
}

}  // namespace
}  // namespace usher::crypto
