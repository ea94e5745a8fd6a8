#include "usher/entitlement/request_auth.h"

#include "usher/core/bytes.h"
#include "usher/core/clock.h"

namespace usher::entitlement {
namespace {
constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'r', 'e', 'q', '-', 'v', '1'};

std::vector<std::uint8_t> signed_bytes(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner,
                                       std::uint64_t card_id, std::uint64_t time) {
  ByteWriter w;
  w.bytes(kDomain);
  w.u8(type);
  w.bytes(id);
  w.u64(card_id);
  w.u64(time);
  w.bytes(inner);
  return w.take();
}
}  // namespace

std::vector<std::uint8_t> SignedRequest::signed_part(std::uint8_t type, const RequestId& id) const {
  return signed_bytes(type, id, body, card_id, time);
}

bool SignedRequest::verify(std::uint8_t type, const RequestId& id, const crypto::PublicKey& handset_public) const {
  return crypto::ed25519_verify(handset_public, signed_part(type, id), signature);
}

crypto::Digest SignedRequest::replay_key() const { return crypto::sha256(signature); }

Result<SignedRequest> split_signed(std::span<const std::uint8_t> body) {
  if (body.size() < kRequestAuthSize) {
    return make_error(Errc::auth_failed, "this request must be signed by the card's handset (docs/protocol.md, signed requests)");
  }
  SignedRequest s;
  s.body = body.first(body.size() - kRequestAuthSize);
  ByteReader r(body.last(kRequestAuthSize));
  r.u64(s.card_id);
  r.u64(s.time);
  r.bytes(s.signature);
  return s;
}

std::vector<std::uint8_t> sign_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner,
                                       std::uint64_t card_id, std::uint64_t time, const Secret<32>& handset_private) {
  const auto signature = crypto::ed25519_sign(handset_private, signed_bytes(type, id, inner, card_id, time));
  ByteWriter w;
  w.bytes(inner);
  w.u64(card_id);
  w.u64(time);
  w.bytes(signature);
  return w.take();
}

Status check_request_time(std::uint64_t time, std::uint64_t now) {
  const auto gap = time > now ? time - now : now - time;
  if (gap > kRequestWindowSeconds) {
    return make_error(Errc::stale, "the request was signed at " + format_utc(time) + ", more than " + std::to_string(kRequestWindowSeconds) +
                                       " s from this service's clock (" + format_utc(now) + "): check the handset's clock");
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> call_signed(net::RequestClient& client, std::uint8_t type, std::span<const std::uint8_t> body,
                                              const RequestSigner& signer) {
  const auto id = new_request_id();
  const auto signed_body = sign_request(type, id, body, signer.card_id, unix_now(), *signer.handset_private);
  USHER_TRY(auto reply, client.call(encode_request(static_cast<MessageType>(type), id, signed_body)));
  return reply_body(reply, id);
}

}  // namespace usher::entitlement
