// One sale per entitlement: every pair of purchase paths for the same event and STB (or the same
// service's pass) charges once and leaves one ticket, checked on the cards, the engine's ledger,
// its tickets, the STB and billing's statement to the minor unit. Real engine and billing stores,
// real secure elements, SQLite files.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <thread>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "usher/billing/billing_store.h"

namespace usher::billing {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
constexpr std::uint32_t kStb = 1001;
constexpr std::uint32_t kEvent = 1;
constexpr std::int64_t kPrice = 1250;
constexpr std::int64_t kPassPerDay = 300;
constexpr std::int64_t kTopUp = 10000;
const entitlement::Currency kEur{'E', 'U', 'R'};

enum class Path { buy, gift, approve, deliver_at, impulse, impulse_relayed, pass };

const char* name(Path p) {
  switch (p) {
    case Path::buy: return "F1 buy";
    case Path::gift: return "F2 gift";
    case Path::approve: return "F3 approve";
    case Path::deliver_at: return "F5 deliver-at";
    case Path::impulse: return "impulse stb buy";
    case Path::impulse_relayed: return "impulse stb buy, relayed and paid";
    case Path::pass: return "pass";
  }
  return "?";
}

class OneSaleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(kStb);
    world.add_event(kEvent, 1, kT0 + 7200, 3600, kPrice, "Final");
    ASSERT_TRUE(world.store().set_credit(kStb, {3000, kEur}, kT0).ok());
    ASSERT_TRUE(world.store().set_pass_price(1, {kPassPerDay, kEur}).ok());
    ASSERT_TRUE(world.store().set_stb_account(kStb, "alice").ok());
    deliver_emms();
    auto b = testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint());
    ASSERT_TRUE(b.ok()) << b.error().message;
    billing.emplace(std::move(b.value()));
    world.give_billing_certificate(billing->certificate());  // as the handset relays it with its request
    alice.emplace(world.store(), "alice", kTopUp);
    bob.emplace(world.store(), "bob", kTopUp);
  }
  // What the broadcast carries now reaches the STB (a deliver-at ticket only from its time).
  void deliver_emms() {
    for (const auto& emm : world.store().emm_sections(kT0)) (void)world.stb(kStb).apply_emm(emm);
  }
  // Relays the STB's unsettled history with alice's handset, pays any quote and gives the STB
  // its receipts, as `wallet relay` does.
  void settle() {
    auto& se = world.stb(kStb);
    if (se.settlement_status().unsettled_records == 0) return;
    auto reply = billing->relay(se.sealed_unsettled_history().value(), alice->card_id(), kT0);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    for (const auto& r : reply->receipts) ASSERT_TRUE(se.apply_receipt(r, kT0).ok());
    if (!reply->has_quote) return;
    auto rc = billing->pay(reply->quote.settlement_id, alice->spend(reply->quote.amount, reply->quote.payee), kT0);
    ASSERT_TRUE(rc.ok()) << rc.error().message;
    ASSERT_TRUE(se.apply_receipt(rc->encode(), kT0).ok());
  }

  // Runs one path; the error when it was refused.
  Status run(Path p) {
    auto& store = world.store();
    auto done = [&](const Result<entitlement::Purchase>& r) -> Status {
      if (!r) return r.error();
      deliver_emms();
      return ok_status();
    };
    const auto payee = entitlement::payee_for(kEvent, kStb);
    switch (p) {
      case Path::buy: return done(store.buy_ticket(kEvent, kStb, alice->spend({kPrice, kEur}, payee), kT0));
      case Path::gift: return done(store.buy_ticket(kEvent, kStb, bob->spend({kPrice, kEur}, payee), kT0));
      case Path::approve: {
        const auto code = world.stb(kStb).request_code(kEvent, kT0 + 600);
        return done(store.buy_by_code(code, alice->spend({kPrice, kEur}, payee), kT0));
      }
      case Path::deliver_at:
        return done(store.buy_ticket(kEvent, kStb, alice->spend({kPrice, kEur}, payee), kT0, kT0 + 3600));
      case Path::impulse:
      case Path::impulse_relayed: {
        auto r = world.stb(kStb).impulse_buy(kEvent, kT0);
        if (!r) return r.error();
        if (p == Path::impulse_relayed) settle();
        return ok_status();
      }
      case Path::pass:
        return done(store.buy_pass(1, 2, kStb, alice->spend({2 * kPassPerDay, kEur}, entitlement::pass_payee_for(1, 2, kStb)), kT0));
    }
    return make_error(Errc::invalid_argument, "unknown path");
  }

  testing::BroadcastWorld world;
  std::optional<BillingStore> billing;
  std::optional<testing::TestCard> alice;
  std::optional<testing::TestCard> bob;
};

constexpr Path kPaths[] = {Path::buy, Path::gift, Path::approve, Path::deliver_at, Path::impulse, Path::impulse_relayed, Path::pass};

bool is_pass(Path p) { return p == Path::pass; }
bool is_impulse(Path p) { return p == Path::impulse || p == Path::impulse_relayed; }

// Each pair in a world of its own (a fresh operator, STB and billing).
class OneSalePairs : public OneSaleTest, public ::testing::WithParamInterface<std::pair<Path, Path>> {};

TEST_P(OneSalePairs, TheSecondIsRefusedOrFreeAndOneSaleIsCharged) {
  const auto [first, second] = GetParam();
  SCOPED_TRACE(std::string(name(first)) + " then " + name(second));
  const auto a = run(first);
  ASSERT_TRUE(a.ok()) << a.error().message;
  const auto b = run(second);
  settle();  // whatever the STB bought on impulse reaches billing in the end

  const bool independent = is_pass(first) != is_pass(second);  // a pass and a PPV event are two entitlements
  // An impulse buy after an engine ticket the STB has not received yet (deliver-at) is the one
  // case the STB cannot see: billing then prices its record at zero.
  const bool stb_unaware = first == Path::deliver_at && is_impulse(second);
  // A handset sale before the impulse purchase reached billing: the engine cannot see it, sells,
  // and billing prices the impulse record at zero.
  const bool engine_unaware = first == Path::impulse && !is_impulse(second) && !is_pass(second);
  if (independent || stb_unaware || engine_unaware) {
    ASSERT_TRUE(b.ok()) << b.error().message;
  } else {
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.error().code, Errc::already_exists) << b.error().message;
    // The refusal names what the STB holds.
    if (is_impulse(first) && is_impulse(second)) {
      EXPECT_NE(b.error().message.find("already bought"), std::string::npos) << b.error().message;
    } else if (is_impulse(first)) {
      EXPECT_NE(b.error().message.find("on impulse (its history record 1)"), std::string::npos) << b.error().message;
    } else {
      const auto held = world.store().tickets().front().ticket_id;
      EXPECT_NE(b.error().message.find("ticket " + std::to_string(held)), std::string::npos) << b.error().message;
    }
    EXPECT_NE(b.error().message.find("nothing charged"), std::string::npos) << b.error().message;
  }

  // Money: one sale of each entitlement bought, to the minor unit.
  std::int64_t expected = 0;
  if (is_pass(first) || is_pass(second)) expected += 2 * kPassPerDay;
  if (!is_pass(first) || !is_pass(second)) expected += kPrice;
  const auto paid = (kTopUp - world.store().balance(alice->card_id())->minor) + (kTopUp - world.store().balance(bob->card_id())->minor);
  EXPECT_EQ(paid, expected);
  EXPECT_EQ(world.store().ledger_check().first, 0);
  EXPECT_TRUE(world.store().balances_match_ledger());

  // Tickets: at most one valid engine ticket for the event, one pass.
  int event_tickets = 0;
  int passes = 0;
  for (const auto& t : world.store().tickets()) {
    if (t.status != entitlement::TicketStatus::valid) continue;
    (t.event_id == kEvent ? event_tickets : passes)++;
  }
  EXPECT_LE(event_tickets, 1);
  EXPECT_EQ(passes, is_pass(first) || is_pass(second) ? 1 : 0);
  if (!is_impulse(first) && !is_impulse(second) && !is_pass(first)) {
    EXPECT_EQ(event_tickets, 1);
  }
  // The STB recorded at most one impulse purchase, and it is settled.
  EXPECT_LE(world.stb(kStb).history().size(), 1u);
  EXPECT_EQ(world.stb(kStb).settlement_status().unsettled_records, 0u);

  // The statement shows what was charged, once.
  const auto statement = billing->stb_statement(kStb).value();
  std::int64_t total = 0;
  for (const auto& t : statement.totals) total += t.minor;
  EXPECT_EQ(total, expected) << statement.text();
}

std::vector<std::pair<Path, Path>> all_pairs() {
  std::vector<std::pair<Path, Path>> out;
  for (auto a : kPaths) {
    for (auto b : kPaths) out.emplace_back(a, b);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryPair, OneSalePairs, ::testing::ValuesIn(all_pairs()), [](const auto& pair_info) {
  std::string n = std::string(name(pair_info.param.first)) + "_then_" + name(pair_info.param.second);
  for (auto& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
});

// Two handsets buying the same event for the same STB at once, each on its own connection as
// separate engine processes would: one ticket, one charge.
TEST_F(OneSaleTest, ConcurrentBuysOfTheSameEventSellOneTicket) {
  constexpr int kClients = 8;
  std::vector<entitlement::SpendAuthorization> spends;
  for (int i = 0; i < kClients; ++i) spends.push_back((i % 2 ? bob : alice)->spend({kPrice, kEur}, entitlement::payee_for(kEvent, kStb)));
  std::atomic<int> sold{0}, held{0};
  std::vector<std::thread> threads;
  const auto home = world.dir().file("operator");
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto store = entitlement::EntitlementStore::open(home);
      auto r = store->buy_ticket(kEvent, kStb, spends[i], kT0);
      if (r) ++sold;
      else if (r.error().code == Errc::already_exists) ++held;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sold.load(), 1);
  EXPECT_EQ(held.load(), kClients - 1);
  const auto paid = (kTopUp - world.store().balance(alice->card_id())->minor) + (kTopUp - world.store().balance(bob->card_id())->minor);
  EXPECT_EQ(paid, kPrice);
  EXPECT_EQ(world.store().tickets().size(), 1u);
}

// A revoked ticket no longer counts: the event can be bought again; a pass after the held one
// ends is sold, an overlapping one is not.
TEST_F(OneSaleTest, RevokedTicketsAndEndedPassesDoNotCount) {
  ASSERT_TRUE(run(Path::buy).ok());
  ASSERT_EQ(run(Path::gift).error().code, Errc::already_exists);
  ASSERT_TRUE(world.store().revoke_ticket(world.store().tickets().front().ticket_id, true).ok());
  EXPECT_TRUE(run(Path::gift).ok());

  ASSERT_TRUE(run(Path::pass).ok());  // [kT0, kT0 + 2 days)
  auto& store = world.store();
  auto later = [&](std::uint64_t at) {
    return store.buy_pass(1, 1, kStb, alice->spend({kPassPerDay, kEur}, entitlement::pass_payee_for(1, 1, kStb)), at);
  };
  auto overlapping = later(kT0 + 86400);
  ASSERT_FALSE(overlapping.ok());
  EXPECT_EQ(overlapping.error().code, Errc::already_exists);
  EXPECT_NE(overlapping.error().message.find("a pass for service 1"), std::string::npos) << overlapping.error().message;
  EXPECT_TRUE(later(kT0 + 2 * 86400).ok());
  EXPECT_EQ(store.ledger_check().first, 0);
  EXPECT_TRUE(store.balances_match_ledger());
}

// `stb buy --pay-by-handset` for an event the STB holds a ticket for, or bought on impulse, used to
// show a code the engine could only refuse; the STB now says what it holds and shows none.
TEST_F(OneSaleTest, TheStbShowsNoRequestCodeForAnEventItAlreadyHas) {
  auto& se = world.stb(kStb);
  ASSERT_TRUE(se.handset_purchase_code(kEvent, kT0 + 600).ok());
  ASSERT_TRUE(run(Path::buy).ok());
  auto held = se.handset_purchase_code(kEvent, kT0 + 600);
  ASSERT_FALSE(held.ok());
  EXPECT_EQ(held.error().code, Errc::already_exists);
  EXPECT_NE(held.error().message.find("already holds ticket"), std::string::npos) << held.error().message;

  world.add_event(kEvent + 1, 1, kT0 + 3 * 3600, 3600, kPrice, "Replay");
  ASSERT_TRUE(world.store().set_credit(kStb, {3000, kEur}, kT0).ok());  // its offer, with the event's key
  deliver_emms();
  ASSERT_TRUE(se.impulse_buy(kEvent + 1, kT0).ok());
  auto impulse = se.handset_purchase_code(kEvent + 1, kT0 + 600);
  ASSERT_FALSE(impulse.ok());
  EXPECT_EQ(impulse.error().code, Errc::already_exists);
  EXPECT_NE(impulse.error().message.find("already bought on this STB"), std::string::npos) << impulse.error().message;
}

}  // namespace
}  // namespace usher::billing
