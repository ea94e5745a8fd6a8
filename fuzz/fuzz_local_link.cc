// The STB's local link on arbitrary bytes (what any device in radio range could send), over a real
// secure element in a temporary directory.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "usher/core/clock.h"
#include "usher/core/crypto.h"
#include "usher/entitlement/link_auth.h"
#include "usher/stb/local_link.h"

namespace {
// A handset paired with the link at start: inputs are also sent signed by it.
usher::crypto::Ed25519KeyPair& handset() {
  static auto* keys = new usher::crypto::Ed25519KeyPair(usher::crypto::Ed25519KeyPair::generate());
  return *keys;
}
usher::stb::LocalLink& link() {
  static usher::stb::LocalLink* l = [] {
    char templ[] = "/tmp/usher-fuzz-link-XXXXXX";
    std::string dir = mkdtemp(templ);
    usher::entitlement::OperatorPublicFile op;
    op.ca_system_id = 0x4AFF;
    op.x25519_public = usher::crypto::X25519KeyPair::generate().public_key;
    op.ed25519_public = usher::crypto::Ed25519KeyPair::generate().public_key;
    auto se = usher::stb::SecureElement::init(dir + "/stb", 1001, op);
    if (!se) std::abort();
    auto* l = new usher::stb::LocalLink(*new usher::stb::SecureElement(std::move(se.value())), dir + "/stb");
    usher::entitlement::PairRequest q;
    q.handset_public = handset().public_key;
    usher::crypto::random_bytes(q.nonce);
    q.tag = usher::entitlement::pairing_tag(l->pairing_code(), q.nonce, q.handset_public);
    const auto id = usher::entitlement::new_request_id();
    const auto paired = l->handle(usher::entitlement::encode_request(
        static_cast<usher::entitlement::MessageType>(usher::entitlement::LinkMessage::pair), id, usher::entitlement::encode(q)));
    if (!usher::entitlement::reply_body(paired, id)) std::abort();
    return l;
  }();
  return *l;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  const auto reply = link().handle(in);
  if (reply.size() < 18) __builtin_trap();
  // The same bytes as a request of type in[0] from the paired handset, signed now for this STB.
  if (size >= 1) {
    const auto id = usher::entitlement::new_request_id();
    const auto body = usher::entitlement::sign_link_request(data[0], id, 1001, in.subspan(1), handset().public_key, usher::unix_now(),
                                                            handset().private_key);
    const auto signed_reply = link().handle(usher::entitlement::encode_request(static_cast<usher::entitlement::MessageType>(data[0]), id, body));
    if (signed_reply.size() < 18) __builtin_trap();
  }
  (void)usher::entitlement::split_link_signed(in);
  (void)usher::entitlement::decode_pair_request(in);
  return 0;
}
