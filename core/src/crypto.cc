#include "usher/core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <memory>
#include <stdexcept>

namespace usher {

void secure_zero(void* p, std::size_t n) { OPENSSL_cleanse(p, n); }
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace crypto {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

[[noreturn]] void die(const char* what) { throw std::runtime_error(std::string("OpenSSL: ") + what); }

Pkey raw_private(int type, const Secret<32>& k) {
  Pkey p(EVP_PKEY_new_raw_private_key(type, nullptr, k.bytes().data(), 32));
  if (!p) die("cannot load private key");
  return p;
}

PublicKey raw_public_of(EVP_PKEY* key) {
  PublicKey pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key, pub.data(), &len) != 1 || len != 32) die("cannot read public key");
  return pub;
}

template <typename Pair>
Pair generate_pair(int type) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) die("keygen");
  Pkey key(raw);
  Pair pair;
  std::size_t len = 32;
  if (EVP_PKEY_get_raw_private_key(key.get(), pair.private_key.mutable_bytes().data(), &len) != 1 || len != 32) {
    die("cannot export private key");
  }
  pair.public_key = raw_public_of(key.get());
  return pair;
}

}  // namespace

void random_bytes(std::span<std::uint8_t> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) die("RAND_bytes failed");
}

std::vector<std::uint8_t> aead_seal(const Key256& key, std::span<const std::uint8_t, kGcmNonceSize> nonce,
                                    std::span<const std::uint8_t> aad, std::span<const std::uint8_t> plaintext) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), nonce.data()) != 1) {
    die("GCM init");
  }
  std::vector<std::uint8_t> out(plaintext.size() + kGcmTagSize);
  int len = 0;
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    die("GCM aad");
  }
  int total = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), out.data(), &len, plaintext.data(), static_cast<int>(plaintext.size())) != 1) {
      die("GCM encrypt");
    }
    total = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + total, &len) != 1) die("GCM final");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagSize, out.data() + plaintext.size()) != 1) {
    die("GCM tag");
  }
  return out;
}

Result<std::vector<std::uint8_t>> aead_open(const Key256& key, std::span<const std::uint8_t, kGcmNonceSize> nonce,
                                            std::span<const std::uint8_t> aad, std::span<const std::uint8_t> sealed) {
  if (sealed.size() < kGcmTagSize) return make_error(Errc::malformed, "sealed data shorter than its tag");
  const auto ciphertext = sealed.first(sealed.size() - kGcmTagSize);
  std::array<std::uint8_t, kGcmTagSize> tag{};
  std::copy(sealed.end() - kGcmTagSize, sealed.end(), tag.begin());
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), nonce.data()) != 1) {
    die("GCM init");
  }
  int len = 0;
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    die("GCM aad");
  }
  std::vector<std::uint8_t> out(ciphertext.size());
  int total = 0;
  if (!ciphertext.empty()) {
    if (EVP_DecryptUpdate(ctx.get(), out.data(), &len, ciphertext.data(), static_cast<int>(ciphertext.size())) != 1) {
      die("GCM decrypt");
    }
    total = len;
  }
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag.data());
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + total, &len) != 1) {
    secure_zero(out.data(), out.size());
    return make_error(Errc::auth_failed, "authentication tag does not verify (forged, tampered or wrong key)");
  }
  return out;
}

X25519KeyPair X25519KeyPair::generate() { return generate_pair<X25519KeyPair>(EVP_PKEY_X25519); }
Ed25519KeyPair Ed25519KeyPair::generate() { return generate_pair<Ed25519KeyPair>(EVP_PKEY_ED25519); }

PublicKey x25519_public(const Secret<32>& private_key) {
  return raw_public_of(raw_private(EVP_PKEY_X25519, private_key).get());
}

PublicKey ed25519_public(const Secret<32>& private_key) {
  return raw_public_of(raw_private(EVP_PKEY_ED25519, private_key).get());
}

struct X25519Agreement::Key {
  Pkey pkey;
};

X25519Agreement::X25519Agreement(const Secret<32>& private_key)
    : key_(std::make_unique<Key>(Key{raw_private(EVP_PKEY_X25519, private_key)})) {}
X25519Agreement::X25519Agreement(X25519Agreement&&) noexcept = default;
X25519Agreement& X25519Agreement::operator=(X25519Agreement&&) noexcept = default;
X25519Agreement::~X25519Agreement() = default;

Result<Secret<32>> X25519Agreement::agree(const PublicKey& peer_public) const {
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), peer_public.size()));
  if (!peer) return make_error(Errc::crypto, "invalid X25519 public key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(key_->pkey.get(), nullptr));
  Secret<32> shared;
  std::size_t len = 32;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.mutable_bytes().data(), &len) != 1 || len != 32) {
    return make_error(Errc::crypto, "X25519 key agreement failed (low-order public key?)");
  }
  return shared;
}

Result<Secret<32>> x25519(const Secret<32>& private_key, const PublicKey& peer_public) {
  return X25519Agreement(private_key).agree(peer_public);
}

Signature ed25519_sign(const Secret<32>& private_key, std::span<const std::uint8_t> message) {
  Pkey key = raw_private(EVP_PKEY_ED25519, private_key);
  MdCtx ctx(EVP_MD_CTX_new());
  Signature sig{};
  std::size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1) {
    die("Ed25519 sign");
  }
  return sig;
}

bool ed25519_verify(const PublicKey& public_key, std::span<const std::uint8_t> message, const Signature& sig) {
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(), public_key.size()));
  if (!key) return false;
  MdCtx ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), message.data(), message.size()) == 1;
}

Digest sha256(std::span<const std::uint8_t> data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size()) die("SHA-256");
  return d;
}

Key256 pbkdf2_sha256(std::string_view password, std::span<const std::uint8_t> salt, int iterations) {
  Key256 out;
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(), static_cast<int>(salt.size()),
                        iterations, EVP_sha256(), 32, out.mutable_bytes().data()) != 1) {
    die("PBKDF2");
  }
  return out;
}

Key256 hkdf_sha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> salt,
                   std::span<const std::uint8_t> info) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  Key256 out;
  std::size_t len = 32;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.data(), static_cast<int>(salt.size())) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.mutable_bytes().data(), &len) != 1) {
    die("HKDF");
  }
  return out;
}

}  // namespace crypto
}  // namespace usher
