// Billing (flow F4):
//  - history_signature_check: the baseline, records per second through verify_history alone
//    (Ed25519 verification and the hash chain), the work no settlement can skip;
//  - history_settled: records settled per second through BillingStore: open the sealed history,
//    verify, price from the catalogue, quote, charge the card through the engine's ledger once,
//    sign the receipt; SQLite WAL with synchronous=FULL in both the engine's and billing's files.
//    100 records per relay (a month of impulse purchases is far fewer; this is the busy case);
//  - relay_round_trip: one whole round as `usher wallet relay` runs it: the STB's link and billing
//    on ZeroMQ loopback, collect, relay, pay, receipt back to the STB; against zmq_echo_round_trip,
//    one empty ZeroMQ request/reply;
//  - settlements_concurrent/N: N handsets at once, each relaying and paying one-record histories
//    of its own STB to one billing service over ZeroMQ loopback; settlements per second, against
//    the same with one handset (billing's group commit shares disk syncs between handsets).
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <thread>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "synthetic_stb.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/billing_store.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/stb/local_link.h"
#include "usher/wallet_bridge/wallet.h"

namespace {

using namespace usher;
const entitlement::Currency kEur{'E', 'U', 'R'};
constexpr std::uint64_t kT0 = 4'000'000'000;
constexpr int kRecordsPerRelay = 100;

using bench::SyntheticStb;

struct Books {
  testing::BroadcastWorld world;
  std::optional<testing::TestCard> handset;
  std::uint64_t card = 0;
  std::optional<billing::BillingStore> billing;
  Books() {
    world.add_service(1);
    world.add_event(7, 1, kT0, 3600, 1, "Bench");
    handset.emplace(world.store(), "bench", 2'000'000);
    card = handset->card_id();
    billing.emplace(usher::testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint()).value());
  }
  entitlement::SpendAuthorization spend(const entitlement::Quote& q) { return handset->spend(q.amount, q.payee); }
};

void set_records(benchmark::State& state, std::int64_t records) {
  state.counters["records_per_s"] = benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
}

void BM_HistorySignatureCheck(benchmark::State& state) {
  Books books;
  SyntheticStb stb(books.world.store(), 2001);
  const auto records = stb.next(kRecordsPerRelay, kT0);
  const auto pub = stb.signing.public_key;
  for (auto _ : state) {
    if (!entitlement::verify_history(records, pub, 0, {})) state.SkipWithError("chain does not verify");
  }
  set_records(state, static_cast<std::int64_t>(state.iterations()) * kRecordsPerRelay);
}
BENCHMARK(BM_HistorySignatureCheck)->Name("history_signature_check")->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HistorySettled(benchmark::State& state) {
  Books books;
  SyntheticStb stb(books.world.store(), 2001);
  std::int64_t settled = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto sealed = stb.seal(stb.next(kRecordsPerRelay, kT0), books.billing->certificate());
    state.ResumeTiming();
    auto reply = books.billing->relay(sealed, books.card, kT0);
    if (!reply || !reply->has_quote) {
      state.SkipWithError(reply ? "no quote" : reply.error().message.c_str());
      break;
    }
    auto receipt = books.billing->pay(reply->quote.settlement_id, books.spend(reply->quote), kT0);
    if (!receipt) {
      state.SkipWithError(receipt.error().message.c_str());
      break;
    }
    settled += static_cast<std::int64_t>(receipt->last_sequence - receipt->first_sequence + 1);
  }
  set_records(state, settled);
}
BENCHMARK(BM_HistorySettled)->Name("history_settled")->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ZmqEcho(benchmark::State& state) {
  net::ReplyServer server("tcp://127.0.0.1:*", [](std::span<const std::uint8_t> r) { return std::vector<std::uint8_t>(r.begin(), r.end()); });
  std::atomic<bool> stop{false};
  std::thread t([&] { server.run(stop); });
  net::RequestClient client(server.endpoint());
  const std::vector<std::uint8_t> ping(32, 1);
  for (auto _ : state) {
    if (!client.call(ping)) state.SkipWithError("no echo");
  }
  stop = true;
  t.join();
}
BENCHMARK(BM_ZmqEcho)->Name("zmq_echo_round_trip")->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_RelayRoundTrip(benchmark::State& state) {
  Books books;
  const int rounds = 300;
  auto& se = books.world.add_stb(1001);
  // Events added after the credit line are offered to the STB one EMM each.
  (void)books.world.store().set_credit(1001, {1'000'000, kEur}, kT0);
  (void)books.world.store().batch([&] {
    for (int e = 100; e < 100 + rounds + 10; ++e) books.world.add_event(static_cast<std::uint32_t>(e), 1, kT0 + 3600 * static_cast<std::uint64_t>(e), 3600, 1, "E");
  });
  for (const auto& emm : books.world.store().emm_sections(0)) (void)se.apply_emm(emm);
  // One card pays for every handset: the benchmark measures billing, not the per-card limit.
  billing::BillingService service(*books.billing, RateLimiter::Rate{1U << 30, 1U << 30});
  net::ReplyServer billing_server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([&](const auto& r) { return service.handle_batch(r); }));
  // The link serves its own connection to the STB's files, as `usher stb link` does.
  auto link_se = stb::SecureElement::open(books.world.stb_home(1001)).value();
  stb::LocalLink link(link_se, books.world.stb_home(1001));
  net::ReplyServer link_server("tcp://127.0.0.1:*", [&](std::span<const std::uint8_t> r) { return link.handle(r); });
  entitlement::TestAcquirer acquirer;
  entitlement::EngineService engine(books.world.store(), acquirer, {{1U << 30, 1U << 30}, {1U << 30, 1U << 30}});
  net::ReplyServer engine_server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([&](const auto& r) { return engine.handle_batch(r); }));
  std::atomic<bool> stop{false};
  std::thread t1([&] { billing_server.run(stop); });
  std::thread t2([&] { link_server.run(stop); });
  std::thread t3([&] { engine_server.run(stop); });
  auto op = entitlement::OperatorPublicFile::read(books.world.dir().file("operator/operator.pub")).value();
  auto w = wallet::Wallet::init(books.world.dir().file("wallet"), "bench", kEur, engine_server.endpoint(), op).value();
  (void)w.top_up(100'000, "visa");
  const std::string code = link.pairing_code();  // a copy: the link shows a new one once paired
  (void)w.pair(link_server.endpoint(), code);
  std::uint32_t event = 100;
  for (auto _ : state) {
    state.PauseTiming();
    if (auto bought = se.impulse_buy(event++, kT0); !bought) {
      state.SkipWithError(bought.error().message.c_str());
      break;
    }
    state.ResumeTiming();
    auto out = w.relay_history(link_server.endpoint(), billing_server.endpoint());
    if (!out || out->records_settled != 1) {
      state.SkipWithError(out ? "nothing settled" : out.error().message.c_str());
      break;
    }
  }
  stop = true;
  t1.join();
  t2.join();
  t3.join();
}
BENCHMARK(BM_RelayRoundTrip)->Name("relay_round_trip")->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(200);

void BM_SettlementsConcurrent(benchmark::State& state) {
  const auto clients = static_cast<int>(state.range(0));
  constexpr int kPerClient = 10;  // settlements in a row per handset per iteration
  Books books;
  std::vector<std::unique_ptr<SyntheticStb>> stbs;
  for (int i = 0; i < clients; ++i) stbs.push_back(std::make_unique<SyntheticStb>(books.world.store(), static_cast<std::uint32_t>(3000 + i)));
  // One card pays for every handset: the benchmark measures billing, not the per-card limit.
  billing::BillingService service(*books.billing, RateLimiter::Rate{1U << 30, 1U << 30});
  net::ReplyServer server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([&](const auto& r) { return service.handle_batch(r); }));
  std::atomic<bool> stop{false};
  std::thread serving([&] { server.run(stop); });
  std::vector<std::unique_ptr<wallet::BillingClient>> handsets;
  for (int i = 0; i < clients; ++i) handsets.push_back(std::make_unique<wallet::BillingClient>(server.endpoint()));
  std::atomic<int> failures{0};
  std::int64_t settled = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::vector<std::vector<std::uint8_t>>> sealed(static_cast<std::size_t>(clients));
    for (int i = 0; i < clients; ++i) {
      auto& stb = *stbs[static_cast<std::size_t>(i)];
      for (int k = 0; k < kPerClient; ++k) sealed[static_cast<std::size_t>(i)].push_back(stb.seal(stb.next(1, kT0), books.billing->certificate()));
    }
    state.ResumeTiming();
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        auto& billing = *handsets[static_cast<std::size_t>(i)];
        for (const auto& history : sealed[static_cast<std::size_t>(i)]) {
          auto reply = billing.relay({history, books.card}, books.handset->signer());
          if (!reply || !reply->has_quote || !billing.pay({reply->quote.settlement_id, books.spend(reply->quote)})) ++failures;
        }
      });
    }
    for (auto& t : threads) t.join();
    settled += static_cast<std::int64_t>(clients) * kPerClient;
  }
  stop = true;
  serving.join();
  if (failures > 0) state.SkipWithError("a settlement failed");
  state.counters["settlements_per_s"] = benchmark::Counter(static_cast<double>(settled), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SettlementsConcurrent)->Name("settlements_concurrent")->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
