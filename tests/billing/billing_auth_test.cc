// Billing's requests that name a card (relay, prepay) as an attacker sends them: unsigned, signed
// by another handset, naming another card, replayed, or too many.
#include <gtest/gtest.h>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"
#include "usher/entitlement/request_auth.h"

namespace usher::billing {
namespace {

const entitlement::Currency kEur{'E', 'U', 'R'};
using entitlement::BillingMessage;

class BillingAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_event(1, 1, unix_now() + 7200, 3600, 1250, "Match");
    ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, unix_now()).ok());
    for (const auto& emm : world.store().emm_sections(0)) (void)world.stb(1001).apply_emm(emm);
    ASSERT_TRUE(world.stb(1001).impulse_buy(1, unix_now()).ok());
    auto b = testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint());
    ASSERT_TRUE(b.ok()) << b.error().message;
    billing.emplace(std::move(b.value()));
    world.give_billing_certificate(billing->certificate());  // as the handset relays it with its request
    alice.emplace(world.store(), "alice", 10000);
    mallory.emplace(world.store(), "mallory", 10000);
  }
  std::vector<std::uint8_t> request(BillingMessage type, const std::vector<std::uint8_t>& body, std::uint64_t card, const Secret<32>& key,
                                    std::uint64_t time = unix_now()) {
    const auto id = entitlement::new_request_id();
    const auto t = static_cast<std::uint8_t>(type);
    return entitlement::encode_request(static_cast<entitlement::MessageType>(t), id, entitlement::sign_request(t, id, body, card, time, key));
  }
  static Result<std::vector<std::uint8_t>> answer(BillingService& service, const std::vector<std::uint8_t>& bytes) {
    return entitlement::reply_body(service.handle(bytes), entitlement::decode_frame(bytes)->id);
  }
  std::vector<std::uint8_t> relay_body(std::uint64_t card) {
    return entitlement::encode(entitlement::RelayRequest{world.stb(1001).sealed_unsettled_history().value(), card});
  }
  std::vector<std::uint8_t> prepay_body(std::uint64_t card) { return entitlement::encode(entitlement::PrepayRequest{1001, {1500, kEur}, card}); }

  testing::BroadcastWorld world;
  std::optional<BillingStore> billing;
  std::optional<testing::TestCard> alice, mallory;
};

TEST_F(BillingAuthTest, RelaysAndPrepaymentsNeedTheNamedCardsSignature) {
  BillingService service(*billing);
  const auto a = alice->card_id();
  for (auto type : {BillingMessage::relay, BillingMessage::prepay}) {
    SCOPED_TRACE(static_cast<int>(type));
    const auto body = type == BillingMessage::relay ? relay_body(a) : prepay_body(a);
    const auto unsigned_id = entitlement::new_request_id();
    struct Case {
      const char* name;
      std::vector<std::uint8_t> bytes;
      Errc expect;
    };
    const std::vector<Case> cases = {
        {"no signature", entitlement::encode_request(static_cast<entitlement::MessageType>(type), unsigned_id, body), Errc::auth_failed},
        {"another handset's key", request(type, body, a, mallory->private_key()), Errc::auth_failed},
        {"signed by mallory, naming alice's card", request(type, body, mallory->card_id(), mallory->private_key()), Errc::auth_failed},
        {"signed long ago", request(type, body, a, alice->private_key(), unix_now() - 3600), Errc::stale},
    };
    for (const auto& c : cases) {
      SCOPED_TRACE(c.name);
      auto r = answer(service, c.bytes);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, c.expect) << r.error().message;
    }
    auto genuine = answer(service, request(type, body, a, alice->private_key()));
    ASSERT_TRUE(genuine.ok()) << genuine.error().message;
  }
}

// A replayed prepayment gets the first answer (the same quote) and stores nothing more; past the
// card's limit, billing answers busy and stores nothing.
TEST_F(BillingAuthTest, ReplaysAreAnsweredOnceAndEachCardIsLimited) {
  BillingService service(*billing, {3, 0});
  const auto a = alice->card_id();
  const auto first = request(BillingMessage::prepay, prepay_body(a), a, alice->private_key());
  const auto reply = service.handle(first);
  const auto quote = entitlement::decode_relay_reply(entitlement::reply_body(reply, entitlement::decode_frame(first)->id).value())->quote;
  EXPECT_EQ(service.handle(first), reply);
  EXPECT_EQ(service.handle(first), reply);
  // Two more fresh prepayments fit the limit of three; the fourth does not.
  for (int i = 0; i < 2; ++i) {
    auto r = answer(service, request(BillingMessage::prepay, prepay_body(a), a, alice->private_key()));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_GT(entitlement::decode_relay_reply(*r)->quote.settlement_id, quote.settlement_id);
  }
  auto over = answer(service, request(BillingMessage::prepay, prepay_body(a), a, alice->private_key()));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, Errc::busy);
  // Mallory's card has its own limit.
  EXPECT_TRUE(answer(service, request(BillingMessage::prepay, prepay_body(mallory->card_id()), mallory->card_id(), mallory->private_key())).ok());
}

}  // namespace
}  // namespace usher::billing
