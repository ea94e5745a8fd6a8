// End-to-end F4 with the real processes: `usher entitlement serve`, `usher billing serve`, the
// STB's `usher stb link` and the handset's `usher wallet relay`, over ZeroMQ on loopback, with the
// credit line and offers reaching the STB by EMM through a real headend pass. Then kill -9 at random
// points of the relay, over and over: every purchase is charged exactly once and the STB and
// billing agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <deque>
#include <filesystem>
#include <random>
#include <regex>
#include <vector>
#include <thread>

#include <atomic>
#include <csignal>
#include <functional>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "operator_fixture.h"

namespace usher {
namespace {
using testing::Background;
using testing::run;
using testing::usher;

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::int64_t cents(const std::string& text, const std::string& after) {
  // The first amount after `after`: "... <after> ... 12.50 EUR" -> 1250
  const auto at = text.find(after);
  if (at == std::string::npos) return -1;
  std::smatch m;
  const std::string rest = text.substr(at + after.size());
  if (!std::regex_search(rest, m, std::regex(R"((\d+)\.(\d\d) EUR)"))) return -1;
  return std::stoll(m[1]) * 100 + std::stoll(m[2]);
}

// Stands between billing and the engine, passing each request on and its reply back, except the
// first reply to billing's charge (message 19, billing_charge): once the engine has answered it (so
// the card is charged and the charge durable), `on_charged` runs instead of handing billing the
// answer. Billing is killed there, between charging the card and completing the settlement.
class ChargeInterceptor {
 public:
  ChargeInterceptor(const std::string& bind, std::string engine, std::function<void()> on_charged)
      : engine_(std::move(engine)), on_charged_(std::move(on_charged)) {
    front_.bind(bind);
    thread_ = std::thread([this] { run(); });
  }
  ~ChargeInterceptor() {
    stop_ = true;
    thread_.join();
  }
  [[nodiscard]] bool intercepted() const { return intercepted_; }

 private:
  void run() {
    while (!stop_) {
      zmq::pollitem_t item{front_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> parts;
      (void)zmq::recv_multipart(front_, std::back_inserter(parts));
      if (parts.size() != 3) continue;  // routing id, empty delimiter, request
      const bool charge = parts[2].size() > 1 && parts[2].data<std::uint8_t>()[1] == 19;
      zmq::socket_t back(ctx_, zmq::socket_type::req);
      back.set(zmq::sockopt::rcvtimeo, 10000);
      back.set(zmq::sockopt::linger, 0);
      back.connect(engine_);
      back.send(zmq::buffer(parts[2].data(), parts[2].size()));
      zmq::message_t reply;
      if (!back.recv(reply)) continue;
      if (charge && !intercepted_) {
        intercepted_ = true;
        on_charged_();
        continue;
      }
      parts[2] = std::move(reply);
      zmq::send_multipart(front_, parts);
    }
  }
  zmq::context_t ctx_;
  zmq::socket_t front_{ctx_, zmq::socket_type::router};
  std::string engine_;
  std::function<void()> on_charged_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> intercepted_{false};
  std::thread thread_;
};

class SettlementE2e : public testing::OperatorFixture {
 protected:
  static constexpr int kEvents = 60;
  static std::string price(int e) { return "12." + std::to_string(10 + e % 90); }

  void SetUp() override {
    start({"1001", "alice", "20.00", kEvents, &price}, 3);
    for (int e = 1; e <= kEvents; ++e) price_[e] = 1200 + 10 + e % 90;
    billing = endpoint(1);
    link = endpoint(2);
    billing_proc = std::make_unique<Background>(usher("billing serve --home " + bil() + " --bind " + billing) + " 2>>" + dir.file("billing.log"));
    link_proc = std::make_unique<Background>(usher("stb link --home " + stb() + " --bind " + link) + " 2>>" + dir.file("link.log"));
    ASSERT_TRUE(testing::wait_listening(ports[1]));
    ASSERT_TRUE(testing::wait_listening(ports[2]));
    must("wallet init" + w() + " --account alice --currency EUR --engine " + engine + " --operator " + ent() + "/operator.pub");
    must("wallet topup" + w() + " --amount 900.00");
    // The handset pairs with the code the STB shows; relays name the STB only after the first.
    must("wallet pair" + w() + " --link " + link + " --code " + testing::pairing_code(stb()));
    EXPECT_NE(must("wallet relay" + w() + " --stb 1001 --link " + link + " --billing " + billing).find("0 purchases settled"),
              std::string::npos);
  }

  std::int64_t balance() { return cents(must("wallet balance" + w()), ": "); }
  std::string w() const { return " --home " + dir.file("wallet"); }
  std::string relay() const { return "wallet relay" + w() + " --stb 1001 --billing " + billing; }

  std::string billing, link;
  std::map<int, std::int64_t> price_;
  std::unique_ptr<Background> billing_proc, link_proc;
};

TEST_F(SettlementE2e, ImpulseBuysSettledThroughTheHandsetWithEverySettlementKind) {
  const auto start_balance = balance();
  ASSERT_EQ(start_balance, 90000);
  auto bought = must("stb buy --home " + stb() + " --event 1");
  EXPECT_NE(bought.find("on this STB's credit"), std::string::npos) << bought;
  auto refused = run(usher("stb buy --home " + stb() + " --event 2"));
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.output.find("credit limit 20.00 EUR reached"), std::string::npos) << refused.output;
  EXPECT_NE(must("stb history --home " + stb()).find("1 purchase not yet collected, last relay never"), std::string::npos);

  // Deferred: the handset relays, pays exactly the price, and the receipt frees the credit.
  auto relayed = must(relay());
  EXPECT_NE(relayed.find("1 purchase settled"), std::string::npos) << relayed;
  EXPECT_EQ(cents(relayed, "paid "), price_[1]) << relayed;
  EXPECT_EQ(balance(), start_balance - price_[1]);
  auto wrong = run(usher("wallet relay" + w() + " --stb 1002 --link " + link + " --billing " + billing));
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.output.find("is STB 1001, not STB 1002"), std::string::npos) << wrong.output;
  auto twice = must(relay());  // nothing new: nothing charged
  EXPECT_NE(twice.find("0 purchases settled"), std::string::npos) << twice;
  EXPECT_EQ(balance(), start_balance - price_[1]);
  EXPECT_NE(must("stb history --home " + stb()).find("0 purchases not yet collected, last relay on"), std::string::npos);
  must("stb buy --home " + stb() + " --event 2");

  // Prepayment: credit bought ahead, loaded into the STB, spent first.
  auto prepaid = must("wallet prepay" + w() + " --stb 1001 --amount 15.00 --link " + link + " --billing " + billing);
  EXPECT_NE(prepaid.find("loaded into the STB"), std::string::npos) << prepaid;
  EXPECT_NE(must("stb buy --home " + stb() + " --event 3").find("from prepaid credit"), std::string::npos);
  auto second = must(relay());
  EXPECT_NE(second.find("2 purchases settled"), std::string::npos) << second;
  EXPECT_EQ(cents(second, "paid "), price_[2]) << second;  // event 3 was prepaid
  EXPECT_EQ(balance(), start_balance - price_[1] - price_[2] - 1500);

  // Cash: bought on the handset and paid at once (F1), for the same STB.
  must("wallet buy" + w() + " --event 4 --stb 1001 --link " + link);
  EXPECT_EQ(balance(), start_balance - price_[1] - price_[2] - 1500 - price_[4]);
  // One sale per entitlement: the same event again on the handset, on impulse on the STB, or an
  // event the STB bought on impulse (relayed above) is refused, naming what it holds.
  auto again = run(usher("wallet buy" + w() + " --event 4 --stb 1001"));
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("already holds ticket"), std::string::npos) << again.output;
  auto impulse = run(usher("stb buy --home " + stb() + " --event 4"));
  EXPECT_EQ(impulse.status, 1);
  EXPECT_NE(impulse.output.find("already holds ticket"), std::string::npos) << impulse.output;
  auto bought_on_impulse = run(usher("wallet buy" + w() + " --event 1 --stb 1001"));
  EXPECT_EQ(bought_on_impulse.status, 1);
  EXPECT_NE(bought_on_impulse.output.find("already bought event 1"), std::string::npos) << bought_on_impulse.output;
  EXPECT_EQ(balance(), start_balance - price_[1] - price_[2] - 1500 - price_[4]);

  const auto statement = must("billing statement --home " + bil() + " --stb 1001");
  for (const char* kind : {"deferred", "prepaid", "prepayment", "cash"}) EXPECT_NE(statement.find(kind), std::string::npos) << statement;
  const auto total = price_[1] + price_[2] + 1500 + price_[4];
  EXPECT_EQ(cents(statement, "Total"), total) << statement;
  EXPECT_EQ(cents(must("billing statement --home " + bil() + " --account alice"), "Total"), total);
  const auto csv = must("billing statement --home " + bil() + " --stb 1001 --csv");
  EXPECT_NE(csv.find("time_utc,stb_id,kind,description"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",1001,deferred,Match1,1,1,"), std::string::npos) << csv;
}

TEST_F(SettlementE2e, KillNineAnywhereInTheRelayChargesEachPurchaseExactlyOnce) {
  const auto start_balance = balance();
  std::mt19937 rng(static_cast<unsigned>(std::time(nullptr)));
  RecordProperty("seed", static_cast<int>(rng()));
  std::int64_t bought = 0;
  int next_event = 1;
  const int trials = 50;
  int killed[3] = {0, 0, 0};
  int landed = 0;  // kills while the handset's relay round was still running
  // Kills are spread over the length of one relay round: measured here, then kept up to date from
  // every later round that settled something (the machine's load may change while the test runs).
  auto timed_relay = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run(usher(relay()));
    return std::make_pair(r, static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()));
  };
  // The median of the last rounds that settled something: one slow round (a restarted billing's
  // first answer, a loaded machine) must not push the kills past the end of the next ones.
  std::deque<long> recent{std::max<long>(5, timed_relay().second)};
  auto round_ms = [&] {
    std::vector<long> sorted(recent.begin(), recent.end());
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    return sorted[sorted.size() / 2];
  };
  long shortest = recent.front();
  long longest = recent.front();
  for (int trial = 0; trial < trials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    // One purchase, sometimes none, within the credit line.
    if (rng() % 4 != 0 && next_event <= kEvents) {
      auto r = run(usher("stb buy --home " + stb() + " --event " + std::to_string(next_event)));
      if (r.status == 0) bought += price_[next_event];
      ++next_event;
    }
    Background handset(usher(relay()) + " >/dev/null 2>>" + dir.file("relay.log"));
    // Within the first three quarters of a typical round, so that most kills land inside one.
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % static_cast<unsigned>(std::max<long>(5, round_ms() * 3 / 4))));
    const int victim = static_cast<int>(rng() % 3);
    ++killed[victim];
    landed += handset.running() ? 1 : 0;
    if (victim == 0) {
      handset.stop(SIGKILL);
    } else {
      auto& proc = victim == 1 ? *billing_proc : *link_proc;
      proc.stop(SIGKILL);
      proc.start();  // back at once: the handset's retries reach the new process
      handset.wait();
    }
    // Afterwards a plain relay settles whatever is left, and the books agree to the cent.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto [r, ms] = timed_relay();
    ASSERT_EQ(r.status, 0) << r.output;
    if (r.output.find("0 purchases settled") == std::string::npos) {
      recent.push_back(std::max<long>(5, ms));
      if (recent.size() > 5) recent.pop_front();
      shortest = std::min(shortest, ms);
      longest = std::max(longest, ms);
    }
    ASSERT_EQ(balance(), start_balance - bought);
    auto history = must("stb history --home " + stb());
    ASSERT_NE(history.find("0 purchases not yet collected"), std::string::npos) << history;
  }
  RecordProperty("kills_inside_a_round", landed);
  std::printf("kill -9: handset %d, billing %d, STB %d times; %d inside a relay round of ~%ld-%ld ms\n", killed[0], killed[1], killed[2],
              landed, shortest, longest);
  RecordProperty("relay_round_ms", static_cast<int>(round_ms()));
  // Most kills must land inside a round, or the trials test little (a kill after the round is a plain restart).
  EXPECT_GE(landed, trials / 3);
  RecordProperty("handset_killed", killed[0]);
  RecordProperty("billing_killed", killed[1]);
  RecordProperty("stb_killed", killed[2]);
  EXPECT_GT(next_event, 20);  // about 37 purchases expected in 50 trials
  const auto statement = must("billing statement --home " + bil() + " --stb 1001");
  EXPECT_EQ(cents(statement, "Total"), bought) << statement;
}

// Issue 10: two engines and two billings serve one PostgreSQL database, each pair from a copy of its
// home, each billing asking its own engine. The handset relays to either billing in turn while kill -9
// lands on any process (the handset, a billing, an engine, the STB's link), each restarted at once:
// every purchase is still charged exactly once, and both billings' books are the same books.
TEST_F(SettlementE2e, KillNineWithTwoEnginesAndTwoBillingsOnOneDatabaseChargesEachPurchaseOnce) {
  if (!testing::stores_on_postgresql()) GTEST_SKIP() << "two engines and two billings share their stores only on a database server";
  const auto more = testing::free_ports(2);
  ASSERT_EQ(more.size(), 2u);
  const std::string engine_b = "tcp://127.0.0.1:" + std::to_string(more[0]);
  const std::string billing_b = "tcp://127.0.0.1:" + std::to_string(more[1]);
  std::filesystem::copy(ent(), dir.file("ent-b"), std::filesystem::copy_options::recursive);
  std::filesystem::copy(bil(), dir.file("billing-b"), std::filesystem::copy_options::recursive);
  // The copies serve the same stores: a billing's engine is named at `serve`.
  Background engine_b_proc(usher("entitlement serve --home " + dir.file("ent-b") + " --bind " + engine_b) + " 2>>" + dir.file("engine-b.log"));
  Background billing_b_proc(usher("billing serve --home " + dir.file("billing-b") + " --bind " + billing_b + " --engine " + engine_b) + " 2>>" +
                            dir.file("billing-b.log"));
  ASSERT_TRUE(testing::wait_listening(more[0]));
  ASSERT_TRUE(testing::wait_listening(more[1]));

  const auto start_balance = balance();
  std::mt19937 rng(static_cast<unsigned>(std::time(nullptr)));
  RecordProperty("seed", static_cast<int>(rng()));
  std::int64_t bought = 0;
  int next_event = 1;
  constexpr int kTrials = 30;
  const char* names[] = {"handset", "billing A", "billing B", "engine A", "engine B", "STB link"};
  int killed[6] = {0, 0, 0, 0, 0, 0};
  int landed = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    if (rng() % 4 != 0 && next_event <= kEvents) {
      auto r = run(usher("stb buy --home " + stb() + " --event " + std::to_string(next_event)));
      if (r.status == 0) bought += price_[next_event];
      ++next_event;
    }
    const std::string to = trial % 2 == 0 ? billing : billing_b;
    Background handset(usher("wallet relay" + w() + " --stb 1001 --billing " + to) + " >/dev/null 2>>" + dir.file("relay.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    const int victim = static_cast<int>(rng() % 6);
    ++killed[victim];
    landed += handset.running() ? 1 : 0;
    if (victim == 0) {
      handset.stop(SIGKILL);
    } else {
      Background& proc = victim == 1 ? *billing_proc : victim == 2 ? billing_b_proc : victim == 3 ? *engine_proc : victim == 4 ? engine_b_proc : *link_proc;
      proc.stop(SIGKILL);
      proc.start();
      handset.wait();
    }
    ASSERT_TRUE(testing::wait_listening(ports[0]));
    ASSERT_TRUE(testing::wait_listening(more[0]));
    // A plain relay to the other billing settles whatever is left; the books agree to the cent.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    const std::string other = trial % 2 == 0 ? billing_b : billing;
    testing::Run r;
    for (int attempt = 0; attempt < 3; ++attempt) {  // a billing just restarted may still be binding
      r = run(usher("wallet relay" + w() + " --stb 1001 --billing " + other));
      if (r.status == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    ASSERT_EQ(r.status, 0) << r.output << "\nbilling A: " << file_text(dir.file("billing.log")).substr(0, 3000)
                           << "\nbilling B: " << file_text(dir.file("billing-b.log")).substr(0, 3000);
    ASSERT_EQ(balance(), start_balance - bought);
    auto history = must("stb history --home " + stb());
    ASSERT_NE(history.find("0 purchases not yet collected"), std::string::npos) << history;
  }
  std::string summary = "kill -9 with two engines and two billings:";
  for (int v = 0; v < 6; ++v) summary += std::string(" ") + names[v] + " " + std::to_string(killed[v]);
  std::printf("%s; %d while a relay was running\n", summary.c_str(), landed);
  EXPECT_GT(next_event, 12);
  // One set of books, whichever billing is asked.
  EXPECT_EQ(cents(must("billing statement --home " + bil() + " --stb 1001"), "Total"), bought);
  EXPECT_EQ(cents(must("billing statement --home " + dir.file("billing-b") + " --stb 1001"), "Total"), bought);
}

// Billing killed -9 after the engine charged the card for a settlement and before billing heard of
// it: the restarted billing finishes the settlement with the engine's first answer (the same request
// id), the handset's retry gets the receipt, and the card is charged once.
TEST_F(SettlementE2e, BillingKilledBetweenTheChargeAndTheSettlementChargesOnce) {
  const auto start_balance = balance();
  must("stb buy --home " + stb() + " --event 1");
  const auto via = endpoint(3);
  billing_proc->stop(SIGTERM);
  std::atomic<pid_t> victim{-1};
  ChargeInterceptor interceptor(via, engine, [&] { kill(victim.load(), SIGKILL); });
  Background proxied(usher("billing serve --home " + bil() + " --bind " + billing + " --engine " + via) + " 2>>" + dir.file("billing.log"));
  victim = proxied.pid();
  ASSERT_TRUE(testing::wait_listening(ports[1]));
  Background handset(usher(relay()) + " >" + dir.file("interrupted-relay.log") + " 2>&1");
  // Until the engine has answered the charge and billing is dead (the handset is still retrying).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!interceptor.intercepted() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(interceptor.intercepted());
  proxied.stop(SIGKILL);  // reaped
  EXPECT_EQ(balance(), start_balance - price_[1]);  // charged at the engine, billing never heard
  billing_proc->start();  // billing back, asking the engine directly
  EXPECT_EQ(handset.wait(), 0) << file_text(dir.file("interrupted-relay.log"));
  EXPECT_EQ(balance(), start_balance - price_[1]);
  EXPECT_NE(must(relay()).find("0 purchases settled"), std::string::npos);
  EXPECT_EQ(balance(), start_balance - price_[1]);
  EXPECT_NE(must("stb history --home " + stb()).find("0 purchases not yet collected"), std::string::npos);
  EXPECT_EQ(cents(must("billing statement --home " + bil() + " --stb 1001"), "Total"), price_[1]);
}

// The engine down during a relay: billing refuses it, saying so, and charges nothing; with the
// engine back the same relay settles, once.
TEST_F(SettlementE2e, TheEngineDownDuringARelayIsRefusedThenSettlesOnceWhenItIsBack) {
  const auto start_balance = balance();
  must("stb buy --home " + stb() + " --event 2");
  engine_proc->stop(SIGKILL);
  auto refused = run(usher(relay()));
  EXPECT_NE(refused.status, 0) << refused.output;
  EXPECT_NE(refused.output.find("did not answer"), std::string::npos) << refused.output;
  EXPECT_NE(must("stb history --home " + stb()).find("1 purchase not yet collected"), std::string::npos);
  engine_proc->start();
  ASSERT_TRUE(testing::wait_listening(ports[0]));
  EXPECT_EQ(balance(), start_balance);
  auto settled = must(relay());
  EXPECT_NE(settled.find("1 purchase"), std::string::npos) << settled;
  EXPECT_EQ(balance(), start_balance - price_[2]);
  EXPECT_NE(must(relay()).find("0 purchases settled"), std::string::npos);
  EXPECT_EQ(balance(), start_balance - price_[2]);
  EXPECT_NE(must("stb history --home " + stb()).find("0 purchases not yet collected"), std::string::npos);
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

std::string whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Billing's keys reach the operator as billing.pub and come back certified as a file: no home is
// shared. Until the certificate is installed billing does not serve; a certificate for other keys
// is refused; billing's home never names the operator's.
TEST(BillingCertification, BillingIsCertifiedFromItsPublicFileWithNoHomeShared) {
  testing::TempDir dir;
  const auto ent = dir.file("operator-home");
  const auto bil = dir.file("billing");
  ASSERT_EQ(run(usher("entitlement init --home " + ent)).status, 0);
  auto init = run(usher("billing init --home " + bil + " --operator " + ent + "/operator.pub"));
  ASSERT_EQ(init.status, 0) << init.output;
  EXPECT_NE(init.output.find("usher entitlement billing add"), std::string::npos) << init.output;
  ASSERT_TRUE(std::filesystem::exists(bil + "/billing.pub"));

  // Not certified yet: serve refuses at once, saying how.
  const auto port = testing::free_ports(1).at(0);
  auto refused = run(usher("billing serve --home " + bil + " --bind tcp://127.0.0.1:" + std::to_string(port)) + " 2>&1");
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("not certified yet"), std::string::npos) << refused.output;

  // Neither a certificate nor the operator's home: a usage error.
  EXPECT_EQ(run(usher("billing certify --home " + bil) + " 2>&1").status, 2);

  // Another billing's certificate is refused and changes nothing.
  const auto other = dir.file("billing-2");
  ASSERT_EQ(run(usher("billing init --home " + other + " --id 2 --operator " + ent + "/operator.pub")).status, 0);
  ASSERT_EQ(run(usher("entitlement billing add --home " + ent + " --public-file " + other + "/billing.pub --out " + dir.file("b2.cert"))).status, 0);
  auto wrong = run(usher("billing certify --home " + bil + " --certificate " + dir.file("b2.cert")) + " 2>&1");
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.output.find("other keys than this billing's"), std::string::npos) << wrong.output;

  auto added = run(usher("entitlement billing add --home " + ent + " --public-file " + bil + "/billing.pub --out " + dir.file("b1.cert")));
  ASSERT_EQ(added.status, 0) << added.output;
  auto certified = run(usher("billing certify --home " + bil + " --certificate " + dir.file("b1.cert")));
  ASSERT_EQ(certified.status, 0) << certified.output;
  EXPECT_NE(certified.output.find("billing 1 certified by the operator"), std::string::npos) << certified.output;

  // Billing's home holds nothing that names the operator's home.
  for (const auto& entry : std::filesystem::directory_iterator(bil)) {
    EXPECT_EQ(whole_file(entry.path().string()).find("operator-home"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace usher
