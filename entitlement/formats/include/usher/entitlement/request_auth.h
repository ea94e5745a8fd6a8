// Signed requests: how a handset proves, on each request that reads or changes its card, its
// account or its boxes, that it holds the card's key, as it already does for a spend
// (docs/protocol.md, "Signed requests"). The signature travels at the end of the request's body:
//
//   body      = inner body | u64 card_id | u64 time (unix s) | 64 signature
//   signature = Ed25519(card's handset key, "usher-req-v1" | u8 type | 16 request id | u64 card_id |
//                       u64 time | inner body)
//
// The service answers a signed request once: the same bytes again (a client's retry, or someone
// replaying what they saw) get the same reply and change nothing; a time more than
// kRequestWindowSeconds from the service's clock is refused as stale, so a request cannot be kept
// and played later, and the service forgets what it answered once that falls out of the window.
//
//   auto body = sign_request(type, id, inner, card_id, unix_now(), handset_private);
//   auto signed_request = split_signed(frame.body);   // the service's side
//   if (!signed_request->verify(type, frame.id, card.handset_public)) -> Errc::auth_failed
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"

namespace usher::entitlement {

inline constexpr std::uint64_t kRequestWindowSeconds = 300;
inline constexpr std::size_t kRequestAuthSize = 8 + 8 + 64;

struct SignedRequest {
  std::span<const std::uint8_t> body;  // the inner body (a view into the frame's)
  std::uint64_t card_id = 0;           // 0: register_handset, signed by the key it registers
  std::uint64_t time = 0;
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part(std::uint8_t type, const RequestId& id) const;
  [[nodiscard]] bool verify(std::uint8_t type, const RequestId& id, const crypto::PublicKey& handset_public) const;
  // What the service remembers the request's reply under (a hash of its signature, which covers
  // the whole request: no other request shares it).
  [[nodiscard]] crypto::Digest replay_key() const;
};

// Errc::auth_failed when the body is too short to carry a signature (the request is unsigned).
Result<SignedRequest> split_signed(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> sign_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner,
                                       std::uint64_t card_id, std::uint64_t time, const Secret<32>& handset_private);
// Errc::stale when `time` is more than kRequestWindowSeconds away from `now`.
Status check_request_time(std::uint64_t time, std::uint64_t now);

// Who signs a client's requests: the handset holding card `card_id`.
struct RequestSigner {
  std::uint64_t card_id = 0;
  const Secret<32>* handset_private = nullptr;
};
// As call_framed, signed by `signer` with the current time.
Result<std::vector<std::uint8_t>> call_signed(net::RequestClient& client, std::uint8_t type, std::span<const std::uint8_t> body,
                                              const RequestSigner& signer);

}  // namespace usher::entitlement
