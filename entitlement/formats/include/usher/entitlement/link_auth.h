// Who may use an STB's local link, and how they prove it (docs/protocol.md, "Local link").
//
// Pairing, as Bluetooth pairs: `usher stb link` shows a 6-digit code (and writes it to
// `pairing-code` in the STB's home). The handset sends its Ed25519 public key with a tag that only
// someone who read the code can make; the STB remembers the key and answers with a proof that it
// is the box showing that code. A code serves one pairing and three wrong attempts; then the STB
// shows a new one, so guessing over the link succeeds about once in 330,000 codes shown.
//
//   pair request = 32 handset public | 16 nonce | 32 tag
//   pair reply   = u32 stb_id | 32 proof
//   tag   = HKDF-SHA256(ikm = code, salt = nonce, info = "usher-pair-v1" | handset public)
//   proof = HKDF-SHA256(ikm = code, salt = nonce, info = "usher-paired-v1" | handset public | u32 stb_id)
//
// Then every request that reads the STB's history or acks, or changes what it has relayed or
// settled, is signed: by a paired handset, or by billing (its key certified by the operator, as
// for receipts: the hotel front desk). The signature travels at the end of the body:
//
//   body      = inner body | signer | u16 signer length | u64 time | 64 signature
//   signer    = 32-byte paired handset key, or an encoded BillingCertificate
//   signature = Ed25519("usher-link-v1" | u8 type | 16 request id | u32 stb_id | signer | u64 time | inner body)
//
// The STB's id is signed too, so that a request for one box is worth nothing at another.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"

namespace usher::entitlement {

inline constexpr std::size_t kPairingCodeDigits = 6;
inline constexpr int kPairingAttempts = 3;

// A fresh code of kPairingCodeDigits decimal digits.
std::string new_pairing_code();
using PairingTag = std::array<std::uint8_t, 32>;
PairingTag pairing_tag(const std::string& code, std::span<const std::uint8_t, 16> nonce, const crypto::PublicKey& handset_public);
PairingTag pairing_proof(const std::string& code, std::span<const std::uint8_t, 16> nonce, const crypto::PublicKey& handset_public,
                         std::uint32_t stb_id);

struct PairRequest {
  crypto::PublicKey handset_public{};
  std::array<std::uint8_t, 16> nonce{};
  PairingTag tag{};
};
std::vector<std::uint8_t> encode(const PairRequest& r);
Result<PairRequest> decode_pair_request(std::span<const std::uint8_t> body);

struct LinkSignedRequest {
  std::span<const std::uint8_t> body;    // the inner body
  std::span<const std::uint8_t> signer;  // 32 bytes: a handset key; longer: a billing certificate
  std::uint64_t time = 0;
  crypto::Signature signature{};
  [[nodiscard]] bool verify(std::uint8_t type, const RequestId& id, std::uint32_t stb_id, const crypto::PublicKey& key) const;
  [[nodiscard]] crypto::Digest replay_key() const;
};
// Errc::auth_failed when the body carries no signature.
Result<LinkSignedRequest> split_link_signed(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> sign_link_request(std::uint8_t type, const RequestId& id, std::uint32_t stb_id, std::span<const std::uint8_t> inner,
                                            std::span<const std::uint8_t> signer, std::uint64_t time, const Secret<32>& key);

// Who signs a caller's link requests, for STB `stb_id`.
struct LinkSigner {
  std::uint32_t stb_id = 0;
  std::vector<std::uint8_t> signer;  // the handset's public key, or billing's encoded certificate
  const Secret<32>* key = nullptr;
};
// As call_framed, signed by `signer` with the current time.
Result<std::vector<std::uint8_t>> call_link_signed(net::RequestClient& client, LinkMessage type, std::span<const std::uint8_t> body,
                                                   const LinkSigner& signer);

}  // namespace usher::entitlement
