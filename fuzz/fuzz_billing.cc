// Billing's service on arbitrary bytes (what any handset or room STB could send: relays, payments,
// prepayments, room reports), over a real engine store and billing store in a temporary directory;
// plus every billing object decoder (receipt, room state, certificate, relay messages). A decoded
// receipt or room state must encode back to the same bytes (one canonical encoding).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "usher/billing/billing_service.h"
#include "usher/core/log.h"

namespace {
using namespace usher;
using namespace usher::entitlement;

struct World {
  std::optional<EntitlementStore> engine;
  std::optional<billing::BillingStore> books;
  std::optional<billing::BillingService> service;
  World() {
    set_log_level(LogLevel::off);
    char templ[] = "/tmp/usher-fuzz-billing-XXXXXX";
    const std::string dir = mkdtemp(templ);
    engine.emplace(EntitlementStore::create(dir + "/ent", 0x4AFF).value());
    (void)engine->add_service(1, "svc");
    (void)engine->register_stb({1001, crypto::X25519KeyPair::generate().public_key, crypto::Ed25519KeyPair::generate().public_key});
    auto b = billing::BillingStore::create(dir + "/billing", dir + "/ent", 1);
    if (!b) std::abort();
    books.emplace(std::move(b.value()));
    (void)books->set_hotel_credit({1000, {'E', 'U', 'R'}});
    (void)books->add_room("102", 1001, "tcp://127.0.0.1:1");
    service.emplace(*books);
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
  if (auto rc = Receipt::decode(in); rc && rc->encode() != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
  if (auto st = RoomState::decode(in); st && st->encode() != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
  (void)BillingCertificate::decode(in);
  (void)decode_relay_reply(in);
  (void)decode_relay_request(in);
  (void)decode_pay_request(in);
  (void)decode_prepay_request(in);
  return 0;
}
