// A hotel guest's impulse purchase is settled by exactly one path, whatever arrives together: every
// ordered pair of {pay by the guest's handset, relay, room report, prepay, check-out} in one group of
// BillingService (check-out, a desk operation, just before or after the group), then the room
// synced. Real engine and billing stores, a real secure element behind a real ZeroMQ link.
#include <gtest/gtest.h>

#include <cctype>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "cli_process.h"
#include "stb_link_server.h"
#include "usher/core/store_database.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/hotel_desk.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
constexpr std::uint32_t kRoomStb = 1003;
constexpr std::uint32_t kHomeStb = 1004;
constexpr std::int64_t kPrice = 1250;
constexpr std::int64_t kTopUp = 5000;
const entitlement::Currency kEur{'E', 'U', 'R'};
using entitlement::BillingMessage;

enum class Request { pay, relay, room_report, prepay, check_out };
constexpr Request kRequests[] = {Request::pay, Request::relay, Request::room_report, Request::prepay, Request::check_out};

const char* name(Request r) {
  switch (r) {
    case Request::pay: return "pay";
    case Request::relay: return "relay";
    case Request::room_report: return "room_report";
    case Request::prepay: return "prepay";
    case Request::check_out: return "check_out";
  }
  return "?";
}

class HotelGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(kRoomStb);
    world.add_stb(kHomeStb);
    world.add_event(1, 1, kT0 + 7200, 3600, kPrice, "Film");
    ASSERT_TRUE(world.store().set_credit(kRoomStb, {0, kEur}, kT0).ok());
    ASSERT_TRUE(world.store().set_credit(kHomeStb, {3000, kEur}, kT0).ok());
    for (const auto& emm : world.store().emm_sections(0)) {
      (void)world.stb(kRoomStb).apply_emm(emm);
      (void)world.stb(kHomeStb).apply_emm(emm);
    }
    billing.emplace(testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint()).value());
    world.give_billing_certificate(billing->certificate());  // as the handset relays it with its request
    ASSERT_TRUE(billing->set_hotel_credit({5000, kEur}).ok());
    link = std::make_unique<testing::StbLinkServer>(world.stb_home(kRoomStb));
    desk.emplace(*billing, "tcp://127.0.0.1:1");
    ASSERT_TRUE(desk->add_room("102", kRoomStb, link->endpoint()).ok());
    ASSERT_TRUE(desk->check_in("102", "12345", "Koehler, Andreas", kT0).ok());
    guest.emplace(world.store(), "guest-12345", kTopUp);
  }
  stb::SecureElement& se() { return world.stb(kRoomStb); }

  struct Sent {
    entitlement::RequestId id;
    std::vector<std::uint8_t> bytes;
  };
  static Sent frame(BillingMessage type, const std::vector<std::uint8_t>& body) {
    Sent s{entitlement::new_request_id(), {}};
    s.bytes = entitlement::encode_request(static_cast<entitlement::MessageType>(type), s.id, body);
    return s;
  }
  std::int64_t charged() { return kTopUp - world.store().balance(guest->card_id())->minor; }
  std::int64_t count(const std::string& sql) {
    auto db = open_store_database(world.dir().file("billing"), {"billing.db", "billing"}, IfMissing::refuse).value();
    auto st = db.prepare(sql);
    st.step();
    return st.column_int(0);
  }

  testing::BroadcastWorld world;
  std::optional<BillingStore> billing;
  std::unique_ptr<testing::StbLinkServer> link;
  std::optional<HotelDesk> desk;
  std::optional<testing::TestCard> guest;
};

class HotelGroupPairs : public HotelGroupTest, public ::testing::WithParamInterface<std::pair<Request, Request>> {};

TEST_P(HotelGroupPairs, EachRecordIsSettledByOnePathAndBillingKeepsServing) {
  const auto [first, second] = GetParam();
  SCOPED_TRACE(std::string(name(first)) + " with " + name(second));
  // The guest bought a film on the room STB; its room report failed. The guest's handset relayed
  // the history and has a quote to pay.
  ASSERT_TRUE(se().impulse_buy(1, kT0).ok());
  const auto sealed = se().sealed_unsettled_history().value();
  auto relayed = billing->relay(sealed, guest->card_id(), kT0);
  ASSERT_TRUE(relayed.ok()) << relayed.error().message;
  ASSERT_TRUE(relayed->has_quote);
  const auto quote = relayed->quote;

  auto request = [&](Request r) -> std::optional<Sent> {
    switch (r) {
      case Request::pay:
        return frame(BillingMessage::pay,
                     entitlement::encode(entitlement::PayRequest{quote.settlement_id, guest->spend(quote.amount, quote.payee)}));
      case Request::relay: return frame(BillingMessage::relay, entitlement::encode(entitlement::RelayRequest{sealed, guest->card_id()}));
      case Request::room_report: return frame(BillingMessage::room_report, sealed);
      case Request::prepay:
        return frame(BillingMessage::prepay, entitlement::encode(entitlement::PrepayRequest{kRoomStb, {1000, kEur}, guest->card_id()}));
      case Request::check_out: return std::nullopt;
    }
    return std::nullopt;
  };
  auto check_out = [&] { (void)desk->check_out("102", kT0 + 10, false); };

  BillingService service(*billing);
  std::vector<Sent> group;
  if (first == Request::check_out) check_out();
  for (auto r : {first, second}) {
    if (auto s = request(r)) group.push_back(std::move(*s));
  }
  std::vector<std::span<const std::uint8_t>> spans;
  for (const auto& s : group) spans.emplace_back(s.bytes);
  const auto replies = service.handle_batch(spans);
  ASSERT_EQ(replies.size(), group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    auto body = entitlement::reply_body(replies[i], group[i].id);
    // Every request is answered: a receipt, a quote, or a clear refusal; never "try again" for good.
    if (!body) {
      EXPECT_NE(body.error().code, Errc::storage) << body.error().message;
    }
  }
  if (second == Request::check_out && first != Request::check_out) check_out();

  // Then the room STB is synced (as `billing serve` does every few seconds): whatever was left
  // is settled to the folio, and the STB takes its receipts.
  ASSERT_TRUE(desk->sync("102", kT0 + 20).ok());
  world.reopen(kRoomStb);

  // Exactly one path settled the record: the guest's card or the folio (and the PMS), not both.
  EXPECT_EQ(count("SELECT COUNT(*) FROM records WHERE stb_id = 1003"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM settlements WHERE state = 'charging'"), 0);
  const auto folio_total = count("SELECT COALESCE(SUM(r.price_minor), 0) FROM records r JOIN settlements s USING (settlement_id) "
                                 "WHERE s.kind = 3 AND s.state = 'paid'");
  const auto card_settled = count("SELECT COALESCE(SUM(amount_minor), 0) FROM settlements WHERE kind = 1 AND state = 'paid'");
  EXPECT_EQ(charged(), card_settled);
  EXPECT_EQ(charged() + folio_total, kPrice);
  EXPECT_EQ(static_cast<std::int64_t>(billing->pms_postings(false).size()), folio_total > 0 ? 1 : 0);
  EXPECT_EQ(world.store().ledger_check().first, 0);
  EXPECT_TRUE(world.store().balances_match_ledger());
  EXPECT_EQ(billing->settled_sequence(kRoomStb), 1u);

  // Billing goes on serving everyone else: another STB's history is quoted and paid.
  ASSERT_TRUE(world.stb(kHomeStb).impulse_buy(1, kT0).ok());
  testing::TestCard other(world.store(), "other", kTopUp);
  auto q = billing->relay(world.stb(kHomeStb).sealed_unsettled_history().value(), other.card_id(), kT0);
  ASSERT_TRUE(q.ok()) << q.error().message;
  auto paid = billing->pay(q->quote.settlement_id, other.spend(q->quote.amount, q->quote.payee), kT0);
  ASSERT_TRUE(paid.ok()) << paid.error().message;
  EXPECT_EQ(billing->recover(kT0), 0u);
}

std::vector<std::pair<Request, Request>> all_pairs() {
  std::vector<std::pair<Request, Request>> out;
  for (auto a : kRequests) {
    for (auto b : kRequests) out.emplace_back(a, b);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryPair, HotelGroupPairs, ::testing::ValuesIn(all_pairs()), [](const auto& pair_info) {
  return std::string(name(pair_info.param.first)) + "_with_" + name(pair_info.param.second);
});

// The state the old code left behind: a payment stuck in "charging", the card charged, while a room
// report settled the same records to the folio. Billing still opens, finishes it (the card gets its
// money back, once) and serves the others.
TEST_F(HotelGroupTest, AStoreLeftWithASettlementThatCannotCompleteStillStartsAndRefundsOnce) {
  ASSERT_TRUE(se().impulse_buy(1, kT0).ok());
  const auto sealed = se().sealed_unsettled_history().value();
  const auto quote = billing->relay(sealed, guest->card_id(), kT0).value().quote;
  ASSERT_TRUE(billing->room_report(sealed, kT0).ok());
  const auto spend = guest->spend(quote.amount, quote.payee);
  {
    auto db = open_store_database(world.dir().file("billing"), {"billing.db", "billing"}, IfMissing::refuse).value();
    auto st = db.prepare("UPDATE settlements SET state = 'charging', spend = ? WHERE settlement_id = ?");
    st.bind(1, spend.encode()).bind(2, static_cast<std::int64_t>(quote.settlement_id));
    st.run();
  }
  ASSERT_TRUE(billing->charge(quote.settlement_id).ok());
  EXPECT_EQ(charged(), kPrice);  // paid twice: by the card and on the folio

  desk.reset();
  billing.reset();
  {
    // `usher billing serve` on that store starts (it refused to before), finishing the settlement
    // before it serves: rolled back, the card refunded.
    const auto ports = testing::free_ports(1);
    ASSERT_EQ(ports.size(), 1u);
    testing::Background serve(testing::usher("billing serve --home " + world.dir().file("billing") + " --bind tcp://127.0.0.1:" +
                                             std::to_string(ports[0])) +
                              " 2>" + world.dir().file("billing.log"));
    ASSERT_TRUE(testing::wait_listening(ports[0]));
  }
  EXPECT_EQ(charged(), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM settlements WHERE state = 'charging'"), 0);
  auto reopened = BillingStore::open(world.dir().file("billing"));
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  billing.emplace(std::move(reopened.value()));
  EXPECT_EQ(billing->recover(kT0), 0u);
  EXPECT_EQ(charged(), 0);  // refunded once
  EXPECT_EQ(world.store().ledger_check().first, 0);
  EXPECT_TRUE(world.store().balances_match_ledger());
  // Paying the old quote again is refused: its records are settled.
  EXPECT_EQ(billing->pay(quote.settlement_id, guest->spend(quote.amount, quote.payee), kT0).error().code, Errc::stale);
  EXPECT_EQ(charged(), 0);

  ASSERT_TRUE(world.stb(kHomeStb).impulse_buy(1, kT0).ok());
  auto q = billing->relay(world.stb(kHomeStb).sealed_unsettled_history().value(), guest->card_id(), kT0);
  ASSERT_TRUE(q.ok()) << q.error().message;
  ASSERT_TRUE(billing->pay(q->quote.settlement_id, guest->spend(q->quote.amount, q->quote.payee), kT0).ok());
  EXPECT_EQ(charged(), kPrice);
}

}  // namespace
}  // namespace usher::billing
