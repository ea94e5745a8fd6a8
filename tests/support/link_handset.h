// LinkHandset: a handset's side of an STB's local link in tests that call LocalLink::handle
// directly: pairs with the code the link shows, then signs requests as a paired handset would.
#pragma once

#include <cstdint>
#include <vector>

#include "usher/core/clock.h"
#include "usher/core/crypto.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/local_link.h"

namespace usher::testing {

struct LinkHandset {
  crypto::Ed25519KeyPair keys = crypto::Ed25519KeyPair::generate();
  std::uint32_t stb_id = 0;

  // Pairs with `link` using the code it shows; false when the STB refused.
  bool pair(stb::LocalLink& link) {
    entitlement::PairRequest q;
    q.handset_public = keys.public_key;
    crypto::random_bytes(q.nonce);
    q.tag = entitlement::pairing_tag(link.pairing_code(), q.nonce, q.handset_public);
    const auto id = entitlement::new_request_id();
    auto body = entitlement::reply_body(
        link.handle(entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::LinkMessage::pair), id, entitlement::encode(q))), id);
    if (!body || body->size() != 36) return false;
    stb_id = (std::uint32_t{(*body)[0]} << 24) | (std::uint32_t{(*body)[1]} << 16) | (std::uint32_t{(*body)[2]} << 8) | (*body)[3];
    return true;
  }
  // A request signed by this handset for STB `stb_id`.
  [[nodiscard]] std::vector<std::uint8_t> request(entitlement::LinkMessage type, std::span<const std::uint8_t> body,
                                                  const entitlement::RequestId& id, std::uint64_t time = unix_now()) const {
    const auto t = static_cast<std::uint8_t>(type);
    return entitlement::encode_request(static_cast<entitlement::MessageType>(t), id,
                                       entitlement::sign_link_request(t, id, stb_id, body, keys.public_key, time, keys.private_key));
  }
};

}  // namespace usher::testing
