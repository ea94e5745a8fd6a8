// End-to-end F6 with the real processes: `usher billing serve` with its PMS link to a PMS simulator
// (FIAS-style records on loopback TCP), the room STB's `usher stb link` on the "hotel network",
// `usher stb buy` reporting each purchase to billing, check-in from the PMS and from the front desk's
// CLI, check-out by CLI and by the PMS, statements as text and CSV. Amounts to the cent.
#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "operator_fixture.h"
#include "pms_simulator.h"

namespace usher {
namespace {
using testing::Background;
using testing::run;
using testing::usher;

class HotelE2e : public testing::OperatorFixture {
 protected:
  static std::string price(int e) { return "9.9" + std::to_string(e); }

  void SetUp() override {
    // A room STB has no credit line of its own (the guest's comes with the stay); it gets the offers.
    start({"1003", "", "0", 4, &price}, 2);
    billing = endpoint(1);
    link = endpoint(2);
    must("billing hotel config --home " + bil() + " --credit 50.00 --currency EUR");
    must("billing hotel config --home " + bil() + " --name 'Hôtel Zürich Süd'");
    link_proc = std::make_unique<Background>(usher("stb link --home " + stb() + " --bind " + link) + " 2>>" + dir.file("link.log"));
    start_billing();
    ASSERT_TRUE(testing::wait_listening(ports[1]));
    ASSERT_TRUE(testing::wait_listening(ports[2]));
  }
  void start_billing() { start_billing(pms.port()); }
  void start_billing(std::uint16_t pms_port) {
    billing_proc = std::make_unique<Background>(usher("billing serve --home " + bil() + " --bind " + billing + " --sync 1s --pms 127.0.0.1:" +
                                                      std::to_string(pms_port)) +
                                                " 2>>" + dir.file("billing.log"));
  }
  template <typename F>
  bool eventually(F done) {
    for (int i = 0; i < 200 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return done();
  }
  static std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  testing::PmsSimulator pms;
  std::string billing, link;
  std::unique_ptr<Background> billing_proc, link_proc;
};

TEST_F(HotelE2e, GuestsInTurnAreBilledSeparatelyAndThePmsGetsEachChargeOnce) {
  must("billing hotel room add --home " + bil() + " --room 102 --stb 1003 --link " + link);
  auto vacant = run(usher("stb buy 1 --home " + stb()));
  EXPECT_EQ(vacant.status, 1);
  EXPECT_NE(vacant.output.find("this room is vacant"), std::string::npos) << vacant.output;

  // Guest in from the PMS.
  ASSERT_TRUE(eventually([&] { return pms.linked(); }));
  pms.guest_in("102", "12345", "Koehler, Andreas");
  // Billing has the stay, and the room STB has been told (it may buy from then on).
  ASSERT_TRUE(eventually([&] {
    const auto rooms = run(usher("billing hotel rooms --home " + bil())).output;
    return rooms.find("stay 1") != std::string::npos && rooms.find("not told") == std::string::npos;
  }));
  auto first = must("stb buy 1 --home " + stb());
  EXPECT_NE(first.find("on the room's bill"), std::string::npos) << first;
  EXPECT_NE(first.find("posted to the guest's folio"), std::string::npos) << first;
  // Billing down: the purchase waits in the STB's history and is collected at check-out.
  billing_proc->stop(SIGKILL);
  auto second = must("stb buy 2 --home " + stb());
  EXPECT_NE(second.find("not reported yet"), std::string::npos) << second;
  start_billing();
  ASSERT_TRUE(testing::wait_listening(ports[1]));

  // Check-out at the front desk: folio with both, to the cent; room cleared.
  auto out = must("billing hotel checkout --home " + bil() + " --room 102 --out " + dir.file("folios"));
  EXPECT_NE(out.find("Koehler, Andreas"), std::string::npos) << out;
  EXPECT_NE(out.find("19.83 EUR"), std::string::npos) << out;  // 9.91 + 9.92
  EXPECT_NE(out.find("room STB cleared"), std::string::npos) << out;
  const auto csv = slurp(dir.file("folios/folio-1.csv"));
  EXPECT_NE(csv.find(",1003,folio,Match1,1,1,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",9.92,EUR"), std::string::npos) << csv;
  EXPECT_NE(slurp(dir.file("folios/folio-1.txt")).find("Total"), std::string::npos);
  // The PDF folio as poppler reads it: the hotel's name as set, the guest, both lines, the total.
  auto pdf = run("pdftotext -layout -enc UTF-8 " + dir.file("folios/folio-1.pdf") + " -");
  ASSERT_EQ(pdf.status, 0) << pdf.output;
  for (const char* expected : {"Hotel: Hôtel Zürich Süd", "Guest: Koehler, Andreas", "Room: 102", "Match1", "Match2", "19.83 EUR", "Page 1 of 1"}) {
    EXPECT_NE(pdf.output.find(expected), std::string::npos) << expected << "\n" << pdf.output;
  }
  auto history = must("stb history --home " + stb());
  EXPECT_NE(history.find("vacant"), std::string::npos) << history;
  EXPECT_EQ(history.find("event 1"), std::string::npos) << history;
  EXPECT_EQ(must("stb tickets --home " + stb()), "");

  // The second guest checks in at the desk and out through the PMS: a bill of their own.
  must("billing hotel checkin --home " + bil() + " --room 102 --guest-id 777 --name \"Rossi, Maria\" --report-to " + billing);
  must("stb buy 3 --home " + stb());
  // She pays for another film with her own handset instead of the room (F3): not on the folio.
  const std::string phone = " --home " + dir.file("phone-maria");
  must("wallet init" + phone + " --account maria --currency EUR --engine " + engine + " --operator " + ent() + "/operator.pub");
  must("wallet topup" + phone + " --amount 20.00");
  const auto shown = must("stb buy 4 --pay-by-handset --home " + stb());
  const auto at = shown.find("usher wallet approve ");
  ASSERT_NE(at, std::string::npos) << shown;
  auto paid = must("wallet approve" + phone + " " + shown.substr(at + 21, 29) + " --yes --link " + link);
  EXPECT_NE(paid.find("9.94 EUR"), std::string::npos) << paid;
  EXPECT_NE(must("wallet balance" + phone).find("10.06 EUR"), std::string::npos);
  pms.guest_in("102", "777", "Rossi, Maria");  // the PMS knows her too (she is already in: ignored)
  pms.guest_out("102", "777");
  ASSERT_TRUE(eventually([&] { return run(usher("billing hotel rooms --home " + bil())).output.find("vacant") != std::string::npos; }));
  auto folio2 = must("billing hotel folio --home " + bil() + " --stay 2");
  EXPECT_NE(folio2.find("Rossi, Maria"), std::string::npos) << folio2;
  EXPECT_NE(folio2.find("9.93 EUR"), std::string::npos) << folio2;
  EXPECT_EQ(folio2.find("Match1"), std::string::npos) << folio2;
  EXPECT_EQ(folio2.find("Match4"), std::string::npos) << folio2;  // paid with her handset
  EXPECT_NE(must("billing hotel folio --home " + bil() + " --stay 1").find("19.83 EUR"), std::string::npos);

  // The PMS has each charge once, with the amounts in minor units.
  ASSERT_TRUE(eventually([&] { return pms.charges().size() == 3; }));
  std::int64_t posted = 0;
  for (const auto& [id, c] : pms.charges()) posted += c.amount_minor;
  EXPECT_EQ(posted, 991 + 992 + 993);
  auto postings = must("billing hotel postings --home " + bil());
  EXPECT_EQ(postings.find("pending"), std::string::npos) << postings;
}

// Issue 9: with the PMS away, the link said nothing for as long as it was away, and nothing showed
// whether it was up. Now the log has the failed connect and the recovery, and `billing hotel
// status` says down (since when, the last error) and how many postings wait, then up and none.
TEST_F(HotelE2e, StatusAndLogShowThePmsLinkDownWithPostingsWaitingThenUpAndDrained) {
  const auto ports_now = testing::free_ports(1);
  ASSERT_EQ(ports_now.size(), 1u);
  const auto pms_port = ports_now[0];
  billing_proc->stop(SIGTERM);
  const auto stopped = must("billing hotel status --home " + bil());
  EXPECT_NE(stopped.find("not running (stopped)"), std::string::npos) << stopped;  // billing serve said so as it stopped
  start_billing(pms_port);  // nothing listens there yet
  ASSERT_TRUE(testing::wait_listening(ports[1]));

  must("billing hotel room add --home " + bil() + " --room 102 --stb 1003 --link " + link);
  must("billing hotel checkin --home " + bil() + " --room 102 --guest-id 12345 --name \"Koehler, Andreas\" --report-to " + billing);
  must("stb buy 1 --home " + stb());
  must("stb buy 2 --home " + stb());
  std::string status;
  ASSERT_TRUE(eventually([&] {
    status = run(usher("billing hotel status --home " + bil())).output;
    return status.find(": down since") != std::string::npos && status.find("2 postings waiting") != std::string::npos;
  })) << status;
  EXPECT_NE(status.find("PMS link to 127.0.0.1:" + std::to_string(pms_port)), std::string::npos) << status;
  EXPECT_NE(status.find("last error at "), std::string::npos) << status;
  EXPECT_NE(status.find("Connection refused"), std::string::npos) << status;
  // Retried every second; the status counts each failed connect.
  ASSERT_TRUE(eventually([&] {
    status = run(usher("billing hotel status --home " + bil())).output;
    return status.find(" failed connect, ") == std::string::npos && status.find(" failed connects, retrying") != std::string::npos;
  })) << status;
  auto log = slurp(dir.file("billing.log"));
  EXPECT_NE(log.find("PMS 127.0.0.1:" + std::to_string(pms_port) + ": cannot connect: "), std::string::npos) << log;
  // One line for the outage so far, not one per retry (every second).
  std::size_t said = 0;
  for (auto at = log.find(": cannot connect: "); at != std::string::npos; at = log.find(": cannot connect: ", at + 1)) ++said;
  EXPECT_EQ(said, 1u) << log;

  // The PMS comes (it knows the guest): both postings go, once each; the link is up, none waits.
  testing::PmsSimulator back(pms_port);
  back.guest_in("102", "12345", "Koehler, Andreas");
  ASSERT_TRUE(eventually([&] { return back.charges().size() == 2; }));
  ASSERT_TRUE(eventually([&] {
    status = run(usher("billing hotel status --home " + bil())).output;
    return status.find(": up since") != std::string::npos && status.find("0 postings waiting") != std::string::npos;
  })) << status;
  log = slurp(dir.file("billing.log"));
  EXPECT_NE(log.find("link up again after"), std::string::npos) << log;
}

}  // namespace
}  // namespace usher
