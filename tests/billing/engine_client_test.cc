// Billing as the engine's client: a billing whose engine is down refuses with a clear error and
// loses nothing; what it left half done is finished once when the engine is back.
#include <gtest/gtest.h>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "usher/core/store_database.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"

namespace usher::billing {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
const entitlement::Currency kEur{'E', 'U', 'R'};
// A client that gives up at once on an engine that is down (the tests wait for nothing).
constexpr net::ClientOptions kImpatient{std::chrono::milliseconds(300), 1, 1};

class EngineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    for (std::uint32_t id = 1; id <= 2; ++id) world.add_event(id, 1, kT0 + id * 7200, 3600, 1250, "Match " + std::to_string(id));
    ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, kT0).ok());
    for (const auto& emm : world.store().emm_sections(0)) (void)world.stb(1001).apply_emm(emm);
    auto billing = testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint());
    ASSERT_TRUE(billing.ok()) << billing.error().message;
    world.give_billing_certificate(billing->certificate());  // as the handset relays it with its request
    handset.emplace(world.store(), "alice", 10000);
    ASSERT_TRUE(world.stb(1001).impulse_buy(1, kT0).ok());
  }
  // Billing restarted with `billing serve --engine ENDPOINT`.
  BillingStore billing_at(const std::string& endpoint) {
    return BillingStore::open(world.dir().file("billing"), endpoint, kImpatient).value();
  }
  std::int64_t balance() { return world.store().balance(handset->card_id()).value().minor; }

  testing::BroadcastWorld world;
  std::optional<testing::TestCard> handset;
};

TEST_F(EngineClientTest, BillingKeepsTheEnginesEndpointAndNotItsHome) {
  auto db = open_store_database(world.dir().file("billing"), {BillingStore::kDatabaseName, "billing"}, IfMissing::refuse).value();
  auto st = db.prepare("SELECT engine_endpoint FROM identity");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), world.engine_endpoint());
  EXPECT_ANY_THROW({
    auto home = db.prepare("SELECT engine_home FROM identity");
    home.step();
  });
  // The engine's endpoint given at start wins over the one kept.
  auto billing = billing_at(world.engine_endpoint());
  EXPECT_EQ(billing.engine().endpoint(), world.engine_endpoint());
}

TEST_F(EngineClientTest, ARelayWhileTheEngineIsDownIsRefusedClearlyAndStoresNothing) {
  const auto endpoint = world.engine_endpoint();
  world.stop_engine();
  {
    auto billing = billing_at(endpoint);
    auto refused = billing.relay(world.stb(1001).sealed_unsettled_history().value(), handset->card_id(), kT0);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, Errc::io);
    EXPECT_NE(refused.error().message.find("entitlement engine at " + endpoint + " did not answer"), std::string::npos)
        << refused.error().message;
    auto prepay = billing.prepay(1001, {1000, kEur}, handset->card_id(), kT0);
    ASSERT_FALSE(prepay.ok());
    EXPECT_EQ(prepay.error().code, Errc::io);
    EXPECT_EQ(billing.settled_sequence(1001), 0u);
  }
  // Back: the same relay is quoted, paid once.
  auto billing = billing_at(world.engine_endpoint());
  auto quoted = billing.relay(world.stb(1001).sealed_unsettled_history().value(), handset->card_id(), kT0);
  ASSERT_TRUE(quoted.ok()) << quoted.error().message;
  ASSERT_TRUE(quoted->has_quote);
  EXPECT_EQ(quoted->quote.settlement_id, 1u);  // the refused relay left no quote behind
  auto receipt = billing.pay(quoted->quote.settlement_id, handset->spend(quoted->quote.amount, quoted->quote.payee), kT0);
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  EXPECT_EQ(balance(), 10000 - 1250);
}

// The engine goes down between billing's quote and the handset's payment: the payment is refused
// as not done, kept "charging", and finished by recover() once the engine is back: charged once.
TEST_F(EngineClientTest, APaymentTheEngineCouldNotTakeIsFinishedOnceWhenItIsBack) {
  std::optional<entitlement::RelayReply> quoted;
  {
    auto billing = billing_at(world.engine_endpoint());
    auto q = billing.relay(world.stb(1001).sealed_unsettled_history().value(), handset->card_id(), kT0);
    ASSERT_TRUE(q.ok()) << q.error().message;
    quoted = *q;
  }
  const auto spend = handset->spend(quoted->quote.amount, quoted->quote.payee);
  const auto endpoint = world.engine_endpoint();
  world.stop_engine();
  {
    auto billing = billing_at(endpoint);
    auto refused = billing.pay(quoted->quote.settlement_id, spend, kT0);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, Errc::io) << refused.error().message;
    EXPECT_EQ(billing.recover(kT0), 0u);  // still down: stays for later
    EXPECT_EQ(billing.settled_sequence(1001), 0u);
  }
  EXPECT_EQ(balance(), 10000);
  auto billing = billing_at(world.engine_endpoint());
  EXPECT_EQ(billing.recover(kT0), 1u);
  EXPECT_EQ(balance(), 10000 - 1250);
  EXPECT_EQ(billing.settled_sequence(1001), 1u);
  // The handset's retry gets the receipt; nothing more is charged.
  auto receipt = billing.pay(quoted->quote.settlement_id, spend, kT0);
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  EXPECT_EQ(receipt->amount.minor, 1250);
  ASSERT_TRUE(world.stb(1001).apply_receipt(receipt->encode(), kT0).ok());
  EXPECT_EQ(balance(), 10000 - 1250);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

}  // namespace
}  // namespace usher::billing
