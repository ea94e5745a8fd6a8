// The entitlement engine's request handler on arbitrary bytes (every message a handset can send),
// over a real store in a temporary directory; the asset decoders a handset and an STB use; and the
// public identity files.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "usher/entitlement/billing_requests.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/identity_files.h"
#include "usher/core/clock.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/settlement.h"

namespace {
// Limits the fuzzer never reaches, so that every input is judged on its content.
constexpr usher::RateLimiter::Rate kUnlimited{1U << 30, 1U << 30};

struct Engine {
  usher::entitlement::EntitlementStore store;
  usher::entitlement::TestAcquirer acquirer;
  usher::entitlement::EngineService service{store, acquirer, usher::entitlement::EngineLimits{kUnlimited, kUnlimited}};
  // A registered handset: inputs are also sent signed by it, to reach past the signature check.
  usher::crypto::Ed25519KeyPair handset = usher::crypto::Ed25519KeyPair::generate();
  std::uint64_t card_id = 0;
  // A billing the operator certified: inputs are also sent signed by it (billing_requests.h).
  usher::crypto::Ed25519KeyPair billing = usher::crypto::Ed25519KeyPair::generate();
  explicit Engine(usher::entitlement::EntitlementStore s) : store(std::move(s)) {
    auto card = store.register_handset("fuzz", handset.public_key, {'E', 'U', 'R'});
    if (!card) std::abort();
    card_id = card->card_id;
    (void)store.certify_billing(1, billing.public_key, usher::crypto::X25519KeyPair::generate().public_key, usher::unix_now());
  }
};
Engine& engine() {
  static Engine* e = [] {
    char templ[] = "/tmp/usher-fuzz-engine-XXXXXX";
    std::string dir = mkdtemp(templ);
    auto s = usher::entitlement::EntitlementStore::create(dir + "/ops", 0x4AFF);
    if (!s) std::abort();
    (void)s->add_service(1, "one");
    usher::entitlement::EventInfo ev;
    ev.event_id = 7;
    ev.service_id = 1;
    ev.start = 4'000'000'000;
    ev.duration = 60;
    ev.price = {100, {'E', 'U', 'R'}};
    (void)s->add_event(ev);
    return new Engine(std::move(s.value()));
  }();
  return *e;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher::entitlement;
  const std::span<const std::uint8_t> in(data, size);
  const auto reply = engine().service.handle(in);
  if (reply.size() < 18) __builtin_trap();  // every request gets a framed reply
  // The same bytes as a signed request of type in[0] (request_auth.h), signed by the fuzz handset
  // now: the checks after the signature (card named, ticket owner, account) see arbitrary bodies.
  if (size >= 1) {
    const auto id = new_request_id();
    const auto signed_body = sign_request(data[0], id, in.subspan(1), engine().card_id, usher::unix_now(), engine().handset.private_key);
    const auto signed_reply = engine().service.handle(encode_request(static_cast<MessageType>(data[0]), id, signed_body));
    if (signed_reply.size() < 18) __builtin_trap();
  }
  // And as billing's request of type in[0], signed by the certified billing: the bodies of charges,
  // refunds, impulse purchases and the rest reach their decoders and the store.
  if (size >= 1) {
    const auto id = new_request_id();
    const auto billing_body = sign_billing_request(data[0], id, in.subspan(1), 1, usher::unix_now(), engine().billing.private_key);
    if (engine().service.handle(encode_request(static_cast<MessageType>(data[0]), id, billing_body)).size() < 18) __builtin_trap();
  }
  // The EMM feed (emm_changes): the request's cursor and the reply a headend reads; a page that
  // decodes encodes back to the same bytes.
  (void)decode_emm_changes_request(in);
  if (auto page = decode_emm_feed_page(in); page) {
    const auto again = encode(*page);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
  }
  (void)decode_holding_query(in);
  (void)decode_holding_reply(in);
  (void)decode_impulse_purchases(in);
  (void)decode_settlement_charge(in);
  (void)decode_settlement_refund(in);
  (void)decode_ticket_payment_lines(in);
  (void)decode_u32(in);
  (void)decode_u64(in);
  (void)decode_text(in);
  (void)decode_stb_ids(in);
  (void)split_signed(in);
  (void)reply_body(reply, RequestId{});
  (void)Ticket::decode(in);
  (void)SpendAuthorization::decode(in);
  (void)decode_events(in);
  (void)decode_buy_ticket_reply(in);
  (void)decode_card(in);
  (void)decode_register_handset_reply(in);
  (void)PrepaidCardCertificate::decode(in);
  (void)DeliveryAck::decode(in);
  (void)HistoryRecord::decode(in);
  // Sealed histories (version 2, for billing's X25519 key): the clear header, the opening with a
  // billing's key (and with the billing the header names), the records inside, and billing's
  // certificate, which the STB takes from the handset.
  static const auto billing_key = usher::crypto::X25519KeyPair::generate();
  (void)sealed_history_stb(in);
  if (auto header = sealed_history_header(in); header) (void)open_history(in, header->billing_id, billing_key.private_key);
  (void)open_history(in, 1, billing_key.private_key);
  (void)decode_history_records(in, 1001);
  if (auto cert = BillingCertificate::decode(in); cert) (void)cert->sealing_key();
  // The identity files the operator is handed (stb.pub, billing.pub) and hands out (operator.pub,
  // billing's certificate file), read from disk: one that reads must write back to what was read.
  static const std::string identity_dir = [] {
    char templ[] = "/tmp/usher-fuzz-identity-XXXXXX";
    return std::string(mkdtemp(templ));
  }();
  const auto path = identity_dir + "/in";
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (auto billing = BillingPublicFile::read(path); billing) {
    if (!billing->write(identity_dir + "/billing.pub")) __builtin_trap();
    auto back = BillingPublicFile::read(identity_dir + "/billing.pub");
    if (!back || back->billing_id != billing->billing_id || back->ed25519_public != billing->ed25519_public ||
        back->x25519_public != billing->x25519_public) {
      __builtin_trap();
    }
  }
  if (auto cert = read_billing_certificate(path); cert) {
    if (!write_billing_certificate(*cert, identity_dir + "/billing.cert")) __builtin_trap();
    auto back = read_billing_certificate(identity_dir + "/billing.cert");
    if (!back || back->encode() != cert->encode()) __builtin_trap();
  }
  (void)StbPublicFile::read(path);
  (void)OperatorPublicFile::read(path);
  return 0;
}
