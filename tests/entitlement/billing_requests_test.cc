// Billing's requests to the engine (billing_requests.h) as EngineService answers them: only a
// billing the operator certified, within the time window; a settlement's charge once per request
// id, whatever the signature and time of the retry.
#include "usher/entitlement/billing_requests.h"

#include <gtest/gtest.h>

#include "broadcast_fixture.h"
#include "usher/core/clock.h"
#include "usher/entitlement/request_auth.h"

namespace usher::entitlement {
namespace {

const Currency kEur{'E', 'U', 'R'};

class BillingRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_event(7, 1, 4'000'000'000, 3600, 1250, "Final");
    (void)world.store().certify_billing(1, billing.public_key, crypto::X25519KeyPair::generate().public_key, unix_now());
    card.emplace(world.store(), "alice", 5000);
  }
  std::vector<std::uint8_t> as_billing(MessageType type, const std::vector<std::uint8_t>& body, const Secret<32>& key,
                                       std::uint32_t billing_id = 1, std::uint64_t time = unix_now(), RequestId id = new_request_id()) {
    return encode_request(type, id, sign_billing_request(static_cast<std::uint8_t>(type), id, body, billing_id, time, key));
  }
  Result<std::vector<std::uint8_t>> answer(const std::vector<std::uint8_t>& request) {
    return reply_body(service.handle(request), decode_frame(request)->id);
  }

  testing::BroadcastWorld world;
  TestAcquirer acquirer;
  EngineService service{world.store(), acquirer};
  crypto::Ed25519KeyPair billing = crypto::Ed25519KeyPair::generate();
  std::optional<testing::TestCard> card;
};

TEST_F(BillingRequestsTest, OnlyABillingTheOperatorCertifiedIsAnswered) {
  const auto stranger = crypto::Ed25519KeyPair::generate();
  const auto body = encode_u32(1001);
  const auto id = new_request_id();
  struct Case {
    const char* name;
    std::vector<std::uint8_t> bytes;
    Errc expect;
  };
  const std::vector<Case> cases = {
      {"unsigned", encode_request(MessageType::billing_stb_key, new_request_id(), body), Errc::auth_failed},
      {"a key the operator never certified, as billing 1", as_billing(MessageType::billing_stb_key, body, stranger.private_key), Errc::auth_failed},
      {"billing 2, never certified", as_billing(MessageType::billing_stb_key, body, billing.private_key, 2), Errc::auth_failed},
      {"signed by a handset", encode_request(MessageType::billing_stb_key, id, sign_request(15, id, body, card->card_id(), unix_now(), card->private_key())),
       Errc::auth_failed},
      {"signed an hour ago", as_billing(MessageType::billing_stb_key, body, billing.private_key, 1, unix_now() - 3600), Errc::stale},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = answer(c.bytes);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, c.expect) << r.error().message;
  }
  auto key = answer(as_billing(MessageType::billing_stb_key, body, billing.private_key));
  ASSERT_TRUE(key.ok()) << key.error().message;
  const auto stb = world.store().stb(1001);
  ASSERT_TRUE(stb.has_value());
  EXPECT_EQ(*key, std::vector<std::uint8_t>(stb->ed25519_public.begin(), stb->ed25519_public.end()));
  auto unknown = answer(as_billing(MessageType::billing_stb_key, encode_u32(4242), billing.private_key));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, Errc::not_found);
  // The card's certificate carries its handset's key, signed by the operator.
  auto cert_reply = answer(as_billing(MessageType::billing_card, encode_u64(card->card_id()), billing.private_key));
  ASSERT_TRUE(cert_reply.ok()) << cert_reply.error().message;
  auto cert = PrepaidCardCertificate::decode(std::span<const std::uint8_t>(*cert_reply).subspan(2));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_TRUE(cert->verify(world.store().signing_public()));
  EXPECT_EQ(cert->holder_public, card->keys().public_key);
}

// Billing restarted, or its reply lost: the same settlement charged again under the same request id
// (a new signature and time) gets the first answer, and the card pays once.
TEST_F(BillingRequestsTest, AChargeUnderTheSameRequestIdHappensOnce) {
  const Money price{1250, kEur};
  const auto payee = settlement_payee(1, 1001);
  const auto spend = card->spend(price, payee);
  const auto id = new_request_id();
  const auto body = encode(SettlementCharge{spend, price, payee});
  auto first = answer(as_billing(MessageType::billing_charge, body, billing.private_key, 1, unix_now(), id));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(decode_money(*first)->minor, 5000 - 1250);
  auto retry = answer(as_billing(MessageType::billing_charge, body, billing.private_key, 1, unix_now() - 100, id));
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ(*retry, *first);
  EXPECT_EQ(world.store().balance(card->card_id())->minor, 5000 - 1250);
  // The same spend under another id is a second charge: its nonce is used up.
  auto again = answer(as_billing(MessageType::billing_charge, body, billing.private_key));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(world.store().balance(card->card_id())->minor, 5000 - 1250);
  // Nobody else can have a card charged, even with a genuine spend.
  const auto other_spend = card->spend(price, settlement_payee(2, 1001));
  auto forged = answer(as_billing(MessageType::billing_charge, encode(SettlementCharge{other_spend, price, settlement_payee(2, 1001)}),
                                  crypto::Ed25519KeyPair::generate().private_key));
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.error().code, Errc::auth_failed);
  EXPECT_EQ(world.store().balance(card->card_id())->minor, 5000 - 1250);
  // A refund, once per its own id.
  const auto refund_id = new_request_id();
  const auto refund = encode(SettlementRefund{card->card_id(), price, payee});
  ASSERT_TRUE(answer(as_billing(MessageType::billing_refund, refund, billing.private_key, 1, unix_now(), refund_id)).ok());
  ASSERT_TRUE(answer(as_billing(MessageType::billing_refund, refund, billing.private_key, 1, unix_now() - 1, refund_id)).ok());
  EXPECT_EQ(world.store().balance(card->card_id())->minor, 5000);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

TEST_F(BillingRequestsTest, MalformedBodiesAreRefusedAndChangeNothing) {
  for (auto type : {MessageType::billing_event, MessageType::billing_stb_key, MessageType::billing_card, MessageType::billing_holding,
                    MessageType::billing_impulse_purchases, MessageType::billing_charge, MessageType::billing_refund,
                    MessageType::billing_ticket_payments, MessageType::billing_account_stbs}) {
    SCOPED_TRACE(static_cast<int>(type));
    auto r = answer(as_billing(type, {0xFF, 0xFF, 0xFF}, billing.private_key));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().code, Errc::storage) << r.error().message;
  }
  // A count larger than the body: refused before anything is reserved for it.
  EXPECT_FALSE(decode_impulse_purchases(std::vector<std::uint8_t>{0, 0, 0x03, 0xE9, 0xFF, 0xFF}).ok());
  EXPECT_EQ(world.store().balance(card->card_id())->minor, 5000);
}

// Message 23 was the engine opening relayed histories for billing with EMM-derived keys; billing
// opens them with its own X25519 key now, and the engine answers 23 as a type it does not know,
// even signed by a certified billing.
TEST_F(BillingRequestsTest, TheEngineOpensNoHistoryForBilling) {
  const auto sealed = seal_history({}, 1001, 1, crypto::X25519KeyPair::generate().public_key);
  auto r = answer(as_billing(static_cast<MessageType>(23), sealed, billing.private_key));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("unknown message type 23"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace usher::entitlement
