// F4 settlement and [0269] prepayment through BillingStore, with the real engine store, secure
// elements and SQLite files (the network is left to the end-to-end tests).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "usher/core/store_database.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/messages.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
const entitlement::Currency kEur{'E', 'U', 'R'};

// The operator's private keys (X25519, Ed25519), wherever its store keeps them: in entitlement.db,
// or in operator.key beside a store on PostgreSQL.
std::vector<std::vector<std::uint8_t>> operator_private_keys(testing::BroadcastWorld& world) {
  const auto home = world.dir().file("operator");
  if (testing::stores_on_postgresql()) {
    auto keys = read_key_file(home + "/" + entitlement::EntitlementStore::kOperatorKeyName, {"x25519_private", "ed25519_private"}).value();
    return {keys["x25519_private"], keys["ed25519_private"]};
  }
  auto db = sql::Database::open(home + "/" + entitlement::EntitlementStore::kDatabaseName).value();
  auto x = db.prepare("SELECT x25519_private FROM operator WHERE id = 1");
  auto ed = db.prepare("SELECT ed25519_private FROM signing WHERE id = 1");
  if (!x.step() || !ed.step()) throw std::runtime_error("no operator keys in the engine's store");
  return {x.column_blob(0), ed.column_blob(0)};
}

class SettlementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_stb(1002);
    for (std::uint32_t id = 1; id <= 4; ++id) world.add_event(id, 1, kT0 + id * 7200, 3600, 1250, "Match " + std::to_string(id));
    ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, kT0).ok());
    ASSERT_TRUE(world.store().set_credit(1002, {3000, kEur}, kT0).ok());
    deliver_emms();
    auto b = testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint());
    ASSERT_TRUE(b.ok()) << b.error().message;
    billing.emplace(std::move(b.value()));
    world.give_billing_certificate(billing->certificate());  // as the handset relays it with its request
    handset.emplace(world.store(), "alice", 10000);
    card = handset->card_id();
  }
  void deliver_emms() {
    for (const auto& emm : world.store().emm_sections(0)) {
      (void)world.stb(1001).apply_emm(emm);
      (void)world.stb(1002).apply_emm(emm);
    }
  }
  entitlement::SpendAuthorization spend_for(const entitlement::Quote& q) { return handset->spend(q.amount, q.payee); }
  std::int64_t balance() { return world.store().balance(card).value().minor; }

  testing::BroadcastWorld world;
  std::optional<BillingStore> billing;
  std::optional<testing::TestCard> handset;
  std::uint64_t card = 0;
};

// As boxes with a modem callback have: purchases on credit not relayed within the period the
// operator set by EMM stop the next impulse buy, until a relay settles them.
TEST_F(SettlementTest, ACollectionDeadlineStopsImpulseBuysUntilTheHistoryIsRelayed) {
  ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, kT0, 3600).ok());
  deliver_emms();
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  EXPECT_EQ(se.settlement_status().collect_within, 3600u);
  EXPECT_EQ(se.settlement_status().collect_by, kT0 + 3600);
  ASSERT_TRUE(se.impulse_buy(2, kT0 + 3599).ok());  // within the period: the credit line decides
  auto late = se.impulse_buy(3, kT0 + 3600);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::not_entitled);
  EXPECT_NE(late.error().message.find("due to be relayed by"), std::string::npos) << late.error().message;
  EXPECT_EQ(se.history().size(), 2u);  // the refusal recorded nothing
  // The STB of another household (no deadline) is not concerned.
  ASSERT_TRUE(world.stb(1002).impulse_buy(1, kT0).ok());
  ASSERT_TRUE(world.stb(1002).impulse_buy(2, kT0 + 7200).ok());

  // The handset relays, pays, brings the receipt back: buying works again.
  auto reply = billing->relay(se.sealed_unsettled_history().value(), card, kT0 + 3600);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  auto receipt = billing->pay(reply->quote.settlement_id, spend_for(reply->quote), kT0 + 3600);
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  ASSERT_TRUE(se.apply_receipt(receipt->encode(), kT0 + 3600).ok());
  EXPECT_EQ(se.settlement_status().collect_by, 0u);
  ASSERT_TRUE(se.impulse_buy(3, kT0 + 3600).ok());

  // The operator lifts the deadline (0): a late relay no longer stops buying.
  ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, kT0, 0).ok());
  deliver_emms();
  EXPECT_TRUE(se.impulse_buy(4, kT0 + 30000).ok());
  // A deadline past ten years is refused at the operator, before any EMM.
  EXPECT_EQ(world.store().set_credit(1001, {3000, kEur}, kT0, 400ULL * 86400 * 365).error().code, Errc::invalid_argument);
}

// stb.db is on the owner's disk: purchases marked settled there by hand free no credit (each row's
// settled flag is tagged), are still relayed, and billing's receipt settles them for real.
TEST_F(SettlementTest, PurchasesMarkedSettledByHandFreeNoCreditAndARelaySettlesThem) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  ASSERT_TRUE(se.impulse_buy(2, kT0).ok());
  {
    auto db = sql::Database::open(world.stb_home(1001) + "/stb.db", false);
    ASSERT_TRUE(db.ok());
    db->exec("UPDATE history SET settled = 1");
  }
  auto refused = se.impulse_buy(3, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::auth_failed);
  EXPECT_NE(refused.error().message.find("do not verify"), std::string::npos) << refused.error().message;
  EXPECT_EQ(se.settlement_status().unsettled_records, 2u);
  EXPECT_EQ(se.settlement_status().unsettled.minor, 2500);

  auto reply = billing->relay(se.sealed_unsettled_history().value(), card, kT0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->quote.amount.minor, 2500);
  auto receipt = billing->pay(reply->quote.settlement_id, spend_for(reply->quote), kT0);
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  auto applied = se.apply_receipt(receipt->encode(), kT0);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied->records_settled, 2u);
  EXPECT_EQ(balance(), 10000 - 2500);
  ASSERT_TRUE(se.impulse_buy(3, kT0).ok());
}

// The box's clock set back does not move the deadline further than the operator's own EMMs allow:
// their issue time is sealed by the operator.
TEST_F(SettlementTest, TheCollectionDeadlineIsNotEvadedBySettingTheClockBack) {
  const auto operator_now = unix_now();
  ASSERT_TRUE(world.store().set_credit(1001, {3000, kEur}, operator_now, 3600).ok());
  deliver_emms();
  auto& se = world.stb(1001);
  const auto box_clock = operator_now - 7200;  // two hours behind
  ASSERT_TRUE(se.impulse_buy(1, box_clock).ok());
  auto late = se.impulse_buy(2, box_clock + 10);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("due to be relayed by"), std::string::npos) << late.error().message;
}

TEST_F(SettlementTest, RelayPaysOnceAndTheReceiptFreesTheCredit) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  ASSERT_TRUE(se.impulse_buy(2, kT0).ok());
  EXPECT_EQ(se.impulse_buy(3, kT0).error().code, Errc::not_entitled);  // 25.00 of 30.00 used

  const auto sealed = se.sealed_unsettled_history().value();
  auto reply = billing->relay(sealed, card, kT0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_TRUE(reply->has_quote);
  EXPECT_TRUE(reply->receipts.empty());
  EXPECT_EQ(reply->quote.amount.minor, 2500);
  EXPECT_EQ(reply->quote.first_sequence, 1u);
  EXPECT_EQ(reply->quote.last_sequence, 2u);
  // Relaying the same history again before paying gives the same quote.
  EXPECT_EQ(billing->relay(sealed, card, kT0)->quote.settlement_id, reply->quote.settlement_id);

  const auto spend = spend_for(reply->quote);
  auto receipt = billing->pay(reply->quote.settlement_id, spend, kT0);
  ASSERT_TRUE(receipt.ok()) << receipt.error().message;
  EXPECT_EQ(balance(), 10000 - 2500);
  EXPECT_TRUE(receipt->verify(world.store().signing_public()));
  // A retry (lost reply), even with a fresh authorization, charges nothing more: the same receipt.
  auto again = billing->pay(reply->quote.settlement_id, spend_for(reply->quote), kT0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->encode(), receipt->encode());
  EXPECT_EQ(balance(), 10000 - 2500);

  // The STB takes it: both records settled, credit free again; the same receipt twice is refused.
  auto applied = se.apply_receipt(receipt->encode(), kT0);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied->records_settled, 2u);
  EXPECT_EQ(se.apply_receipt(receipt->encode(), kT0).error().code, Errc::replayed);
  EXPECT_EQ(se.settlement_status().unsettled_records, 0u);
  EXPECT_TRUE(se.impulse_buy(3, kT0).ok());

  // Relaying the old (already settled) history again: the receipt comes back, nothing is charged.
  auto replay = billing->relay(sealed, card, kT0);
  ASSERT_TRUE(replay.ok()) << replay.error().message;
  EXPECT_FALSE(replay->has_quote);
  ASSERT_EQ(replay->receipts.size(), 1u);
  EXPECT_EQ(replay->receipts[0], receipt->encode());
  EXPECT_EQ(balance(), 10000 - 2500);
  EXPECT_EQ(billing->settled_minor(1001), 2500);
  EXPECT_TRUE(world.store().balances_match_ledger());
  EXPECT_EQ(world.store().ledger_check().first, 0);
}

TEST_F(SettlementTest, ALostReceiptIsHandedBackWithTheNextQuote) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  auto q1 = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value().quote;
  auto r1 = billing->pay(q1.settlement_id, spend_for(q1), kT0).value();
  // The handset died before giving r1 to the STB; the viewer buys again.
  ASSERT_TRUE(se.impulse_buy(2, kT0).ok());
  auto reply = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value();
  ASSERT_EQ(reply.receipts.size(), 1u);
  EXPECT_EQ(reply.receipts[0], r1.encode());
  ASSERT_TRUE(reply.has_quote);
  EXPECT_EQ(reply.quote.first_sequence, 2u);
  EXPECT_EQ(reply.quote.amount.minor, 1250);
  auto r2 = billing->pay(reply.quote.settlement_id, spend_for(reply.quote), kT0).value();
  ASSERT_TRUE(se.apply_receipt(reply.receipts[0], kT0).ok());
  ASSERT_TRUE(se.apply_receipt(r2.encode(), kT0).ok());
  EXPECT_EQ(se.settlement_status().unsettled_records, 0u);
  EXPECT_EQ(balance(), 10000 - 2500);
}

TEST_F(SettlementTest, BadHistoriesAreRefusedAndChangeNothing) {
  auto& se = world.stb(1001);
  for (std::uint32_t e = 1; e <= 2; ++e) ASSERT_TRUE(se.impulse_buy(e, kT0).ok());
  const auto records = se.history();
  const auto before = balance();

  auto tampered = se.sealed_unsettled_history().value();
  tampered[tampered.size() / 2] ^= 1;
  EXPECT_EQ(billing->relay(tampered, card, kT0).error().code, Errc::auth_failed);

  // A gap (record 2 without 1) and a reordering.
  EXPECT_EQ(billing->relay(se.seal_for_billing({records.begin() + 1, records.end()}).value(), card, kT0).error().code, Errc::stale);
  std::vector<entitlement::HistoryRecord> reordered{records[1], records[0]};
  EXPECT_EQ(billing->relay(se.seal_for_billing(reordered).value(), card, kT0).error().code, Errc::stale);

  // A record altered and re-signed by someone else is caught by the signature.
  auto forged = records;
  forged[1].price.minor = 1;
  forged[1].sign(crypto::Ed25519KeyPair::generate().private_key);
  EXPECT_EQ(billing->relay(se.seal_for_billing(forged).value(), card, kT0).error().code, Errc::auth_failed);

  // An STB the operator does not know.
  entitlement::HistoryRecord stray = records[0];
  stray.stb_id = 4242;
  const auto unknown = entitlement::seal_history(std::vector{stray}, 4242, 1, billing->certificate().billing_x25519);
  auto refused = billing->relay(unknown, card, kT0);
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_NE(refused.error().message.find("unknown STB 4242"), std::string::npos);

  EXPECT_EQ(balance(), before);
  EXPECT_EQ(billing->settled_sequence(1001), 0u);
}

TEST_F(SettlementTest, ForgedAlteredAndMisdirectedReceiptsAreRefused) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  auto q = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value().quote;
  auto rc = billing->pay(q.settlement_id, spend_for(q), kT0).value();

  auto altered = rc.encode();
  altered[40] ^= 1;  // inside the last record's hash
  EXPECT_EQ(se.apply_receipt(altered, kT0).error().code, Errc::auth_failed);
  // Signed by a billing key the operator never certified.
  auto rogue = rc;
  auto rogue_key = crypto::Ed25519KeyPair::generate();
  rogue.certificate.billing_public = rogue_key.public_key;
  rogue.sign(rogue_key.private_key);
  EXPECT_EQ(se.apply_receipt(rogue.encode(), kT0).error().code, Errc::auth_failed);
  // For another STB.
  EXPECT_EQ(world.stb(1002).apply_receipt(rc.encode(), kT0).error().code, Errc::not_entitled);
  EXPECT_EQ(se.settlement_status().unsettled_records, 1u);
  ASSERT_TRUE(se.apply_receipt(rc.encode(), kT0).ok());
  EXPECT_EQ(se.apply_receipt(rc.encode(), kT0).error().code, Errc::replayed);
}

TEST_F(SettlementTest, RefusedPaymentsChargeNothingAndLeaveTheQuoteOpen) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  auto q = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value().quote;
  auto wrong = spend_for(q);
  wrong.amount.minor = 1;
  wrong.sign(handset->keys().private_key);
  EXPECT_EQ(billing->pay(q.settlement_id, wrong, kT0).error().code, Errc::invalid_argument);
  auto other = spend_for(q);
  other.sign(crypto::Ed25519KeyPair::generate().private_key);
  EXPECT_EQ(billing->pay(q.settlement_id, other, kT0).error().code, Errc::auth_failed);
  EXPECT_EQ(balance(), 10000);
  EXPECT_TRUE(billing->pay(q.settlement_id, spend_for(q), kT0).ok());
  EXPECT_EQ(balance(), 10000 - 1250);
}

TEST_F(SettlementTest, PrepaidCreditIsSpentFirstAndSettledWithoutACharge) {
  auto& se = world.stb(1002);
  auto quote = billing->prepay(1002, {2500, kEur}, card, kT0).value().quote;
  EXPECT_EQ(quote.kind, entitlement::SettlementKind::prepayment);
  auto voucher = billing->pay(quote.settlement_id, spend_for(quote), kT0).value();
  EXPECT_EQ(balance(), 10000 - 2500);
  ASSERT_TRUE(se.apply_receipt(voucher.encode(), kT0).ok());
  EXPECT_EQ(se.apply_receipt(voucher.encode(), kT0).error().code, Errc::replayed);  // loaded once
  EXPECT_EQ(se.settlement_status().prepaid->minor, 2500);

  auto r1 = se.impulse_buy(1, kT0).value();
  auto r2 = se.impulse_buy(2, kT0).value();
  auto r3 = se.impulse_buy(3, kT0).value();  // prepaid credit used up: on the credit line
  EXPECT_EQ(r1.payment, entitlement::kPaymentPrepaid);
  EXPECT_EQ(r2.payment, entitlement::kPaymentPrepaid);
  EXPECT_EQ(r3.payment, entitlement::kPaymentCredit);
  EXPECT_EQ(se.settlement_status().prepaid->minor, 0);

  auto reply = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value();
  ASSERT_TRUE(reply.has_quote);
  EXPECT_EQ(reply.quote.amount.minor, 1250);  // only the record on credit is charged
  auto rc = billing->pay(reply.quote.settlement_id, spend_for(reply.quote), kT0).value();
  ASSERT_TRUE(se.apply_receipt(rc.encode(), kT0).ok());
  EXPECT_EQ(balance(), 10000 - 2500 - 1250);

  const auto statement = billing->stb_statement(1002).value();
  ASSERT_EQ(statement.totals.size(), 1u);
  EXPECT_EQ(statement.totals[0].minor, 2500 + 1250);  // prepaid lines shown, counted once
  EXPECT_NE(statement.csv().find(",prepaid,Match 1,"), std::string::npos) << statement.csv();
}

TEST_F(SettlementTest, StatementsShowCashPurchasesPassesAndRefundsFromTheLedger) {
  ASSERT_TRUE(world.store().set_stb_account(1001, "alice").ok());
  ASSERT_TRUE(world.store().set_pass_price(1, {300, kEur}).ok());
  auto ticket = world.store().buy_ticket(4, 1001, handset->spend({1250, kEur}, entitlement::payee_for(4, 1001)), kT0);
  ASSERT_TRUE(ticket.ok()) << ticket.error().message;
  auto pass = world.store().buy_pass(1, 2, 1001, handset->spend({600, kEur}, entitlement::pass_payee_for(1, 2, 1001)), kT0);
  ASSERT_TRUE(pass.ok()) << pass.error().message;
  ASSERT_TRUE(world.store().revoke_ticket(ticket->ticket.ticket_id, true).ok());
  ASSERT_TRUE(world.stb(1001).impulse_buy(1, kT0).ok());
  auto q = billing->relay(world.stb(1001).sealed_unsettled_history().value(), card, kT0).value().quote;
  ASSERT_TRUE(billing->pay(q.settlement_id, spend_for(q), kT0).ok());

  const auto statement = billing->account_statement("alice").value();
  ASSERT_EQ(statement.lines.size(), 4u) << statement.text();
  ASSERT_EQ(statement.totals.size(), 1u);
  EXPECT_EQ(statement.totals[0].minor, 1250 + 600 - 1250 + 1250);  // ticket, pass, its refund, deferred
  EXPECT_EQ(statement.totals[0].minor, 10000 - balance());         // exactly what left the card
  const auto csv = statement.csv();
  EXPECT_NE(csv.find(",cash,Match 4,4,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",cash,2-day pass,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",refund,Match 4,4,0,0,-12.50,EUR"), std::string::npos) << csv;
}

TEST_F(SettlementTest, AHistoryAllPrepaidSettlesAtOnce) {
  auto& se = world.stb(1002);
  auto quote = billing->prepay(1002, {1250, kEur}, card, kT0).value().quote;
  auto voucher = billing->pay(quote.settlement_id, spend_for(quote), kT0).value();
  ASSERT_TRUE(se.apply_receipt(voucher.encode(), kT0).ok());
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  auto reply = billing->relay(se.sealed_unsettled_history().value(), card, kT0).value();
  EXPECT_FALSE(reply.has_quote);
  ASSERT_EQ(reply.receipts.size(), 1u);
  ASSERT_TRUE(se.apply_receipt(reply.receipts[0], kT0).ok());
  EXPECT_EQ(balance(), 10000 - 1250);
}

// Requests that arrive together are answered as one group sharing its disk syncs, each as it would
// have been alone: a payment sent twice in the group is charged once, a refused one charges nothing.
TEST_F(SettlementTest, AGroupOfRequestsIsAnsweredAsEachWouldBeAlone) {
  using entitlement::BillingMessage;
  BillingService service(*billing);
  testing::TestCard poor(world.store(), "bob", 1000);  // less than one event
  ASSERT_TRUE(world.stb(1001).impulse_buy(1, kT0).ok());
  ASSERT_TRUE(world.stb(1002).impulse_buy(1, kT0).ok());
  ASSERT_TRUE(world.stb(1002).impulse_buy(2, kT0).ok());
  struct Sent {
    entitlement::RequestId id;
    std::vector<std::uint8_t> bytes;
  };
  auto frame = [](BillingMessage type, const std::vector<std::uint8_t>& body) {
    Sent s{entitlement::new_request_id(), {}};
    s.bytes = entitlement::encode_request(static_cast<entitlement::MessageType>(type), s.id, body);
    return s;
  };
  // Relays and prepayments are signed by the handset of the card they name.
  auto signed_frame = [](BillingMessage type, const std::vector<std::uint8_t>& body, const entitlement::RequestSigner& signer) {
    Sent s{entitlement::new_request_id(), {}};
    const auto t = static_cast<std::uint8_t>(type);
    s.bytes = entitlement::encode_request(static_cast<entitlement::MessageType>(t), s.id,
                                          entitlement::sign_request(t, s.id, body, signer.card_id, usher::unix_now(), *signer.handset_private));
    return s;
  };
  auto group = [&](const std::vector<Sent>& sent) {
    std::vector<std::span<const std::uint8_t>> requests;
    for (const auto& s : sent) requests.emplace_back(s.bytes);
    auto replies = service.handle_batch(requests);
    std::vector<Result<std::vector<std::uint8_t>>> out;
    for (std::size_t i = 0; i < sent.size(); ++i) out.push_back(entitlement::reply_body(replies.at(i), sent[i].id));
    return out;
  };

  // Two relays and a malformed request in one group.
  auto relays = group({signed_frame(BillingMessage::relay, entitlement::encode(entitlement::RelayRequest{world.stb(1001).sealed_unsettled_history().value(), card}),
                                    handset->signer()),
                       signed_frame(BillingMessage::relay, {1, 2, 3}, handset->signer()),
                       signed_frame(BillingMessage::relay, entitlement::encode(entitlement::RelayRequest{world.stb(1002).sealed_unsettled_history().value(), poor.card_id()}),
                                    poor.signer())});
  ASSERT_TRUE(relays[0].ok()) << relays[0].error().message;
  EXPECT_EQ(relays[1].error().code, Errc::malformed);
  ASSERT_TRUE(relays[2].ok()) << relays[2].error().message;
  const auto q1 = entitlement::decode_relay_reply(*relays[0]).value().quote;
  const auto q2 = entitlement::decode_relay_reply(*relays[2]).value().quote;
  EXPECT_EQ(q1.amount.minor, 1250);
  EXPECT_EQ(q2.amount.minor, 2500);

  // Alice pays STB 1001's quote, and the same request comes twice (a client's retry); Bob's card
  // cannot pay STB 1002's.
  const auto pay1 = frame(BillingMessage::pay, entitlement::encode(entitlement::PayRequest{q1.settlement_id, spend_for(q1)}));
  auto pays = group({pay1, frame(BillingMessage::pay, entitlement::encode(entitlement::PayRequest{q2.settlement_id, poor.spend(q2.amount, q2.payee)})),
                     pay1});
  ASSERT_TRUE(pays[0].ok()) << pays[0].error().message;
  EXPECT_EQ(pays[1].error().code, Errc::not_entitled);
  ASSERT_TRUE(pays[2].ok()) << pays[2].error().message;
  EXPECT_EQ(*pays[0], *pays[2]);
  EXPECT_EQ(balance(), 10000 - 1250);
  EXPECT_EQ(world.store().balance(poor.card_id())->minor, 1000);
  ASSERT_TRUE(world.stb(1001).apply_receipt(*pays[0], kT0).ok());
  EXPECT_EQ(world.stb(1001).settlement_status().unsettled_records, 0u);

  // The refused quote is open again: alice pays it (a gift), alone this time.
  auto gift = group({frame(BillingMessage::pay, entitlement::encode(entitlement::PayRequest{q2.settlement_id, spend_for(q2)}))});
  ASSERT_TRUE(gift[0].ok()) << gift[0].error().message;
  EXPECT_EQ(balance(), 10000 - 1250 - 2500);
  EXPECT_EQ(billing->settled_minor(1001), 1250);
  EXPECT_EQ(billing->settled_minor(1002), 2500);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

}  // namespace
}  // namespace usher::billing

namespace usher::billing {
namespace {

// Found by fuzz_billing: a room state whose clear byte was neither 0 nor 1 decoded, and encoded back
// differently. Each signed object has exactly one encoding.
TEST(SignedObjects, RoundTripAndRefuseNonCanonicalBytes) {
  auto key = crypto::Ed25519KeyPair::generate();
  entitlement::RoomState state;
  state.stb_id = 1003;
  state.counter = 7;
  state.stay_id = 2;
  state.credit_limit = {5000, kEur};
  state.billing_endpoint = "tcp://127.0.0.1:7720";
  state.sign(key.private_key);
  auto bytes = state.encode();
  auto back = entitlement::RoomState::decode(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->encode(), bytes);
  // version 1, stb 4, counter 8, stay 8, money 11: the clear byte is at offset 32.
  bytes[32] = 10;
  EXPECT_EQ(entitlement::RoomState::decode(bytes).error().code, Errc::malformed);

  entitlement::Receipt rc;
  rc.receipt_id = 9;
  rc.stb_id = 1001;
  rc.first_sequence = 3;
  rc.last_sequence = 5;
  rc.amount = {3750, kEur};
  rc.sign(key.private_key);
  const auto rc_bytes = rc.encode();
  EXPECT_EQ(entitlement::Receipt::decode(rc_bytes)->encode(), rc_bytes);
  rc.first_sequence = 6;  // first after last
  EXPECT_EQ(entitlement::Receipt::decode(rc.encode()).error().code, Errc::malformed);
}

// Anyone who fetched a sealed history could relay it with another card id: that used to delete the
// owner's quote each time. A quote is its card's until it expires; other relays leave it alone.
// Billing's certificate, version 2 (with billing's X25519 key) and version 1 (signing key only, as
// billings certified before it had one hold): both decode to what was signed, and still verify;
// only version 2 gives a key to seal for. Another version is refused.
TEST(SignedObjects, BillingCertificatesOfBothVersionsDecodeOnlyVersionTwoSeals) {
  const auto issuer = crypto::Ed25519KeyPair::generate();
  entitlement::BillingCertificate v2;
  v2.billing_id = 7;
  v2.billing_public = crypto::Ed25519KeyPair::generate().public_key;
  v2.billing_x25519 = crypto::X25519KeyPair::generate().public_key;
  v2.issued = kT0;
  v2.sign(issuer.private_key);
  const auto v2_bytes = v2.encode();
  ASSERT_EQ(v2_bytes.size(), 1u + 4 + 32 + 32 + 8 + 64);
  auto back = entitlement::BillingCertificate::decode(v2_bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->encode(), v2_bytes);
  EXPECT_TRUE(back->verify(issuer.public_key));
  EXPECT_EQ(back->sealing_key().value(), v2.billing_x25519);

  auto v1 = v2;
  v1.version = entitlement::BillingCertificate::kVersionSigningOnly;
  v1.billing_x25519 = {};
  v1.sign(issuer.private_key);
  const auto v1_bytes = v1.encode();
  ASSERT_EQ(v1_bytes.size(), 1u + 4 + 32 + 8 + 64);
  auto old = entitlement::BillingCertificate::decode(v1_bytes);
  ASSERT_TRUE(old.ok()) << old.error().message;
  EXPECT_EQ(old->encode(), v1_bytes);
  EXPECT_TRUE(old->verify(issuer.public_key));
  ASSERT_FALSE(old->sealing_key().ok());
  EXPECT_EQ(old->sealing_key().error().code, Errc::not_entitled);
  EXPECT_NE(old->sealing_key().error().message.find("version 1"), std::string::npos);

  // A version 2 body under version byte 1 (or the reverse) is the wrong length; version 3 is unknown.
  auto relabelled = v2_bytes;
  relabelled[0] = 1;
  EXPECT_EQ(entitlement::BillingCertificate::decode(relabelled).error().code, Errc::malformed);
  relabelled[0] = 3;
  EXPECT_EQ(entitlement::BillingCertificate::decode(relabelled).error().code, Errc::malformed);
}

TEST_F(SettlementTest, SomeoneElsesRelayLeavesTheOwnersQuoteAlone) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  const auto sealed = se.sealed_unsettled_history().value();
  const auto mine = billing->relay(sealed, card, kT0).value().quote;
  testing::TestCard mallory(world.store(), "mallory", 10000);
  entitlement::Quote theirs;
  for (int i = 0; i < 3; ++i) {
    auto r = billing->relay(sealed, mallory.card_id(), kT0 + i);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_NE(r->quote.settlement_id, mine.settlement_id);
    theirs = r->quote;
  }
  // The owner's relay finds its own quote, and paying it works.
  EXPECT_EQ(billing->relay(sealed, card, kT0 + 5).value().quote.settlement_id, mine.settlement_id);
  auto rc = billing->pay(mine.settlement_id, spend_for(mine), kT0 + 6);
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  EXPECT_EQ(balance(), 10000 - 1250);
  // The other card's quote for the same records can no longer be paid: nothing charged twice.
  EXPECT_EQ(billing->pay(theirs.settlement_id, mallory.spend(theirs.amount, theirs.payee), kT0 + 7).error().code, Errc::stale);
  EXPECT_EQ(world.store().balance(mallory.card_id())->minor, 10000);
  EXPECT_EQ(billing->settled_minor(1001), 1250);
}

TEST_F(SettlementTest, QuotesExpire) {
  EXPECT_EQ(billing->quote_ttl(), BillingStore::kDefaultQuoteTtlSeconds);
  EXPECT_EQ(billing->set_quote_ttl(0).error().code, Errc::invalid_argument);
  ASSERT_TRUE(billing->set_quote_ttl(60).ok());
  EXPECT_EQ(billing->quote_ttl(), 60u);
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  const auto sealed = se.sealed_unsettled_history().value();
  const auto old = billing->relay(sealed, card, kT0).value().quote;
  auto late = billing->pay(old.settlement_id, spend_for(old), kT0 + 61);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::stale);
  EXPECT_NE(late.error().message.find("expired"), std::string::npos) << late.error().message;
  EXPECT_EQ(balance(), 10000);
  // Relaying again gives a new quote (the expired one is dropped), which can be paid.
  const auto fresh = billing->relay(sealed, card, kT0 + 61).value().quote;
  EXPECT_NE(fresh.settlement_id, old.settlement_id);
  EXPECT_EQ(billing->pay(old.settlement_id, spend_for(old), kT0 + 61).error().code, Errc::not_found);
  ASSERT_TRUE(billing->pay(fresh.settlement_id, spend_for(fresh), kT0 + 62).ok());
  EXPECT_EQ(balance(), 10000 - 1250);
  // Prepayment quotes expire too, and the next prepayment drops the expired ones.
  const auto prepay = billing->prepay(1001, {500, kEur}, card, kT0).value().quote;
  EXPECT_EQ(billing->pay(prepay.settlement_id, spend_for(prepay), kT0 + 61).error().code, Errc::stale);
  const auto next = billing->prepay(1001, {500, kEur}, card, kT0 + 61).value().quote;
  EXPECT_EQ(billing->pay(prepay.settlement_id, spend_for(prepay), kT0 + 61).error().code, Errc::not_found);
  ASSERT_TRUE(billing->pay(next.settlement_id, spend_for(next), kT0 + 62).ok());
  EXPECT_EQ(balance(), 10000 - 1250 - 500);
}

}  // namespace
}  // namespace usher::billing

namespace usher::billing {
namespace {

// States and kinds are enums in code, mapped to their stored values in one place: a value read back
// that is none of them (a damaged or foreign billing.db) is an error, never taken for a default.
TEST_F(SettlementTest, StoredStatesAndKindsBillingDoesNotKnowAreErrors) {
  auto db = open_store_database(world.dir().file("billing"), {"billing.db", "billing"}, IfMissing::refuse).value();
  auto ins = db.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, card_id, "
                        "state, created) VALUES (9, 1001, 1, 1, ?, 1250, 'EUR', 1, 'quoted', " + std::to_string(kT0) + ") RETURNING settlement_id");
  ins.bind(1, std::vector<std::uint8_t>(32, 0));
  ASSERT_TRUE(ins.step());
  const auto id = static_cast<std::uint64_t>(ins.column_int(0));
  ins.run();
  auto started = billing->start_payment(id, handset->spend({1250, kEur}, "billing"), kT0);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, Errc::storage);
  EXPECT_NE(started.error().message.find("unknown kind 9"), std::string::npos) << started.error().message;

  db.exec("INSERT INTO pms_postings (stay_id, room, guest_id, amount_minor, currency, description, time, stb_id, sequence, state) "
          "VALUES (1, '101', 'g1', 500, 'EUR', 'Match', 0, 1001, 1, 'lost')");
  try {
    (void)billing->pms_postings(false);
    ADD_FAILURE() << "an unknown posting state was read as if known";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'lost'"), std::string::npos) << e.what();
  }
  db.exec("INSERT INTO pms_link VALUES (1, '127.0.0.1:5010', 'sideways', 0, '', 0, 0, 0)");
  try {
    (void)billing->pms_link();
    ADD_FAILURE() << "an unknown link condition was read as if known";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'sideways'"), std::string::npos) << e.what();
  }
}

// Billing's own X25519 key (issue 10): a history sealed for billing 1 is opened by billing 1 only.
// Billing 2, certified by the same operator, cannot open it, not even with the header relabelled
// for it; nor can the operator's EMM key for the STB, which opened every history before.
TEST_F(SettlementTest, AHistorySealedForOneBillingIsOpenedByNoOtherBillingNorByTheOperatorsKey) {
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  const auto sealed = se.sealed_unsettled_history().value();
  const auto header = entitlement::sealed_history_header(sealed).value();
  EXPECT_EQ(header.stb_id, 1001u);
  EXPECT_EQ(header.billing_id, 1u);

  auto other = testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing-2"), 2, world.engine_endpoint());
  ASSERT_TRUE(other.ok()) << other.error().message;
  auto refused = other->relay(sealed, card, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_NE(refused.error().message.find("sealed for billing 1"), std::string::npos) << refused.error().message;
  auto relabelled = sealed;
  relabelled[1 + 4 + 3] = 2;  // the billing id's last byte: billing 2's key does not open it
  EXPECT_EQ(other->relay(relabelled, card, kT0).error().code, Errc::auth_failed);

  // The operator's key: the STB's EMM key, derived as the engine does, and the key the old seal
  // took from it, open nothing.
  const auto operator_private = Key256(std::span<const std::uint8_t, 32>(operator_private_keys(world).at(0).data(), 32));
  const auto emm_key = entitlement::derive_emm_key(operator_private, se.public_identity().x25519_public, 0x4AFF, 1001).value();
  static constexpr std::uint8_t kOldSalt[] = {'u', 's', 'h', 'e', 'r', '-', 'h', 'i', 's', 't', 'o', 'r', 'y', '-', 'v', '1'};
  const std::span<const std::uint8_t> bytes(sealed);
  constexpr std::size_t kHeader = 1 + 4 + 4 + 32 + crypto::kGcmNonceSize;
  const std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(sealed.data() + kHeader - crypto::kGcmNonceSize, crypto::kGcmNonceSize);
  for (const auto& key : {crypto::hkdf_sha256(emm_key.bytes(), kOldSalt, {}), emm_key.clone()}) {
    EXPECT_EQ(crypto::aead_open(key, nonce, bytes.first(kHeader), bytes.subspan(kHeader)).error().code, Errc::auth_failed);
  }

  // The billing it is sealed for opens it.
  auto reply = billing->relay(sealed, card, kT0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->has_quote);
}

// Billing needs none of the operator's keys to open a history: with them wiped from the engine's
// store, a relay still opens and checks (the old code derived the STB's EMM key from the
// operator's X25519 key here); and no file in billing's home holds them.
TEST_F(SettlementTest, BillingOpensHistoriesWithoutTheOperatorsKeysAndItsHomeHoldsNone) {
  const auto operator_secrets = operator_private_keys(world);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(world.dir().file("billing"))) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& secret : operator_secrets) {
      EXPECT_EQ(content.find(std::string(secret.begin(), secret.end())), std::string::npos) << entry.path();
    }
  }

  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  if (!testing::stores_on_postgresql()) {  // on PostgreSQL the database never held them (operator.key)
    auto db = sql::Database::open(world.dir().file("operator") + "/" + entitlement::EntitlementStore::kDatabaseName).value();
    db.exec("UPDATE operator SET x25519_private = zeroblob(32)");
    db.exec("UPDATE signing SET ed25519_private = zeroblob(32)");
  }
  billing.reset();
  auto reopened = BillingStore::open(world.dir().file("billing"));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  auto reply = reopened->relay(se.sealed_unsettled_history().value(), card, kT0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->has_quote);
  EXPECT_EQ(reply->quote.amount.minor, 1250);
}

// Certification without the operator's home (`usher billing init` writes billing.pub, `usher
// entitlement billing add` certifies it, `usher billing certify --certificate` installs it): only a
// certificate the operator signed for this billing's own keys is installed.
TEST_F(SettlementTest, ACertificateMadeFromBillingsPublicFileIsInstalledOnlyForItsOwnKeysAndOperator) {
  const auto pub = entitlement::BillingPublicFile::read(world.dir().file("billing") + "/" + BillingStore::kPublicName);
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(pub->billing_id, 1u);
  EXPECT_EQ(pub->ed25519_public, billing->certificate().billing_public);
  EXPECT_EQ(pub->x25519_public, billing->certificate().billing_x25519);
  const auto before = billing->certificate().encode();

  auto others = world.store().certify_billing(1, crypto::Ed25519KeyPair::generate().public_key, pub->x25519_public, kT0 + 5);
  EXPECT_EQ(billing->install_certificate(others).error().code, Errc::invalid_argument);
  auto forged = world.store().certify_billing(1, pub->ed25519_public, pub->x25519_public, kT0 + 5);
  forged.sign(crypto::Ed25519KeyPair::generate().private_key);
  EXPECT_EQ(billing->install_certificate(forged).error().code, Errc::auth_failed);
  EXPECT_EQ(billing->certificate().encode(), before);

  const auto path = world.dir().file("billing-1.cert");
  ASSERT_TRUE(entitlement::write_billing_certificate(world.store().certify_billing(pub->billing_id, pub->ed25519_public, pub->x25519_public, kT0 + 5), path).ok());
  auto cert = entitlement::read_billing_certificate(path);
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  ASSERT_TRUE(billing->install_certificate(*cert).ok());
  EXPECT_EQ(billing->certificate().issued, kT0 + 5);
  auto reopened = BillingStore::open(world.dir().file("billing"));
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(reopened->certificate().issued, kT0 + 5);
}

// `usher billing init` alone: billing has its keys and billing.pub, but no certificate of the
// operator's yet. It opens no history (STBs have nothing to seal for) and says how to be
// certified, also after a restart; once the certificate is installed it opens what STBs seal.
TEST_F(SettlementTest, ABillingNotYetCertifiedOpensNoHistoryAndSaysHowToBeCertified) {
  const auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
  const auto home = world.dir().file("billing-3");
  {
    auto fresh = BillingStore::create(home, 3, op, world.engine_endpoint(), testing::store_database_url());
    ASSERT_TRUE(fresh.ok()) << fresh.error().message;
    EXPECT_FALSE(fresh->certified());
  }
  auto store = BillingStore::open(home);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_FALSE(store->certified());
  const auto not_yet = store->check_certified();
  ASSERT_FALSE(not_yet.ok());
  EXPECT_NE(not_yet.error().message.find("usher billing certify --certificate"), std::string::npos) << not_yet.error().message;
  const auto pub = store->public_file();
  const auto sealed = entitlement::seal_history({}, 1001, 3, pub.x25519_public);
  auto refused = store->relay(sealed, card, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_NE(refused.error().message.find("usher entitlement billing add"), std::string::npos) << refused.error().message;
  // Nothing is sold or signed under no certificate: the STB would refuse the receipt or room state.
  const auto before = balance();
  EXPECT_EQ(store->prepay(1001, {500, kEur}, card, kT0).error().code, Errc::not_entitled);
  EXPECT_EQ(store->check_in("101", "g1", "Guest", kT0).error().code, Errc::not_entitled);
  EXPECT_EQ(balance(), before);

  ASSERT_TRUE(store->install_certificate(world.store().certify_billing(3, pub.ed25519_public, pub.x25519_public, kT0)).ok());
  EXPECT_TRUE(store->certified());
  EXPECT_TRUE(store->check_certified().ok());
  auto opened = store->relay(sealed, card, kT0);
  EXPECT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_TRUE(BillingStore::open(home)->certified());
}

// A history in the old format (version 1, sealed under a key from the STB's EMM key) is refused
// with a message that says so.
TEST_F(SettlementTest, AHistoryInTheOldFormatIsRefusedClearly) {
  auto sealed = world.stb(1001).sealed_unsettled_history().value();
  sealed[0] = 1;
  auto refused = billing->relay(sealed, card, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::malformed);
  EXPECT_NE(refused.error().message.find("version 1"), std::string::npos) << refused.error().message;
}

TEST(BillingEnums, StoredNamesAreTheOnesTheSchemaKnows) {
  EXPECT_STREQ(to_string(SettlementState::quoted), "quoted");
  EXPECT_STREQ(to_string(SettlementState::charging), "charging");
  EXPECT_STREQ(to_string(SettlementState::paid), "paid");
  EXPECT_STREQ(to_string(PmsPostingState::pending), "pending");
  EXPECT_STREQ(to_string(PmsPostingState::ok), "ok");
  EXPECT_STREQ(to_string(PmsPostingState::refused), "refused");
}

}  // namespace
}  // namespace usher::billing
