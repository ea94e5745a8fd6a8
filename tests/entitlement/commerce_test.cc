#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "broadcast_fixture.h"
#include "usher/core/store_database.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
const Currency kEur{'E', 'U', 'R'};

class CommerceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_stb(1002);
    world.add_event(7, 1, kT0, 3600, 1250, "Final");
    card = store().register_handset("alice", handset.public_key, kEur).value();
  }
  EntitlementStore& store() { return world.store(); }
  SpendAuthorization spend(std::uint32_t event, std::uint32_t stb, std::int64_t amount = 1250) {
    SpendAuthorization a;
    a.card_id = card.card_id;
    a.amount = {amount, kEur};
    a.payee = payee_for(event, stb);
    crypto::random_bytes(a.nonce);
    a.sign(handset.private_key);
    return a;
  }
  // The handset's signed authorization for a pass of `days` on service 1 for STB 1001 (200 a day).
  SpendAuthorization pass_spend(std::uint16_t days, std::int64_t amount) {
    SpendAuthorization a;
    a.card_id = card.card_id;
    a.amount = {amount, kEur};
    a.payee = pass_payee_for(1, days, 1001);
    crypto::random_bytes(a.nonce);
    a.sign(handset.private_key);
    return a;
  }
  void expect_unchanged(std::int64_t balance, std::int64_t tickets_emms) {
    EXPECT_EQ(store().balance(card.card_id)->minor, balance);
    EXPECT_EQ(static_cast<std::int64_t>(testing::box_emm_sections(store(), 0).size()), tickets_emms);
    EXPECT_EQ(store().ledger_check().first, 0);
    EXPECT_TRUE(store().balances_match_ledger());
  }

  testing::BroadcastWorld world;
  crypto::Ed25519KeyPair handset = crypto::Ed25519KeyPair::generate();
  CardInfo card;
  TestAcquirer acquirer;
};

TEST_F(CommerceTest, TopUpThroughTheFundingSource) {
  EXPECT_EQ(store().balance(card.card_id)->minor, 0);
  EXPECT_EQ(store().top_up(card.card_id, 2000, "visa-test", acquirer)->minor, 2000);
  EXPECT_EQ(store().top_up(card.card_id, 500, "decline-me", acquirer).error().code, Errc::not_entitled);
  EXPECT_FALSE(store().top_up(card.card_id, 0, "x", acquirer).ok());
  EXPECT_FALSE(store().top_up(card.card_id, 100'001, "x", acquirer).ok());
  EXPECT_EQ(store().balance(card.card_id)->minor, 2000);
  EXPECT_EQ(store().ledger_check().first, 0);
  EXPECT_EQ(store().register_handset("bob", handset.public_key, kEur).error().code, Errc::already_exists);
  // The card's certificate binds it to this handset, signed by the engine as issuer.
  EXPECT_TRUE(card.certificate.verify(store().signing_public()));
  EXPECT_EQ(card.certificate.holder_public, handset.public_key);
  auto decoded = PrepaidCardCertificate::decode(card.certificate.encode());
  ASSERT_TRUE(decoded.ok());
  decoded->card_id += 1;
  EXPECT_FALSE(decoded->verify(store().signing_public()));
  EXPECT_EQ(format_money({-5, kEur}), "-0.05 EUR");
  EXPECT_EQ(format_money({123456, kEur}), "1234.56 EUR");
}

TEST_F(CommerceTest, PurchaseIssuesASignedTicketBoundToTheStbAndAnEmm) {
  ASSERT_TRUE(store().top_up(card.card_id, 2000, "visa-test", acquirer).ok());
  auto p = store().buy_ticket(7, 1001, spend(7, 1001), kT0 - 60);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->balance.minor, 750);
  EXPECT_TRUE(p->ticket.verify(store().signing_public()));
  EXPECT_EQ(p->ticket.stb_id, 1001u);
  EXPECT_EQ(p->ticket.valid_from, kT0);
  EXPECT_EQ(p->ticket.valid_until, kT0 + 3600);
  auto decoded = Ticket::decode(p->ticket.encode());
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->verify(store().signing_public()));
  auto altered = p->ticket;
  altered.stb_id = 1002;  // moving a ticket to another box breaks the signature
  EXPECT_FALSE(altered.verify(store().signing_public()));
  auto bytes = p->ticket.encode();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto t = bytes;
    t[i] ^= 0x01;
    auto d = Ticket::decode(t);
    EXPECT_TRUE(!d.ok() || !d->verify(store().signing_public())) << i;
  }
  EXPECT_EQ(store().ledger_check().first, 0);
  // The EMM the handset received is the one on the carousel.
  const auto carousel = testing::box_emm_sections(store(), kT0);
  ASSERT_EQ(carousel.size(), 1u);
  EXPECT_EQ(carousel[0], p->emm_section);
}

TEST_F(CommerceTest, RefusalsChangeNothing) {
  ASSERT_TRUE(store().top_up(card.card_id, 2000, "visa-test", acquirer).ok());
  auto forged = spend(7, 1001);
  forged.sign(crypto::Ed25519KeyPair::generate().private_key);
  EXPECT_EQ(store().buy_ticket(7, 1001, forged, kT0).error().code, Errc::auth_failed);
  auto altered = spend(7, 1001);
  altered.amount.minor = 1;
  EXPECT_EQ(store().buy_ticket(7, 1001, altered, kT0).error().code, Errc::auth_failed);
  EXPECT_EQ(store().buy_ticket(7, 1001, spend(7, 1001, 999), kT0).error().code, Errc::invalid_argument);
  EXPECT_EQ(store().buy_ticket(7, 1002, spend(7, 1001), kT0).error().code, Errc::invalid_argument);  // payee
  EXPECT_EQ(store().buy_ticket(7, 4242, spend(7, 4242), kT0).error().code, Errc::not_found);
  EXPECT_EQ(store().buy_ticket(8, 1001, spend(8, 1001), kT0).error().code, Errc::not_found);
  EXPECT_EQ(store().buy_ticket(7, 1001, spend(7, 1001), kT0 + 3600).error().code, Errc::not_entitled);  // over
  expect_unchanged(2000, 0);

  const auto once = spend(7, 1001);
  ASSERT_TRUE(store().buy_ticket(7, 1001, once, kT0).ok());
  // The same purchase again: the STB holds the ticket (one sale per entitlement, checked first).
  EXPECT_EQ(store().buy_ticket(7, 1001, once, kT0).error().code, Errc::already_exists);
  // The nonce is used up for any other purchase.
  auto reused = spend(7, 1002);
  reused.nonce = once.nonce;
  reused.sign(handset.private_key);
  EXPECT_EQ(store().buy_ticket(7, 1002, reused, kT0).error().code, Errc::replayed);
  expect_unchanged(750, 1);
  auto poor = store().buy_ticket(7, 1002, spend(7, 1002), kT0);
  ASSERT_FALSE(poor.ok());
  EXPECT_NE(poor.error().message.find("7.50 EUR"), std::string::npos) << poor.error().message;
  expect_unchanged(750, 1);
}

TEST_F(CommerceTest, ParallelPurchasesNeverOverdrawTheCard) {
  ASSERT_TRUE(store().top_up(card.card_id, 1250 * 5 + 100, "visa-test", acquirer).ok());
  constexpr int kClients = 12;
  // Each client buys another event (the same one twice is refused: one sale per entitlement).
  for (int i = 0; i < kClients; ++i) world.add_event(100 + i, 1, kT0 + 7200 * (i + 1), 3600, 1250);
  std::vector<SpendAuthorization> auths;
  for (int i = 0; i < kClients; ++i) auths.push_back(spend(100 + i, 1001));
  std::atomic<int> ok{0}, refused{0};
  std::vector<std::thread> threads;
  const std::string home = world.dir().file("operator");
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto s = EntitlementStore::open(home);  // each client its own connection, as separate processes would
      auto r = s->buy_ticket(100 + i, 1001, auths[i], kT0);
      (r.ok() ? ok : refused)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 5);
  EXPECT_EQ(refused.load(), kClients - 5);
  EXPECT_EQ(store().balance(card.card_id)->minor, 100);
  EXPECT_EQ(store().ledger_check().first, 0);
}

// Several engines serve one PostgreSQL database (issue 10): each runs from a copy of the operator's
// home (the URL and the keys), and a sale stays one sale whichever engines the buyers reach at once.
TEST_F(CommerceTest, TwoEnginesOnOneDatabaseSellEachEntitlementOnce) {
  if (!testing::stores_on_postgresql()) GTEST_SKIP() << "two engines share a store only on a database server";
  const std::string home_a = world.dir().file("operator");
  const std::string home_b = world.dir().file("operator-b");
  std::filesystem::copy(home_a, home_b, std::filesystem::copy_options::recursive);
  ASSERT_TRUE(store().top_up(card.card_id, 1250 * 3, "visa-test", acquirer).ok());
  world.add_event(8, 1, kT0 + 7200, 3600, 1250);

  constexpr int kBuyers = 8;
  std::vector<SpendAuthorization> for_seven;
  for (int i = 0; i < kBuyers; ++i) for_seven.push_back(spend(7, 1001));
  const SpendAuthorization replayed = spend(8, 1001);  // one authorization, sent to every engine
  std::atomic<int> sold{0}, already_held{0}, sold_replayed{0}, replay_refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kBuyers; ++i) {
    threads.emplace_back([&, i] {
      auto engine = EntitlementStore::open(i % 2 == 0 ? home_a : home_b);
      ASSERT_TRUE(engine.ok()) << engine.error().message;
      auto r = engine->buy_ticket(7, 1001, for_seven[static_cast<std::size_t>(i)], kT0);
      if (r.ok()) ++sold;
      else if (r.error().code == Errc::already_exists) ++already_held;
      auto again = engine->buy_ticket(8, 1001, replayed, kT0);
      if (again.ok()) ++sold_replayed;
      else if (again.error().code == Errc::replayed || again.error().code == Errc::already_exists) ++replay_refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sold.load(), 1);
  EXPECT_EQ(already_held.load(), kBuyers - 1);
  EXPECT_EQ(sold_replayed.load(), 1);
  EXPECT_EQ(replay_refused.load(), kBuyers - 1);
  EXPECT_EQ(store().balance(card.card_id)->minor, 1250);
  EXPECT_EQ(store().ledger_check().first, 0);
  EXPECT_TRUE(store().balances_match_ledger());

  // A home whose keys are another operator's is refused, not served with the wrong keys.
  testing::TempDir other;
  ASSERT_TRUE(EntitlementStore::create(other.file("op"), 0x4AFF, testing::store_database_url()).ok());
  std::filesystem::copy_file(other.file("op/operator.key"), home_b + "/operator.key", std::filesystem::copy_options::overwrite_existing);
  auto refused = EntitlementStore::open(home_b);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::storage);
  EXPECT_NE(refused.error().message.find("is not the key of the operator"), std::string::npos) << refused.error().message;
  // And a database that already holds an operator is not given a second one.
  testing::TempDir third;
  auto url = std::filesystem::path(home_a) / "database.url";
  std::ifstream in(url);
  std::string kept;
  std::getline(in, kept);
  auto second = EntitlementStore::create(third.file("op"), 0x4AFF, kept);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("already holds an operator"), std::string::npos) << second.error().message;
  EXPECT_FALSE(std::filesystem::exists(third.file("op/database.url")));
}

TEST_F(CommerceTest, OnceGivesTheSameReplyWithoutASecondEffect) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  const std::vector<std::uint8_t> id(16, 0xAB);
  int runs = 0;
  auto work = [&]() -> Result<std::vector<std::uint8_t>> {
    ++runs;
    auto p = store().buy_ticket(7, 1001, spend(7, 1001), kT0);
    if (!p) return p.error();
    return p->ticket.encode();
  };
  auto first = store().once(id, work);
  auto second = store().once(id, work);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(store().balance(card.card_id)->minor, 3750);
}

TEST_F(CommerceTest, StbWatchesTheEventOnlyInsideItsWindowAndOnlyWithATicket) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  auto p = store().buy_ticket(7, 1001, spend(7, 1001), kT0 - 600);
  ASSERT_TRUE(p.ok());
  auto& owner = world.stb(1001);
  auto& other = world.stb(1002);
  ASSERT_EQ(*owner.apply_emm(p->emm_section), stb::EmmOutcome::applied);
  EXPECT_EQ(*owner.apply_emm(p->emm_section), stb::EmmOutcome::duplicate);  // broadcast and local link both deliver
  EXPECT_EQ(*other.apply_emm(p->emm_section), stb::EmmOutcome::not_addressed);
  ASSERT_EQ(owner.tickets().size(), 1u);

  auto key = store().current_event(1, kT0 + 10).value();
  auto ecm_at = [&](std::uint64_t t) {
    EcmContent e;
    e.service_id = 1;
    e.key_version = 1;
    e.current.event_id = 7;
    e.next.event_id = 7;
    e.current.time_unix = t;
    e.next.time_unix = t;
    e.current.cw = ControlWord::random();
    e.next.cw = ControlWord::random();
    return encode_ecm(e, key.key, key.key);
  };
  EXPECT_TRUE(owner.open_ecm(ecm_at(kT0 + 10)).ok());
  const auto id = owner.tickets().at(0).ticket_id;
  EXPECT_EQ(owner.ticket_status(id), "valid");
  ASSERT_TRUE(owner.mark_watched(7).ok());
  EXPECT_EQ(owner.ticket_status(id), "used");
  EXPECT_TRUE(owner.open_ecm(ecm_at(kT0 + 20)).ok());  // used tickets stay good for their event
  auto before = owner.open_ecm(ecm_at(kT0 - 1));
  ASSERT_FALSE(before.ok());
  EXPECT_NE(before.error().message.find("ticket valid"), std::string::npos);
  EXPECT_FALSE(owner.open_ecm(ecm_at(kT0 + 3600)).ok());
  auto none = other.open_ecm(ecm_at(kT0 + 10));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no ticket"), std::string::npos);
  // After a restart the ticket is still there.
  EXPECT_TRUE(world.reopen(1001).open_ecm(ecm_at(kT0 + 10)).ok());
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST_F(CommerceTest, RevokedTicketIsRefundedAndRefusedByTheStbEvenIfTheRevokeComesFirst) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  auto p = store().buy_ticket(7, 1001, spend(7, 1001), kT0 - 600);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(store().revoke_ticket(p->ticket.ticket_id, /*refund=*/true).ok());
  EXPECT_EQ(store().revoke_ticket(p->ticket.ticket_id, true).error().code, Errc::already_exists);
  EXPECT_EQ(store().revoke_ticket(999, true).error().code, Errc::not_found);
  EXPECT_EQ(store().balance(card.card_id)->minor, 5000);
  EXPECT_EQ(store().ledger_check().first, 0);
  EXPECT_TRUE(store().balances_match_ledger());
  EXPECT_EQ(store().tickets().at(0).status, TicketStatus::revoked);

  // The revoke EMM reaches the STB before the ticket EMM (the carousel order is not guaranteed).
  const auto carousel = testing::box_emm_sections(store(), kT0);
  ASSERT_EQ(carousel.size(), 2u);
  auto& se = world.stb(1001);
  ASSERT_EQ(*se.apply_emm(carousel[1]), stb::EmmOutcome::applied);
  ASSERT_EQ(*se.apply_emm(carousel[0]), stb::EmmOutcome::applied);
  auto key = store().current_event(1, kT0 + 10).value();
  EcmContent e;
  e.service_id = 1;
  e.key_version = 1;
  e.current.event_id = 7;
  e.next.event_id = 7;
  e.current.time_unix = kT0 + 10;
  e.next.time_unix = kT0 + 10;
  e.current.cw = ControlWord::random();
  e.next.cw = ControlWord::random();
  auto denied = se.open_ecm(encode_ecm(e, key.key, key.key));
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.error().message.find("ticket revoked"), std::string::npos) << denied.error().message;
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST_F(CommerceTest, ScheduledDeliveryJoinsTheCarouselAtItsTime) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  EXPECT_EQ(store().buy_ticket(7, 1001, spend(7, 1001), kT0 - 600, kT0 + 3600).error().code, Errc::invalid_argument);
  auto p = store().buy_ticket(7, 1001, spend(7, 1001), kT0 - 600, kT0 - 100);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(testing::box_emm_sections(store(), kT0 - 600).empty());
  EXPECT_TRUE(testing::box_emm_sections(store(), kT0 - 101).empty());
  ASSERT_EQ(testing::box_emm_sections(store(), kT0 - 100).size(), 1u);
  EXPECT_EQ(testing::box_emm_sections(store(), kT0 - 100)[0], p->emm_section);
  // With a repeat time, an EMM leaves the carousel that long after it was first sent.
  ASSERT_TRUE(store().set_emm_repeat_seconds(600).ok());
  EXPECT_EQ(testing::box_emm_sections(store(), kT0 - 100 + 600).size(), 1u);
  EXPECT_TRUE(testing::box_emm_sections(store(), kT0 - 100 + 601).empty());
}

}  // namespace
}  // namespace usher::entitlement

#include "usher/entitlement/request_code.h"

namespace usher::entitlement {
namespace {

TEST_F(CommerceTest, RequestCodeFromTheStbIsPaidOnceBeforeItExpires) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  const auto code = world.stb(1001).request_code(7, kT0 - 60);
  EXPECT_EQ(code.size(), 29u);  // 24 characters in groups of four
  auto read = read_request_code(code);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->stb_id, 1001u);
  EXPECT_EQ(read->event_id, 7);

  auto lower = code;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto p = store().buy_by_code(lower, spend(7, 1001), kT0 - 600);  // typed in lower case: fine
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->ticket.stb_id, 1001u);
  EXPECT_EQ(store().buy_by_code(code, spend(7, 1001), kT0 - 600).error().code, Errc::replayed);
  EXPECT_EQ(store().balance(card.card_id)->minor, 3750);

  const auto late = world.stb(1001).request_code(7, kT0 - 600);
  EXPECT_EQ(store().buy_by_code(late, spend(7, 1001), kT0 - 500).error().code, Errc::stale);
  // A code altered to point at another STB, or typed wrong, does not check out.
  auto code2 = world.stb(1001).request_code(7, kT0);
  code2[20] = code2[20] == 'Z' ? 'Y' : 'Z';  // in the event / expiry / nonce / tag part
  EXPECT_EQ(store().buy_by_code(code2, spend(7, 1001), kT0 - 600).error().code, Errc::auth_failed);
  auto code3 = world.stb(1001).request_code(7, kT0);
  code3[6] = code3[6] == '1' ? '2' : '1';  // the STB id part: no such STB, or a key that does not fit
  EXPECT_FALSE(store().buy_by_code(code3, spend(7, 1001), kT0 - 600).ok());
  EXPECT_EQ(store().buy_by_code("0000-0000", spend(7, 1001), kT0 - 600).error().code, Errc::malformed);
  EXPECT_EQ(store().balance(card.card_id)->minor, 3750);
  EXPECT_TRUE(store().balances_match_ledger());
}

}  // namespace
}  // namespace usher::entitlement

#include "link_handset.h"
#include "usher/stb/local_link.h"
#include "usher/entitlement/protocol.h"

namespace usher::entitlement {
namespace {

TEST_F(CommerceTest, DeliveryAcksCountOnlyWhenSignedByTheTicketsStb) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  auto p = store().buy_ticket(7, 1002, spend(7, 1002), kT0 - 600);
  ASSERT_TRUE(p.ok());
  auto& friend_stb = world.stb(1002);
  stb::LocalLink link(friend_stb, world.stb_home(1002));
  // The buyer's handset could also hand the ticket over the link: same frames the wallet sends.
  const auto id = new_request_id();
  auto reply = link.handle(encode_request(static_cast<MessageType>(LinkMessage::deliver_emm), id, p->emm_section));
  ASSERT_TRUE(reply_body(reply, id).ok());
  const auto acks = friend_stb.pending_acks();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].ticket_id, p->ticket.ticket_id);

  auto forged = acks[0];
  forged.sign(crypto::Ed25519KeyPair::generate().private_key);
  auto other = acks[0];
  other.stb_id = 1001;  // claims another STB
  EXPECT_TRUE(store().record_delivery_acks({forged, other})->empty());
  EXPECT_EQ(store().ticket_state(p->ticket.ticket_id)->delivered, 0u);
  auto confirmed = store().record_delivery_acks(acks);
  ASSERT_EQ(confirmed->size(), 1u);
  EXPECT_NE(store().ticket_state(p->ticket.ticket_id)->delivered, 0u);

  // Only the STB's paired handset may say the acks were relayed (an unpaired caller's forged
  // acks_relayed suppressed a gift's delivery confirmation).
  const auto id2 = new_request_id();
  auto forged_done = link.handle(encode_request(static_cast<MessageType>(LinkMessage::acks_relayed), id2, encode_ids(*confirmed)));
  EXPECT_EQ(reply_body(forged_done, id2).error().code, Errc::auth_failed);
  EXPECT_EQ(friend_stb.pending_acks().size(), 1u);
  testing::LinkHandset owner;
  ASSERT_TRUE(owner.pair(link));
  const auto id4 = new_request_id();
  auto done = link.handle(owner.request(LinkMessage::acks_relayed, encode_ids(*confirmed), id4));
  ASSERT_TRUE(reply_body(done, id4).ok());
  EXPECT_TRUE(friend_stb.pending_acks().empty());
  // Someone else's ticket: STB 1001's link refuses the EMM of 1002's ticket.
  stb::LocalLink other_link(world.stb(1001), world.stb_home(1001));
  const auto id3 = new_request_id();
  auto refused = reply_body(other_link.handle(encode_request(static_cast<MessageType>(LinkMessage::deliver_emm), id3, p->emm_section)), id3);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("another STB"), std::string::npos);
  EXPECT_TRUE(world.stb(1001).tickets().empty());
  // Junk on the link gets an error reply, not a crash.
  EXPECT_FALSE(reply_body(link.handle(std::vector<std::uint8_t>{1, 9}), RequestId{}).ok());
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST_F(CommerceTest, ServicePassIsATicketForAPeriodDeliveredAsAGrant) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  EXPECT_EQ(store().pass_price(1).error().code, Errc::not_found);
  ASSERT_TRUE(store().set_pass_price(1, {200, kEur}).ok());
  auto a = pass_spend(3, 600);
  auto p = store().buy_pass(1, 3, 1001, a, kT0);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->ticket.type, kAssetTypeServicePass);
  EXPECT_TRUE(p->ticket.verify(store().signing_public()));
  EXPECT_EQ(p->ticket.valid_until, kT0 + 3 * 86400);
  EXPECT_EQ(p->balance.minor, 4400);
  // The pass is a grant on the STB for exactly its window.
  ASSERT_EQ(*world.stb(1001).apply_emm(p->emm_section), stb::EmmOutcome::applied);
  const auto ents = world.stb(1001).entitlements();
  ASSERT_EQ(ents.size(), 1u);
  EXPECT_EQ(ents[0].not_before, kT0);
  EXPECT_EQ(ents[0].not_after, kT0 + 3 * 86400);
  // Wrong amount (2 days' price for 3 days) is refused without charge.
  a.amount.minor = 400;
  crypto::random_bytes(a.nonce);
  a.sign(handset.private_key);
  EXPECT_EQ(store().buy_pass(1, 3, 1001, a, kT0).error().code, Errc::invalid_argument);
  EXPECT_EQ(store().balance(card.card_id)->minor, 4400);
  EXPECT_TRUE(store().balances_match_ledger());
}

// A refunded pass: the card gets back what it paid (a pass has no event to take a price from:
// this used to fail with "no event 0"), and the grant the pass gave is withdrawn on the STB.
TEST_F(CommerceTest, ARevokedPassIsRefundedWhatWasPaidAndItsGrantWithdrawn) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  ASSERT_TRUE(store().set_pass_price(1, {200, kEur}).ok());
  auto a = pass_spend(3, 600);
  const auto now = unix_now();
  auto p = store().buy_pass(1, 3, 1001, a, now);
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto& se = world.stb(1001);
  ASSERT_EQ(*se.apply_emm(p->emm_section), stb::EmmOutcome::applied);
  ASSERT_EQ(se.entitlements().size(), 1u);
  // The day price changes after the sale: the refund is what was paid, not today's price.
  ASSERT_TRUE(store().set_pass_price(1, {350, kEur}).ok());
  auto revoked = store().revoke_ticket(p->ticket.ticket_id, /*refund=*/true);
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  EXPECT_EQ(store().balance(card.card_id)->minor, 5000);
  EXPECT_EQ(store().ledger_check().first, 0);
  EXPECT_TRUE(store().balances_match_ledger());
  EXPECT_EQ(store().revoke_ticket(p->ticket.ticket_id, true).error().code, Errc::already_exists);
  EXPECT_EQ(store().balance(card.card_id)->minor, 5000);  // refunded once
  ASSERT_EQ(store().grants().size(), 1u);
  EXPECT_TRUE(store().grants()[0].revoked);
  for (const auto& section : testing::box_emm_sections(store(), now)) (void)se.apply_emm(section);
  const auto after = se.entitlements();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].service_id, 1u);
  EXPECT_TRUE(after[0].revoked) << "the refunded pass still grants service 1";
}

// A pass over a subscription would have replaced the subscription's window (one grant per box and
// service): it is refused, nothing charged, and the subscription stays as it was.
TEST_F(CommerceTest, APassOverASubscriptionIsRefusedAndTheSubscriptionKept) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  ASSERT_TRUE(store().set_pass_price(1, {200, kEur}).ok());
  const auto now = unix_now();
  ASSERT_TRUE(store().grant(1001, 1, now - 10, now + 30 * 86400).ok());
  auto a = pass_spend(3, 600);
  auto p = store().buy_pass(1, 3, 1001, a, now);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, Errc::already_exists);
  EXPECT_NE(p.error().message.find("nothing charged"), std::string::npos) << p.error().message;
  EXPECT_EQ(store().balance(card.card_id)->minor, 5000);
  ASSERT_EQ(store().grants().size(), 1u);
  EXPECT_EQ(store().grants()[0].not_after, now + 30 * 86400);
  EXPECT_TRUE(store().tickets().empty());
}

// Ticket states and ledger kinds are enums mapped to their stored text in one place: text read back
// that is none of them (a damaged or foreign entitlement.db) is an error, never a default.
TEST_F(CommerceTest, StoredStatesAndKindsTheEngineDoesNotKnowAreErrors) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  auto bought = store().buy_ticket(7, 1001, spend(7, 1001), kT0);
  ASSERT_TRUE(bought.ok()) << bought.error().message;
  const auto id = bought->ticket.ticket_id;
  ASSERT_EQ(store().ticket_payments(1001).size(), 1u);
  EXPECT_EQ(store().ticket_payments(1001).at(0).kind, LedgerEntryKind::ppv);
  EXPECT_EQ(store().ticket_state(id)->status, TicketStatus::valid);
  {
    auto db = open_store_database(world.dir().file("operator"), {"entitlement.db", "engine"}, IfMissing::refuse).value();
    db.exec("UPDATE journal SET kind = 'gift-wrap' WHERE reference = 'ticket:" + std::to_string(id) + "'");
  }
  EXPECT_THROW((void)store().ticket_payments(1001), std::runtime_error);
  {
    auto db = open_store_database(world.dir().file("operator"), {"entitlement.db", "engine"}, IfMissing::refuse).value();
    db.exec("UPDATE tickets SET status = 'misplaced' WHERE ticket_id = " + std::to_string(id));
  }
  try {
    (void)store().tickets();
    ADD_FAILURE() << "an unknown ticket state was read as if known";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'misplaced'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)store().ticket_state(id), std::runtime_error);
  EXPECT_STREQ(to_string(LedgerEntryKind::top_up), "top-up");
  EXPECT_STREQ(to_string(LedgerEntryKind::settlement_refund), "settlement-refund");
  EXPECT_STREQ(to_string(TicketStatus::revoked), "revoked");
}

// A store written before the rule may hold two valid tickets for one event: it still opens (the
// unique index waits until they are revoked), and the purchase check refuses a third.
TEST_F(CommerceTest, AStoreWithDuplicateTicketsFromBeforeStillOpensAndSellsNoMore) {
  ASSERT_TRUE(store().top_up(card.card_id, 5000, "visa-test", acquirer).ok());
  ASSERT_TRUE(store().buy_ticket(7, 1001, spend(7, 1001), kT0).ok());
  {
    auto db = open_store_database(world.dir().file("operator"), {"entitlement.db", "engine"}, IfMissing::refuse).value();
    db.exec("DROP INDEX one_valid_ticket_per_event");
    db.exec("INSERT INTO tickets (event_id, stb_id, card_id, status) SELECT event_id, stb_id, card_id, status FROM tickets");
  }
  auto reopened = EntitlementStore::open(world.dir().file("operator"));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  SpendAuthorization third;
  third.card_id = card.card_id;
  third.amount = {1250, kEur};
  third.payee = payee_for(7, 1001);
  crypto::random_bytes(third.nonce);
  third.sign(handset.private_key);
  auto refused = reopened->buy_ticket(7, 1001, third, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::already_exists);
  EXPECT_NE(refused.error().message.find("already holds ticket 1 for event 7 (Final)"), std::string::npos) << refused.error().message;
  EXPECT_EQ(reopened->balance(card.card_id)->minor, 5000 - 1250);
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST(EventSchedule, EventsEndingAfterAreThoseOfTheCatalogueForOneService) {
  // What the headend asks every second: the same events, in the same order, as filtering the whole
  // catalogue, without reading it all.
  testing::BroadcastWorld world;
  world.add_service(1);
  world.add_service(2);
  constexpr std::uint64_t t0 = 1'900'000'000;
  world.add_event(1, 1, t0 + 7200, 600, 100);
  world.add_event(2, 1, t0, 3600, 100);
  world.add_event(3, 2, t0 + 100, 600, 100);
  world.add_event(4, 1, t0 + 3600, 60, 100);
  world.add_event(5, 1, t0 + 3660, 600, 100);
  auto& store = world.store();
  for (std::uint64_t time : {t0 - 1, t0 + 3599, t0 + 3600, t0 + 3700, t0 + 7800}) {
    for (std::uint16_t service = 1; service <= 3; ++service) {
      for (std::size_t count : {std::size_t{1}, std::size_t{2}, std::size_t{10}}) {
        std::vector<std::uint32_t> expected, got;
        for (const auto& e : store.events()) {
          if (e.service_id == service && e.end() > time && expected.size() < count) expected.push_back(e.event_id);
        }
        for (const auto& e : store.events_ending_after(service, time, count)) got.push_back(e.event_id);
        EXPECT_EQ(got, expected) << "time " << time - t0 << " service " << service << " count " << count;
      }
    }
  }
  EXPECT_EQ(store.events_ending_after(1, t0 + 3599, 2).front().title, "Event");
}

}  // namespace
}  // namespace usher::entitlement
