// F6 hotels: rooms, stays, folios, check-out clearing the room STB, and the PMS link against a PMS
// simulator. The room STB's link is a real ZeroMQ server on loopback, as `usher stb link` runs it.
#include <gtest/gtest.h>

#include <thread>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "cli_process.h"
#include "temp_dir.h"
#include "pms_simulator.h"
#include "stb_link_server.h"
#include "usher/billing/fias.h"
#include "usher/billing/hotel_desk.h"

namespace usher::billing {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
const entitlement::Currency kEur{'E', 'U', 'R'};

using RoomStbLink = testing::StbLinkServer;

class HotelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1003);
    for (std::uint32_t id = 1; id <= 5; ++id) world.add_event(id, 1, kT0 + id * 7200, 3600, 1250, "Film " + std::to_string(id));
    // The room STB gets the offers (event keys and prices) by EMM, with no credit line of its own.
    ASSERT_TRUE(world.store().set_credit(1003, {0, kEur}, kT0).ok());
    for (const auto& emm : world.store().emm_sections(0)) (void)se().apply_emm(emm);
    billing.emplace(testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint()).value());
    ASSERT_TRUE(billing->set_hotel_credit({5000, kEur}).ok());
    link = std::make_unique<RoomStbLink>(world.stb_home(1003));
    desk.emplace(*billing, "tcp://127.0.0.1:1");  // the room STB does not report by itself in these tests
    ASSERT_EQ(se().billing_certificate().error().code, Errc::not_found);
    auto told = desk->add_room("102", 1003, link->endpoint());
    ASSERT_TRUE(told.ok()) << told.error().message;
    EXPECT_TRUE(*told);
    // The room state brought the hotel billing's certificate: the room STB seals its history for it.
    auto held = se().billing_certificate();
    ASSERT_TRUE(held.ok()) << held.error().message;
    EXPECT_EQ(held->encode(), billing->certificate().encode());
  }
  stb::SecureElement& se() { return world.stb(1003); }
  // What the STB does after a purchase on the hotel network: report, apply the folio receipts.
  void report() {
    auto reply = billing->room_report(se().sealed_unsettled_history().value(), kT0);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    for (const auto& rc : reply->receipts) ASSERT_TRUE(se().apply_receipt(rc, kT0).ok());
  }

  testing::BroadcastWorld world;
  std::optional<BillingStore> billing;
  std::unique_ptr<RoomStbLink> link;
  std::optional<HotelDesk> desk;
};

TEST_F(HotelTest, TwoGuestsInTurnGetTwoBillsAndTheRoomIsClearedBetween) {
  auto vacant = se().impulse_buy(1, kT0);
  ASSERT_FALSE(vacant.ok());
  EXPECT_NE(vacant.error().message.find("vacant"), std::string::npos) << vacant.error().message;

  auto in = desk->check_in("102", "12345", "Koehler, Andreas", kT0);
  ASSERT_TRUE(in.ok()) << in.error().message;
  EXPECT_TRUE(in->stb_told);
  EXPECT_EQ(desk->check_in("102", "999", "Someone Else", kT0).error().code, Errc::already_exists);
  auto r1 = se().impulse_buy(1, kT0);
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->stay_id, in->stay.stay_id);
  report();
  ASSERT_TRUE(se().impulse_buy(2, kT0).ok());  // not reported: collected at check-out

  auto out = desk->check_out("102", kT0 + 100, false);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_TRUE(out->stb_cleared);
  ASSERT_EQ(out->folio.lines.size(), 2u);
  ASSERT_EQ(out->folio.totals.size(), 1u);
  EXPECT_EQ(out->folio.totals[0].minor, 2500);
  EXPECT_NE(out->folio.text().find("Koehler, Andreas"), std::string::npos);
  EXPECT_NE(out->folio.csv().find(",folio,Film 2,"), std::string::npos) << out->folio.csv();
  // The PDF, read back with pdftotext: the header (hotel, guest, room, stay), both lines and the total.
  ASSERT_TRUE(billing->set_hotel_name("Hôtel du Lac").ok());
  EXPECT_FALSE(billing->set_hotel_name("").ok());
  EXPECT_FALSE(billing->set_hotel_name("bad \xC3(").ok());
  auto reread = billing->folio(in->stay.stay_id);
  ASSERT_TRUE(reread.ok()) << reread.error().message;
  ASSERT_TRUE(testing::write_file(world.dir().file("folio.pdf"), reread->pdf()));
  auto pdf = testing::run("pdftotext -layout -enc UTF-8 " + world.dir().file("folio.pdf") + " -");
  ASSERT_EQ(pdf.status, 0) << pdf.output;
  for (const char* expected : {"Hotel: Hôtel du Lac", "Guest: Koehler, Andreas (guest 12345)", "Room: 102", "Stay: ", "Film 1", "Film 2",
                               "Total", "25.00 EUR", "Page 1 of 1"}) {
    EXPECT_NE(pdf.output.find(expected), std::string::npos) << expected << "\n" << pdf.output;
  }

  // The next guest sees nothing of the last, and the vacant room cannot buy.
  world.reopen(1003);
  EXPECT_TRUE(se().tickets().empty());
  EXPECT_TRUE(se().history().empty());
  EXPECT_EQ(se().impulse_buy(3, kT0).error().code, Errc::not_entitled);

  auto second = desk->check_in("102", "777", "Rossi, Maria", kT0 + 200);
  ASSERT_TRUE(second.ok());
  auto r3 = se().impulse_buy(3, kT0 + 200);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->sequence, 3u);  // the chain goes on after clearing
  auto out2 = desk->check_out("102", kT0 + 300, false);
  ASSERT_TRUE(out2.ok()) << out2.error().message;
  ASSERT_EQ(out2->folio.lines.size(), 1u);
  EXPECT_EQ(out2->folio.totals[0].minor, 1250);
  EXPECT_EQ(billing->folio(in->stay.stay_id)->totals[0].minor, 2500);  // the first bill is unchanged

  const auto postings = billing->pms_postings(false);
  ASSERT_EQ(postings.size(), 3u);
  EXPECT_EQ(postings[0].guest_id, "12345");
  EXPECT_EQ(postings[2].guest_id, "777");
}

TEST_F(HotelTest, AGuestMayPayWithTheirOwnHandsetInstead) {
  ASSERT_TRUE(desk->check_in("102", "12345", "Koehler, Andreas", kT0).ok());
  ASSERT_TRUE(se().impulse_buy(1, kT0).ok());
  // Before the room reports it, the guest's handset relays the room STB's history and pays.
  testing::TestCard guest(world.store(), "guest-12345", 5000);
  auto reply = billing->relay(se().sealed_unsettled_history().value(), guest.card_id(), kT0);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_TRUE(reply->has_quote);
  auto rc = billing->pay(reply->quote.settlement_id, guest.spend(reply->quote.amount, reply->quote.payee), kT0);
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  ASSERT_TRUE(se().apply_receipt(rc->encode(), kT0).ok());
  EXPECT_EQ(world.store().balance(guest.card_id())->minor, 5000 - 1250);
  auto out = desk->check_out("102", kT0, false);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_TRUE(out->folio.lines.empty());  // nothing on the room's bill
  EXPECT_TRUE(billing->pms_postings(false).empty());
}

TEST_F(HotelTest, CheckOutWaitsForAnUnreachableStbUnlessForced) {
  ASSERT_TRUE(desk->check_in("102", "12345", "Koehler, Andreas", kT0).ok());
  ASSERT_TRUE(se().impulse_buy(1, kT0).ok());
  const auto endpoint = link->endpoint();
  link.reset();  // the room STB is off the network
  auto refused = desk->check_out("102", kT0, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("does not answer"), std::string::npos) << refused.error().message;
  auto forced = desk->check_out("102", kT0, true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_FALSE(forced->stb_cleared);
  EXPECT_TRUE(forced->folio.lines.empty());
  // Back on the network: the purchases are collected as late charges on that folio, then the room is cleared.
  // Cut off, the STB still believes the guest is in: what it sells meanwhile is that guest's too.
  ASSERT_TRUE(se().impulse_buy(2, kT0).ok());
  // The next guest checks in while the STB is still away.
  auto next = desk->check_in("102", "777", "Rossi, Maria", kT0 + 5);
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_FALSE(next->stb_told);
  link = std::make_unique<RoomStbLink>(world.stb_home(1003), endpoint);
  auto synced = desk->sync("102", kT0 + 10);
  ASSERT_TRUE(synced.ok()) << synced.error().message;
  EXPECT_EQ(billing->folio(forced->stay.stay_id)->totals.at(0).minor, 2500);
  EXPECT_FALSE(billing->room("102")->state_pending);
  world.reopen(1003);
  EXPECT_TRUE(se().history().empty());  // the first guest's purchases are gone from the room
  EXPECT_TRUE(se().tickets().empty());
  EXPECT_EQ(se().settlement_status().stay_id, next->stay.stay_id);
  auto bought = se().impulse_buy(3, kT0 + 20);
  ASSERT_TRUE(bought.ok()) << bought.error().message;
  EXPECT_EQ(bought->stay_id, next->stay.stay_id);
}

TEST_F(HotelTest, PmsLinkChecksGuestsInAndOutAndPostsEachChargeOnce) {
  testing::PmsSimulator pms;
  PmsLink::Options options;
  options.port = pms.port();
  options.answer_timeout = std::chrono::milliseconds(300);
  options.retry_after = std::chrono::milliseconds(50);
  options.max_attempts = 3;
  std::atomic<bool> stop{false};
  // The link runs with its own store connection, as in `usher billing pms`.
  auto store = BillingStore::open(world.dir().file("billing")).value();
  HotelDesk link_desk(store, "tcp://127.0.0.1:1");
  PmsLink pms_link(store, link_desk, options);
  std::thread runner([&] { pms_link.run(stop); });
  struct StopAtEnd {  // also when an assertion ends the test early
    std::atomic<bool>& stop;
    std::thread& runner;
    ~StopAtEnd() {
      stop = true;
      if (runner.joinable()) runner.join();
    }
  } stop_at_end{stop, runner};
  auto wait_for = [](auto done) {
    for (int i = 0; i < 200 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return done();
  };

  ASSERT_TRUE(wait_for([&] { return pms.linked(); }));
  pms.guest_in("102", "12345", "Koehler, Andreas");
  // Billing has the stay, then the room STB hears of it over its link.
  ASSERT_TRUE(wait_for([&] { return billing->room("102")->stay_id != 0 && se().settlement_status().stay_id != 0; }));
  ASSERT_TRUE(se().impulse_buy(1, kT0).ok());
  pms.ignore_next_postings(1);  // the first answer is lost: the posting is sent again, posted once
  report();
  ASSERT_TRUE(wait_for([&] { return billing->pms_postings(true).empty(); }));
  EXPECT_EQ(pms.charges().size(), 1u);
  EXPECT_GE(pms.postings_received(), 2);
  EXPECT_EQ(pms.charges().begin()->second.amount_minor, 1250);

  // Refused twice, then taken; and the link dropping in between loses nothing.
  ASSERT_TRUE(se().impulse_buy(2, kT0).ok());
  pms.refuse_next_postings(2);
  report();
  pms.drop_link();
  ASSERT_TRUE(wait_for([&] { return billing->pms_postings(true).empty(); }));
  EXPECT_EQ(pms.charges().size(), 2u);
  EXPECT_EQ(billing->pms_postings(false)[1].state, PmsPostingState::ok);

  // A charge for a guest the PMS never had is refused for good after the retries, kept for the desk.
  pms.refuse_next_postings(100);
  ASSERT_TRUE(se().impulse_buy(3, kT0).ok());
  report();
  ASSERT_TRUE(wait_for([&] { return billing->pms_postings(true).empty(); }));
  EXPECT_EQ(billing->pms_postings(false)[2].state, PmsPostingState::refused);
  EXPECT_EQ(pms.charges().size(), 2u);
  // The front desk fixes it in the PMS and sends it again.
  pms.accept_postings();
  ASSERT_TRUE(billing->pms_retry(billing->pms_postings(false)[2].posting_id).ok());
  EXPECT_EQ(billing->pms_retry(billing->pms_postings(false)[2].posting_id).error().code, Errc::not_found);
  ASSERT_TRUE(wait_for([&] { return pms.charges().size() == 3; }));
  ASSERT_TRUE(wait_for([&] { return billing->pms_postings(false)[2].state == PmsPostingState::ok; }));

  pms.guest_out("102", "12345");
  // The folio closed, then the room STB cleared over its link.
  ASSERT_TRUE(wait_for([&] { return billing->room("102")->stay_id == 0 && !billing->room("102")->state_pending; }));
  stop = true;
  runner.join();
  EXPECT_EQ(pms_link.counters().guests_in, 1u);
  EXPECT_EQ(pms_link.counters().guests_out, 1u);
  world.reopen(1003);
  EXPECT_TRUE(se().history().empty());  // cleared at the PMS's check-out
}

// Issue 9: with the PMS away the link said nothing, however long. Now the first failed connect is
// logged at once, the retries after it only every remind_every ("still down"), the return as "up
// again", and each state is recorded for `billing hotel status`.
TEST_F(HotelTest, PmsAwayIsLoggedOnceThenRemindedThenUpAgainAndItsStateRecorded) {
  const auto ports = testing::free_ports(2);
  ASSERT_EQ(ports.size(), 2u);
  auto wait_for = [](auto done) {
    for (int i = 0; i < 400 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return done();
  };
  auto count = [](const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  // An hour between reminders (none in this test), then a reminder at every retry.
  struct Case {
    std::uint16_t port;
    std::chrono::milliseconds remind_every;
  };
  for (const Case& c : {Case{ports[0], std::chrono::milliseconds(3'600'000)}, Case{ports[1], std::chrono::milliseconds(0)}}) {
    SCOPED_TRACE(c.remind_every.count());
    const auto port = c.port;
    const auto remind_every = c.remind_every;
    PmsLink::Options options;
    options.port = port;
    options.retry_after = std::chrono::milliseconds(20);
    options.remind_every = remind_every;
    auto store = BillingStore::open(world.dir().file("billing")).value();
    HotelDesk link_desk(store, "tcp://127.0.0.1:1");
    PmsLink pms_link(store, link_desk, options);
    std::atomic<bool> stop{false};
    ::testing::internal::CaptureStderr();
    std::thread runner([&] { pms_link.run(stop); });
    // Down, retried: the state billing hotel status reads says so.
    const bool down = wait_for([&] {
      const auto state = billing->pms_link();
      return state && state->condition == PmsLinkCondition::down && state->failed_attempts >= 5;
    });
    std::optional<testing::PmsSimulator> pms;
    if (down) pms.emplace(port);
    const bool up = down && wait_for([&] {
      const auto state = billing->pms_link();
      return state && state->condition == PmsLinkCondition::up;
    });
    stop = true;
    runner.join();
    const auto log = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(down) << log;
    ASSERT_TRUE(up) << log;
    const auto failures = pms_link.counters().connect_failures;
    EXPECT_GE(failures, 5u);
    EXPECT_EQ(count(log, ": cannot connect: connect to 127.0.0.1:" + std::to_string(port)), 1u) << log;
    EXPECT_EQ(count(log, ": still down since "), remind_every.count() == 0 ? failures - 1 : 0u) << log;
    EXPECT_EQ(count(log, ": link up again after "), 1u) << log;
    const auto state = billing->pms_link();
    ASSERT_TRUE(state.has_value());
    EXPECT_EQ(state->condition, PmsLinkCondition::stopped);
    EXPECT_EQ(state->pms, "127.0.0.1:" + std::to_string(port));
    EXPECT_NE(state->last_error.find("Connection refused"), std::string::npos) << state->last_error;
  }
}

}  // namespace
}  // namespace usher::billing
