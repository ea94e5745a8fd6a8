#include "usher/entitlement/link_auth.h"

#include "usher/core/bytes.h"
#include "usher/core/clock.h"

namespace usher::entitlement {
namespace {
constexpr std::uint8_t kLinkDomain[] = {'u', 's', 'h', 'e', 'r', '-', 'l', 'i', 'n', 'k', '-', 'v', '1'};

PairingTag derive(const std::string& code, std::span<const std::uint8_t, 16> nonce, std::span<const std::uint8_t> info) {
  const auto key = crypto::hkdf_sha256({reinterpret_cast<const std::uint8_t*>(code.data()), code.size()}, nonce, info);
  PairingTag out{};
  std::copy(key.bytes().begin(), key.bytes().end(), out.begin());
  return out;
}

std::vector<std::uint8_t> link_signed_bytes(std::uint8_t type, const RequestId& id, std::uint32_t stb_id, std::span<const std::uint8_t> signer,
                                            std::uint64_t time, std::span<const std::uint8_t> inner) {
  ByteWriter w;
  w.bytes(kLinkDomain);
  w.u8(type);
  w.bytes(id);
  w.u32(stb_id);
  w.bytes(signer);
  w.u64(time);
  w.bytes(inner);
  return w.take();
}
}  // namespace

std::string new_pairing_code() {
  std::string code;
  while (code.size() < kPairingCodeDigits) {
    std::array<std::uint8_t, 1> b{};
    crypto::random_bytes(b);
    if (b[0] < 250) code += static_cast<char>('0' + b[0] % 10);  // 250 = 25 * 10: no digit more likely
  }
  return code;
}

PairingTag pairing_tag(const std::string& code, std::span<const std::uint8_t, 16> nonce, const crypto::PublicKey& handset_public) {
  ByteWriter info;
  info.bytes(std::vector<std::uint8_t>{'u', 's', 'h', 'e', 'r', '-', 'p', 'a', 'i', 'r', '-', 'v', '1'});
  info.bytes(handset_public);
  return derive(code, nonce, info.data());
}

PairingTag pairing_proof(const std::string& code, std::span<const std::uint8_t, 16> nonce, const crypto::PublicKey& handset_public,
                         std::uint32_t stb_id) {
  ByteWriter info;
  info.bytes(std::vector<std::uint8_t>{'u', 's', 'h', 'e', 'r', '-', 'p', 'a', 'i', 'r', 'e', 'd', '-', 'v', '1'});
  info.bytes(handset_public);
  info.u32(stb_id);
  return derive(code, nonce, info.data());
}

std::vector<std::uint8_t> encode(const PairRequest& r) {
  ByteWriter w;
  w.bytes(r.handset_public);
  w.bytes(r.nonce);
  w.bytes(r.tag);
  return w.take();
}

Result<PairRequest> decode_pair_request(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  PairRequest q;
  r.bytes(q.handset_public);
  r.bytes(q.nonce);
  r.bytes(q.tag);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "pair request: wrong length");
  return q;
}

bool LinkSignedRequest::verify(std::uint8_t type, const RequestId& id, std::uint32_t stb_id, const crypto::PublicKey& key) const {
  return crypto::ed25519_verify(key, link_signed_bytes(type, id, stb_id, signer, time, body), signature);
}

crypto::Digest LinkSignedRequest::replay_key() const { return crypto::sha256(signature); }

Result<LinkSignedRequest> split_link_signed(std::span<const std::uint8_t> body) {
  const auto unsigned_request = [] {
    return make_error(Errc::auth_failed, "this STB serves that only to a paired handset (usher wallet pair) or to billing");
  };
  constexpr std::size_t kTail = 2 + 8 + 64;
  if (body.size() < kTail) return unsigned_request();
  LinkSignedRequest s;
  ByteReader r(body.last(kTail));
  std::uint16_t signer_size = 0;
  r.u16(signer_size);
  r.u64(s.time);
  r.bytes(s.signature);
  if (body.size() < kTail + signer_size || signer_size < 32) return unsigned_request();
  const auto rest = body.first(body.size() - kTail);
  s.signer = rest.last(signer_size);
  s.body = rest.first(rest.size() - signer_size);
  return s;
}

std::vector<std::uint8_t> sign_link_request(std::uint8_t type, const RequestId& id, std::uint32_t stb_id, std::span<const std::uint8_t> inner,
                                            std::span<const std::uint8_t> signer, std::uint64_t time, const Secret<32>& key) {
  const auto signature = crypto::ed25519_sign(key, link_signed_bytes(type, id, stb_id, signer, time, inner));
  ByteWriter w;
  w.bytes(inner);
  w.bytes(signer);
  w.u16(static_cast<std::uint16_t>(signer.size()));
  w.u64(time);
  w.bytes(signature);
  return w.take();
}

Result<std::vector<std::uint8_t>> call_link_signed(net::RequestClient& client, LinkMessage type, std::span<const std::uint8_t> body,
                                                   const LinkSigner& signer) {
  const auto id = new_request_id();
  const auto t = static_cast<std::uint8_t>(type);
  const auto signed_body = sign_link_request(t, id, signer.stb_id, body, signer.signer, unix_now(), *signer.key);
  USHER_TRY(auto reply, client.call(encode_request(static_cast<MessageType>(t), id, signed_body)));
  return reply_body(reply, id);
}

}  // namespace usher::entitlement
