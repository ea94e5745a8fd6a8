#include "usher/entitlement/protocol.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "broadcast_fixture.h"
#include "usher/core/zmq.h"
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
  std::uint64_t register_card() {
    auto reply = service.handle(request(MessageType::register_handset, encode(RegisterHandsetRequest{handset.public_key, "alice", kEur})));
    auto frame = decode_frame(reply).value();
    return decode_register_handset_reply(frame.body).value().card_id;
  }
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
      {encode_request(MessageType::top_up, id, encode(TopUpRequest{424242, 100, "x"})), "no prepaid card 424242"},
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
