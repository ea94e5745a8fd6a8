// Billing's service on arbitrary bytes (what any handset or room STB could send: relays, payments,
// prepayments, room reports), over a real engine store and billing store in a temporary directory;
// plus every billing object decoder (receipt, room state, certificate, relay messages). A decoded
// receipt or room state must encode back to the same bytes (one canonical encoding).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <atomic>
#include <optional>

#include "usher/billing/billing_service.h"
#include "usher/core/clock.h"
#include "usher/core/log.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/store.h"

namespace {
using namespace usher;
using namespace usher::entitlement;

struct World {
  std::optional<EntitlementStore> engine;
  // The engine billing asks, served from a thread on a connection of its own (billing reaches the
  // engine only over its protocol). Never stopped: the fuzzer's process ends with it.
  std::optional<EntitlementStore> served;
  TestAcquirer acquirer;
  std::optional<EngineService> engine_service;
  std::optional<net::ReplyServer> engine_server;
  std::atomic<bool> never{false};
  std::optional<billing::BillingStore> books;
  std::optional<billing::BillingService> service;
  // A card whose handset signs the inputs sent as relays and prepayments.
  crypto::Ed25519KeyPair handset = crypto::Ed25519KeyPair::generate();
  std::uint64_t card_id = 0;
  World() {
    set_log_level(LogLevel::off);
    char templ[] = "/tmp/usher-fuzz-billing-XXXXXX";
    const std::string dir = mkdtemp(templ);
    engine.emplace(EntitlementStore::create(dir + "/ent", 0x4AFF).value());
    (void)engine->add_service(1, "svc");
    (void)engine->register_stb({1001, crypto::X25519KeyPair::generate().public_key, crypto::Ed25519KeyPair::generate().public_key});
    card_id = engine->register_handset("fuzz", handset.public_key, {'E', 'U', 'R'}).value().card_id;
    served.emplace(EntitlementStore::open(dir + "/ent").value());
    engine_service.emplace(*served, acquirer);
    engine_server.emplace("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([this](const auto& r) { return engine_service->handle_batch(r); }));
    std::thread([this] { engine_server->run(never); }).detach();
    // As `usher billing init`, `usher entitlement billing add` and `usher billing certify` make it.
    auto op = OperatorPublicFile::read(dir + "/ent/" + OperatorPublicFile::kFileName);
    if (!op) std::abort();
    auto b = billing::BillingStore::create(dir + "/billing", 1, *op, engine_server->endpoint());
    if (!b) std::abort();
    books.emplace(std::move(b.value()));
    const auto pub = books->public_file();
    if (!books->install_certificate(engine->certify_billing(pub.billing_id, pub.ed25519_public, pub.x25519_public, unix_now()))) std::abort();
    (void)books->set_hotel_credit({1000, {'E', 'U', 'R'}});
    (void)books->add_room("102", 1001, "tcp://127.0.0.1:1");
    service.emplace(*books, RateLimiter::Rate{1U << 30, 1U << 30});
  }
};
World& world() {
  static World* w = new World();
  return *w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  const auto reply = world().service->handle(in);
  if (reply.size() < 18) __builtin_trap();  // every request gets a framed reply
  // The same bytes as a request of type in[0] signed by the fuzz card's handset now.
  if (size >= 1) {
    const auto id = new_request_id();
    const auto body = sign_request(data[0], id, in.subspan(1), world().card_id, unix_now(), world().handset.private_key);
    if (world().service->handle(encode_request(static_cast<MessageType>(data[0]), id, body)).size() < 18) __builtin_trap();
  }
  if (auto rc = Receipt::decode(in); rc && rc->encode() != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
  if (auto st = RoomState::decode(in); st && st->encode() != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
  (void)BillingCertificate::decode(in);
  (void)decode_relay_reply(in);
  (void)decode_relay_request(in);
  (void)decode_pay_request(in);
  (void)decode_prepay_request(in);
  return 0;
}
