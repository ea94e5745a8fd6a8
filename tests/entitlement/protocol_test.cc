#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "broadcast_fixture.h"
#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/request_counters.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher::entitlement {
namespace {

const Currency kEur{'E', 'U', 'R'};
constexpr std::uint64_t kFuture = 4'000'000'000;

class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_event(7, 1, kFuture, 3600, 1250, "Final");
  }
  std::vector<std::uint8_t> request(MessageType type, const std::vector<std::uint8_t>& body, RequestId id = new_request_id()) {
    return encode_request(type, id, body);
  }
  // A request signed by the handset holding `card` (request_auth.h).
  std::vector<std::uint8_t> signed_request(MessageType type, const std::vector<std::uint8_t>& body, std::uint64_t card,
                                           const Secret<32>& key, std::uint64_t time = unix_now(), RequestId id = new_request_id()) {
    return encode_request(type, id, sign_request(static_cast<std::uint8_t>(type), id, body, card, time, key));
  }
  std::uint64_t register_card(const crypto::Ed25519KeyPair& keys, const std::string& account = "alice") {
    auto reply = service.handle(signed_request(MessageType::register_handset, encode(RegisterHandsetRequest{keys.public_key, account, kEur}), 0,
                                               keys.private_key));
    auto frame = decode_frame(reply).value();
    return decode_register_handset_reply(frame.body).value().card_id;
  }
  std::uint64_t register_card() { return register_card(handset); }
  BuyTicketRequest buy(std::uint64_t card, std::uint32_t event = 7) {
    BuyTicketRequest q{event, 1001, {}};
    q.spend.card_id = card;
    q.spend.amount = {1250, kEur};
    q.spend.payee = payee_for(event, 1001);
    crypto::random_bytes(q.spend.nonce);
    q.spend.sign(handset.private_key);
    return q;
  }

  testing::BroadcastWorld world;
  TestAcquirer acquirer;
  EngineService service{world.store(), acquirer};
  crypto::Ed25519KeyPair handset = crypto::Ed25519KeyPair::generate();
};

TEST_F(ProtocolTest, BadRequestsGetClearErrorReplies) {
  const auto id = new_request_id();
  struct Case {
    std::vector<std::uint8_t> bytes;
    const char* expect;
  };
  std::vector<Case> cases = {
      {{}, "shorter than its header"},
      {{2, 1, 0}, "shorter"},
      {encode_request(MessageType::list_events, id, {}), ""},
      {[&] { auto b = encode_request(MessageType::list_events, id, {}); b[0] = 9; return b; }(), "unsupported protocol version 9"},
      {encode_request(static_cast<MessageType>(99), id, {}), "unknown message type 99"},
      {encode_request(MessageType::buy_ticket, id, std::vector<std::uint8_t>{1, 2, 3}), "malformed"},
      {encode_request(MessageType::top_up, id, encode(TopUpRequest{424242, 100, "x"})), "must be signed by the card's handset"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.expect);
    auto body = reply_body(service.handle(c.bytes), c.bytes.size() >= 18 ? id : RequestId{});
    if (std::string(c.expect).empty()) {
      EXPECT_TRUE(body.ok());
    } else {
      ASSERT_FALSE(body.ok());
      EXPECT_NE(body.error().message.find(c.expect), std::string::npos) << body.error().message;
    }
  }
}

TEST_F(ProtocolTest, RetriedPurchaseGetsTheSameReplyAndChargesOnce) {
  const auto card = register_card();
  ASSERT_TRUE(world.store().top_up(card, 5000, "visa", acquirer).ok());
  const auto bytes = request(MessageType::buy_ticket, encode(buy(card)));
  const auto first = service.handle(bytes);
  const auto again = service.handle(bytes);  // the client lost the reply and sent the same bytes
  EXPECT_EQ(first, again);
  EXPECT_EQ(world.store().balance(card)->minor, 3750);
  // The same authorization under a new request id is a replayed nonce (once the ticket it bought is
  // revoked: while the STB holds it, the purchase is refused as held first).
  world.add_event(8, 1, kFuture + 7200, 3600, 1250, "Rematch");
  auto nonce = buy(card, 8);
  ASSERT_TRUE(reply_body(service.handle(request(MessageType::buy_ticket, encode(nonce))), RequestId{}).error().code != Errc::replayed);
  const auto held_id = new_request_id();
  EXPECT_EQ(reply_body(service.handle(request(MessageType::buy_ticket, encode(nonce), held_id)), held_id).error().code,
            Errc::already_exists);
  ASSERT_TRUE(world.store().revoke_ticket(world.store().tickets().back().ticket_id, false).ok());
  const auto id = new_request_id();
  auto replay = reply_body(service.handle(request(MessageType::buy_ticket, encode(nonce), id)), id);
  ASSERT_FALSE(replay.ok());
  EXPECT_EQ(replay.error().code, Errc::replayed);
}

TEST_F(ProtocolTest, ClientRetriesAfterALostReplyWithoutASecondCharge) {
  const auto card = register_card();
  ASSERT_TRUE(world.store().top_up(card, 5000, "visa", acquirer).ok());
  std::atomic<int> calls{0};
  net::ReplyServer server("tcp://127.0.0.1:*", [&](std::span<const std::uint8_t> req) {
    // The first reply comes too late: the client has given up on it and resent the request.
    if (calls++ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(400));
    return service.handle(req);
  });
  std::atomic<bool> stop{false};
  std::thread t([&] { server.run(stop); });
  wallet::EngineClient client(server.endpoint(), {std::chrono::milliseconds(200), 4, 1});
  auto reply = client.buy_ticket(buy(card));
  stop = true;
  t.join();
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_GE(calls.load(), 2);
  EXPECT_EQ(reply->balance.minor, 3750);
  EXPECT_EQ(world.store().balance(card)->minor, 3750);
  EXPECT_EQ(world.store().ledger_check().first, 0);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

TEST_F(ProtocolTest, NoServiceMeansAClearErrorNotAHang) {
  wallet::EngineClient client("tcp://127.0.0.1:1", {std::chrono::milliseconds(50), 2, 1});
  auto r = client.events();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_NE(r.error().message.find("is the service running"), std::string::npos);
}

TEST_F(ProtocolTest, ManyParallelClientsNeverOverdrawACard) {
  const auto card = register_card();
  ASSERT_TRUE(world.store().top_up(card, 1250 * 10, "visa", acquirer).ok());
  net::ReplyServer server("tcp://127.0.0.1:*", [&](std::span<const std::uint8_t> req) { return service.handle(req); });
  std::atomic<bool> stop{false};
  std::thread t([&] { server.run(stop); });
  constexpr int kClients = 32;
  // Each client buys another event (the same one twice is refused: one sale per entitlement).
  for (int i = 0; i < kClients; ++i) world.add_event(100 + i, 1, kFuture + 7200 * (i + 1), 3600, 1250);
  std::atomic<int> ok{0}, poor{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      wallet::EngineClient c(server.endpoint());
      auto r = c.buy_ticket(buy(card, 100 + i));
      if (r.ok()) ++ok;
      if (!r.ok() && r.error().code == Errc::not_entitled) ++poor;
    });
  }
  for (auto& c : clients) c.join();
  stop = true;
  t.join();
  EXPECT_EQ(ok.load(), 10);
  EXPECT_EQ(poor.load(), kClients - 10);
  EXPECT_EQ(world.store().balance(card)->minor, 0);
  EXPECT_EQ(world.store().ledger_check().first, 0);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

std::vector<std::uint8_t> card_body(std::uint64_t card) {
  ByteWriter w;
  w.u64(card);
  return w.take();
}

// Every way a request about a card can be forged is refused, and none changes the card.
TEST_F(ProtocolTest, SignedRequestsRefuseOtherKeysNoSignatureTamperingAndOldTimes) {
  const auto card = register_card();
  ASSERT_TRUE(world.store().top_up(card, 1000, "visa", acquirer).ok());
  const auto mallory = crypto::Ed25519KeyPair::generate();
  const auto ledger = world.store().ledger_check();
  const auto top_up = encode(TopUpRequest{card, 500, "visa"});
  auto tampered = signed_request(MessageType::top_up, top_up, card, handset.private_key);
  tampered[2 + 16 + 15] ^= 0x01;  // the amount's last byte, after signing
  struct Case {
    const char* name;
    std::vector<std::uint8_t> bytes;
    Errc expect;
  };
  const std::vector<Case> cases = {
      {"no signature", request(MessageType::top_up, top_up), Errc::auth_failed},
      {"no signature (balance)", request(MessageType::balance, card_body(card)), Errc::auth_failed},
      {"another handset's key", signed_request(MessageType::top_up, top_up, card, mallory.private_key), Errc::auth_failed},
      {"another handset's key (balance)", signed_request(MessageType::balance, card_body(card), card, mallory.private_key), Errc::auth_failed},
      {"tampered body", tampered, Errc::auth_failed},
      {"signed long ago", signed_request(MessageType::top_up, top_up, card, handset.private_key, unix_now() - 3600), Errc::stale},
      {"signed in the future", signed_request(MessageType::top_up, top_up, card, handset.private_key, unix_now() + 3600), Errc::stale},
      {"unknown card", signed_request(MessageType::balance, card_body(card + 100), card + 100, handset.private_key), Errc::auth_failed},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto frame = decode_frame(c.bytes).value();
    auto reply = reply_body(service.handle(c.bytes), frame.id);
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code, c.expect) << reply.error().message;
  }
  EXPECT_EQ(world.store().balance(card)->minor, 1000);
  EXPECT_EQ(world.store().ledger_check(), ledger);
  // The genuine request goes through.
  auto genuine = signed_request(MessageType::top_up, top_up, card, handset.private_key);
  auto frame = decode_frame(genuine).value();
  ASSERT_TRUE(reply_body(service.handle(genuine), frame.id).ok());
  EXPECT_EQ(world.store().balance(card)->minor, 1500);
}

// A replayed signed request gets the answer the first one got and changes nothing: a top-up is
// credited once, and a balance read played again later tells nothing new.
TEST_F(ProtocolTest, ReplayedSignedRequestsChangeAndRevealNothing) {
  const auto card = register_card();
  const auto top_up = signed_request(MessageType::top_up, encode(TopUpRequest{card, 700, "visa"}), card, handset.private_key);
  const auto read = signed_request(MessageType::balance, card_body(card), card, handset.private_key);
  const auto first_top_up = service.handle(top_up);
  const auto first_read = service.handle(read);
  EXPECT_EQ(decode_card(decode_frame(first_read)->body)->second.minor, 700);
  ASSERT_TRUE(world.store().top_up(card, 300, "visa", acquirer).ok());
  EXPECT_EQ(service.handle(top_up), first_top_up);
  EXPECT_EQ(service.handle(read), first_read);  // still 7.00, not the 10.00 the card now holds
  EXPECT_EQ(world.store().balance(card)->minor, 1000);
  EXPECT_TRUE(world.store().balances_match_ledger());
}

// Card ids are sequential: a handset that walks them learns no other card's balance and tops up
// no other card, whether it signs as itself or claims the other card.
TEST_F(ProtocolTest, AHandsetCannotReadOrTopUpAnotherCard) {
  const auto bob = crypto::Ed25519KeyPair::generate();
  const auto bob_card = register_card(bob, "bob");
  ASSERT_TRUE(world.store().top_up(bob_card, 4200, "visa", acquirer).ok());
  const auto card = register_card();
  for (std::uint64_t other = 1; other <= card + 2; ++other) {
    if (other == card) continue;
    SCOPED_TRACE(other);
    for (const auto& bytes : {signed_request(MessageType::balance, card_body(other), card, handset.private_key),
                              signed_request(MessageType::balance, card_body(other), other, handset.private_key),
                              signed_request(MessageType::top_up, encode(TopUpRequest{other, 100, "visa"}), card, handset.private_key),
                              signed_request(MessageType::top_up, encode(TopUpRequest{other, 100, "visa"}), other, handset.private_key)}) {
      const auto reply = service.handle(bytes);
      auto body = reply_body(reply, decode_frame(bytes)->id);
      ASSERT_FALSE(body.ok());
      EXPECT_TRUE(body.error().code == Errc::auth_failed || body.error().code == Errc::not_entitled) << body.error().message;
      EXPECT_EQ(std::string(reply.begin(), reply.end()).find("42.00"), std::string::npos);
    }
  }
  EXPECT_EQ(world.store().balance(bob_card)->minor, 4200);
  EXPECT_EQ(world.store().balance(card)->minor, 0);
}

// A ticket's delivery state is its buyer's to know; the boxes of an account are told only to a
// registered handset.
TEST_F(ProtocolTest, TicketStatusAndAccountStbsAnswerOnlySignedHandsets) {
  const auto card = register_card();
  ASSERT_TRUE(world.store().top_up(card, 5000, "visa", acquirer).ok());
  auto bought = service.handle(request(MessageType::buy_ticket, encode(buy(card))));
  const auto ticket = Ticket::decode(decode_buy_ticket_reply(decode_frame(bought)->body)->ticket).value();
  const auto mallory = crypto::Ed25519KeyPair::generate();
  const auto mallory_card = register_card(mallory, "mallory");
  auto status_as = [&](std::uint64_t as_card, const Secret<32>& key) {
    const auto bytes = signed_request(MessageType::ticket_status, encode_ids({ticket.ticket_id}), as_card, key);
    auto body = reply_body(service.handle(bytes), decode_frame(bytes)->id).value();
    return body.at(2);  // the one ticket's status
  };
  EXPECT_EQ(status_as(card, handset.private_key), 0);                // valid: the buyer's
  EXPECT_EQ(status_as(mallory_card, mallory.private_key), 2);        // unknown to anyone else
  auto unsigned_status = reply_body(service.handle(request(MessageType::ticket_status, encode_ids({ticket.ticket_id}))), RequestId{});
  EXPECT_FALSE(unsigned_status.ok());
  ByteWriter account;
  account.u16(5);
  account.bytes(std::vector<std::uint8_t>{'a', 'l', 'i', 'c', 'e'});
  const auto unsigned_stbs = request(MessageType::account_stbs, account.data());
  auto refused = reply_body(service.handle(unsigned_stbs), decode_frame(unsigned_stbs)->id);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::auth_failed);
}

// register_handset is signed by the key it registers (nobody registers someone else's key), and
// new handsets share one bucket: past it, registrations are refused and store nothing.
TEST_F(ProtocolTest, RegistrationsAreSelfSignedAndLimited) {
  EngineService limited(world.store(), acquirer, EngineLimits{{64, 8}, {5, 0}});
  const auto victim = crypto::Ed25519KeyPair::generate();
  const auto body = encode(RegisterHandsetRequest{victim.public_key, "mallory", kEur});
  for (const auto& bytes : {request(MessageType::register_handset, body), signed_request(MessageType::register_handset, body, 0, handset.private_key)}) {
    auto r = reply_body(limited.handle(bytes), decode_frame(bytes)->id);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::auth_failed);
  }
  int stored = 0, busy = 0;
  for (int i = 0; i < 20; ++i) {
    const auto keys = crypto::Ed25519KeyPair::generate();
    const auto bytes = signed_request(MessageType::register_handset, encode(RegisterHandsetRequest{keys.public_key, "flood", kEur}), 0,
                                      keys.private_key);
    auto r = reply_body(limited.handle(bytes), decode_frame(bytes)->id);
    if (r.ok()) ++stored;
    else if (r.error().code == Errc::busy) ++busy;
  }
  EXPECT_EQ(stored, 5);
  EXPECT_EQ(busy, 15);
  EXPECT_FALSE(world.store().card(6).ok());  // no row for a refused registration
}

// Each card's signed requests and purchases come from its own bucket: one busy card does not slow
// another, and a card's bucket is taken only by requests its handset signed.
TEST_F(ProtocolTest, EachCardHasItsOwnLimit) {
  EngineService limited(world.store(), acquirer, EngineLimits{{3, 0}, {64, 8}});
  const auto card = register_card();
  const auto bob = crypto::Ed25519KeyPair::generate();
  const auto bob_card = register_card(bob, "bob");
  // Forgeries naming the card take nothing from its bucket.
  const auto mallory = crypto::Ed25519KeyPair::generate();
  for (int i = 0; i < 10; ++i) (void)limited.handle(signed_request(MessageType::balance, card_body(card), card, mallory.private_key));
  auto read = [&](std::uint64_t c, const Secret<32>& key) {
    const auto bytes = signed_request(MessageType::balance, card_body(c), c, key);
    return reply_body(limited.handle(bytes), decode_frame(bytes)->id);
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(read(card, handset.private_key).ok());
  auto over = read(card, handset.private_key);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, Errc::busy);
  EXPECT_TRUE(read(bob_card, bob.private_key).ok());
}

TEST(Money, ParseAmount) {
  EXPECT_EQ(*parse_amount("12.50"), 1250);
  EXPECT_EQ(*parse_amount("12.5"), 1250);
  EXPECT_EQ(*parse_amount("7"), 700);
  for (const char* bad : {"", "-1", "1.234", "1.", "abc", ".5", "1e3"}) EXPECT_FALSE(parse_amount(bad).ok()) << bad;
  EXPECT_FALSE(parse_currency("eur").ok());
  EXPECT_FALSE(parse_currency("EURO").ok());
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST(RequestCounters, CountsByKindAndOutcomeWithMalformedApart) {
  RequestCounters counters(engine_message_kind);
  const auto id = new_request_id();
  const auto list = encode_request(MessageType::list_events, id, {});
  const auto top_up = encode_request(MessageType::top_up, id, {});
  const auto ok = encode_ok(id, {});
  const auto refused = encode_error(id, make_error(Errc::auth_failed, "no"));
  counters.count(list, ok);
  counters.count(list, ok);
  counters.count(top_up, refused);
  const std::vector<std::uint8_t> garbage = {0xde, 0xad};
  counters.count(garbage, refused);
  const auto s = counters.snapshot();
  EXPECT_EQ(s.served, 2u);
  EXPECT_EQ(s.refused, 2u);
  EXPECT_EQ(s.by_kind.at("list_events").served, 2u);
  EXPECT_EQ(s.by_kind.at("top_up").refused, 1u);
  EXPECT_EQ(s.by_kind.at("malformed").refused, 1u);
  EXPECT_EQ(billing_message_kind(4), "room_report");
  EXPECT_EQ(billing_message_kind(99), "unknown");
  EXPECT_EQ(engine_message_kind(0), "unknown");
}

}  // namespace
}  // namespace usher::entitlement
