// The engine's store on each backend (issue 10, section 4), measured through the real path: a wallet
// EngineClient -> ZeroMQ on loopback -> EngineService (a group of waiting requests in one
// transaction) -> the store.
//  - purchases_backend/B/C: purchases per second (counter purchases_per_s) with C clients at once
//    (1, 8, 32), every purchase another (event, STB) pair, each client paying with a card of its
//    own. B is where the store is:
//      0  SQLite, WAL with synchronous=FULL (the embedded default; the baseline of the same run);
//      1  one engine on PostgreSQL;
//      2  two engines on one PostgreSQL database, as two engine processes would run: each its own
//         EntitlementStore opened from its own copy of the operator's home, its own EngineService
//         and ReplyServer thread; client c talks to engine c % 2.
//  - purchases_backend_turns/C: the three backends taking turns round by round (one round: C
//    clients buying 50 each), with the ratios of PostgreSQL's purchases per second to SQLite's
//    measured at the same moments: on a shared machine, steadier than purchases_backend's.
//  - purchase_round_trip/B (B = 0, 1): one purchase at a time, the time of each, for the ratio to
//    zmq_echo_round_trip (billing_bench.cc) that ratio_main.cc prints.
//  - postgres_statement_round_trip: one SELECT 1 to the same server, the cost of each of the
//    statements a purchase on PostgreSQL sends one after the other.
//  - settlements_backend/B/C: settlements per second (counter settlements_per_s) as billing_bench.cc's
//    settlements_concurrent measures them: C handsets relaying and paying one-record histories
//    over ZeroMQ, billing asking the engine over ZeroMQ. B as above for the engine's and billing's
//    stores both (on PostgreSQL in one database, schemas "engine" and "billing"); with B = 2 two
//    billings (one from a copy of the other's home) each ask their own engine, client c relaying to
//    billing c % 2.
// The PostgreSQL server is this process's own (tests/support/postgres_server.h), started once, in
// its durable mode: fsync and synchronous_commit on, so that a purchase is on disk before its reply
// as it is with SQLite. Its data directory and the SQLite files are both under $TMPDIR (else /tmp):
// the same disk for both. Where PostgreSQL cannot start, its benchmarks are skipped saying why.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broadcast_fixture.h"
#include "postgres_server.h"
#include "synthetic_stb.h"
#include "temp_dir.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"
#include "usher/core/postgres.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/store.h"
#include "usher/wallet_bridge/wallet.h"

namespace {

using namespace usher;
const entitlement::Currency kEur{'E', 'U', 'R'};
constexpr std::uint64_t kT0 = 4'000'000'000;
constexpr std::uint16_t kCaSystemId = 0x4AFF;
constexpr int kPurchasesPerClient = 50;  // in a row, per client per iteration
constexpr int kMaxClients = 32;

// Where the engine's store is (the benchmarks' first argument).
enum Backend : std::int64_t { sqlite_file = 0, postgres_one_engine = 1, postgres_two_engines = 2 };

// Whether the server really syncs every commit: a benchmark against SQLite's synchronous=FULL on a
// server that does not would flatter PostgreSQL.
Status check_durable(usher::testing::PostgresServer& server) {
  USHER_TRY(auto db, pg::Connection::open(server.url()));
  return db.serializable("read the server's settings", [](pqxx::transaction_base& tx) -> Status {
    for (const char* setting : {"fsync", "synchronous_commit", "full_page_writes"}) {
      const auto value = tx.exec1(std::string("SELECT current_setting('") + setting + "')")[0].as<std::string>();
      if (value != "on") return make_error(Errc::storage, std::string("the benchmark's server runs with ") + setting + "=" + value);
    }
    return ok_status();
  });
}

// The process's durable PostgreSQL server, started (and checked) at the first call; the same error
// on every call when it could not.
Result<usher::testing::PostgresServer*> durable_server() {
  static Result<std::unique_ptr<usher::testing::PostgresServer>> server = []() -> Result<std::unique_ptr<usher::testing::PostgresServer>> {
    USHER_TRY(auto started, usher::testing::PostgresServer::start(usher::testing::Durability::durable));
    USHER_CHECK(check_durable(*started));
    return started;
  }();
  if (!server) return make_error(server.error().code, "PostgreSQL cannot be started here: " + server.error().message);
  return server->get();
}

// Where a new store goes on the backend: "" (a SQLite file in its home), or a new database of the
// durable server.
Result<std::string> database_url(Backend backend) {
  if (backend == sqlite_file) return std::string();
  USHER_TRY(auto server, durable_server());
  return server->create_database();
}

// Per-card limits (and the engine's limit on registrations) out of the way: the benchmarks measure
// the stores.
constexpr RateLimiter::Rate kUnlimited{1U << 30, 1U << 30};

// One engine as `usher entitlement serve` runs it: EngineService on a ReplyServer, in a thread.
struct ServedEngine {
  entitlement::TestAcquirer acquirer;
  entitlement::EngineService service;
  net::ReplyServer server;
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit ServedEngine(entitlement::EntitlementStore& store)
      : service(store, acquirer, {kUnlimited, kUnlimited}),
        server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([this](const auto& r) { return service.handle_batch(r); })),
        thread([this] { server.run(stop); }) {}
  ServedEngine(const ServedEngine&) = delete;
  ServedEngine& operator=(const ServedEngine&) = delete;
  ~ServedEngine() {
    stop = true;
    thread.join();
  }
};

// The operator's store with what the purchases need, on the benchmark's backend, served by one or
// two engines over ZeroMQ until it goes.
class Shop {
 public:
  // One sale per entitlement: kStbs boxes and kEvents one-minute events, kStbs * kEvents purchases.
  static constexpr std::uint32_t kStbs = 32;
  static constexpr std::uint32_t kEvents = 1000;

  // Errc codes as the store gives them; where PostgreSQL cannot start, its reason.
  static Result<std::unique_ptr<Shop>> open(Backend backend, int clients) {
    std::unique_ptr<Shop> shop(new Shop());
    const std::string home = shop->dir_.file("operator");
    USHER_TRY(auto url, database_url(backend));
    USHER_TRY(auto store, entitlement::EntitlementStore::create(home, kCaSystemId, url));
    shop->stores_.push_back(std::make_unique<entitlement::EntitlementStore>(std::move(store)));
    USHER_CHECK(shop->fill(*shop->stores_.front(), clients));
    if (backend == postgres_two_engines) {
      // A second engine of the same operator: a copy of the first one's home (its keys and the
      // database's URL), as another machine would hold.
      const std::string second = shop->dir_.file("operator-b");
      std::filesystem::copy(home, second, std::filesystem::copy_options::recursive);
      USHER_TRY(auto other, entitlement::EntitlementStore::open(second));
      shop->stores_.push_back(std::make_unique<entitlement::EntitlementStore>(std::move(other)));
    }
    for (auto& s : shop->stores_) shop->engines_.push_back(std::make_unique<ServedEngine>(*s));
    // Client c talks to engine c % engines: the engines take turns.
    for (int c = 0; c < clients; ++c) {
      shop->handsets_.push_back(std::make_unique<wallet::EngineClient>(shop->endpoint(c)));
    }
    return shop;
  }

  Shop(const Shop&) = delete;
  Shop& operator=(const Shop&) = delete;
  ~Shop() = default;

  // The endpoint client `c` talks to.
  [[nodiscard]] std::string endpoint(int client) const {
    return engines_[static_cast<std::size_t>(client) % engines_.size()]->server.endpoint();
  }
  // One round: every client buys kPurchasesPerClient tickets in a row, all clients at once. The
  // purchases that failed.
  int round() {
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < handsets_.size(); ++c) {
      threads.emplace_back([&, c] {
        for (int i = 0; i < kPurchasesPerClient; ++i) {
          auto purchase = next_purchase(static_cast<int>(c));
          if (!purchase || !handsets_[c]->buy_ticket(*purchase)) ++failures;
        }
      });
    }
    for (auto& t : threads) t.join();
    return failures;
  }
  [[nodiscard]] std::int64_t purchases_per_round() const { return std::int64_t{kPurchasesPerClient} * std::ssize(handsets_); }
  // The next purchase, paid with client `c`'s card: another (event, STB) pair each time; nullopt
  // when every pair is sold.
  std::optional<entitlement::BuyTicketRequest> next_purchase(int client) {
    const auto n = sold_++;
    if (n >= kStbs * kEvents) return std::nullopt;
    const auto& card = cards_.at(static_cast<std::size_t>(client));
    entitlement::BuyTicketRequest q{1 + n / kStbs, 1001 + n % kStbs, {}, 0};
    q.spend.card_id = card.card_id;
    q.spend.amount = {1, kEur};
    q.spend.payee = entitlement::payee_for(q.event_id, q.stb_id);
    crypto::random_bytes(q.spend.nonce);
    q.spend.sign(card.keys.private_key);
    return q;
  }

 private:
  // A card of a handset, registered and topped up straight in the store.
  struct Card {
    std::uint64_t card_id = 0;
    crypto::Ed25519KeyPair keys = crypto::Ed25519KeyPair::generate();
  };

  Shop() = default;

  Status fill(entitlement::EntitlementStore& store, int clients) {
    USHER_CHECK(store.add_service(1, "Bench"));
    for (std::uint32_t s = 0; s < kStbs; ++s) {
      USHER_CHECK(store.register_stb({1001 + s, crypto::X25519KeyPair::generate().public_key,
                                      crypto::Ed25519KeyPair::generate().public_key}));
    }
    Status added = ok_status();
    USHER_CHECK(store.batch([&] {
      for (std::uint32_t e = 1; e <= kEvents && added; ++e) {
        entitlement::EventInfo event;
        event.event_id = e;
        event.service_id = 1;
        event.start = kT0 + 60 * std::uint64_t{e};
        event.duration = 60;
        event.title = "Bench";
        event.price = {1, kEur};
        if (auto r = store.add_event(event); !r) added = r.error();
      }
    }));
    USHER_CHECK(added);
    entitlement::TestAcquirer acquirer;
    for (int c = 0; c < clients; ++c) {
      Card card;
      USHER_TRY(auto info, store.register_handset("bench-" + std::to_string(c), card.keys.public_key, kEur));
      card.card_id = info.card_id;
      USHER_CHECK(store.top_up(card.card_id, 100'000, "visa", acquirer));
      cards_.push_back(std::move(card));
    }
    return ok_status();
  }

  usher::testing::TempDir dir_;
  std::vector<std::unique_ptr<entitlement::EntitlementStore>> stores_;  // before the engines: they outlive them
  std::vector<std::unique_ptr<ServedEngine>> engines_;
  std::vector<Card> cards_;
  std::vector<std::unique_ptr<wallet::EngineClient>> handsets_;  // one per client, with its card
  std::atomic<std::uint32_t> sold_{0};
};

void BM_PurchasesOnBackend(benchmark::State& state) {
  auto shop = Shop::open(static_cast<Backend>(state.range(0)), static_cast<int>(state.range(1)));
  if (!shop) {
    state.SkipWithError(shop.error().message.c_str());
    return;
  }
  int failures = 0;
  std::int64_t done = 0;
  for (auto _ : state) {
    failures += (*shop)->round();
    done += (*shop)->purchases_per_round();
  }
  if (failures > 0) state.SkipWithError("a purchase failed");
  state.counters["purchases_per_s"] = benchmark::Counter(static_cast<double>(done), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PurchasesOnBackend)
    ->Name("purchases_backend")
    ->ArgsProduct({{sqlite_file, postgres_one_engine, postgres_two_engines}, {1, 8, kMaxClients}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The three backends taking turns round by round, C clients each, so that the load of a shared
// machine falls on all three alike (purchases_backend/B/C times them one after the other, minutes
// apart). Counters: each backend's purchases per second over its own rounds, and PostgreSQL's as a
// ratio to SQLite's.
void BM_PurchasesBackendsTakingTurns(benchmark::State& state) {
  const int clients = static_cast<int>(state.range(0));
  std::vector<std::unique_ptr<Shop>> shops;
  for (Backend backend : {sqlite_file, postgres_one_engine, postgres_two_engines}) {
    auto shop = Shop::open(backend, clients);
    if (!shop) {
      state.SkipWithError(shop.error().message.c_str());
      return;
    }
    shops.push_back(std::move(*shop));
  }
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::duration> spent(shops.size());
  int failures = 0;
  for (auto _ : state) {
    for (std::size_t b = 0; b < shops.size(); ++b) {
      const auto start = Clock::now();
      failures += shops[b]->round();
      spent[b] += Clock::now() - start;
    }
  }
  if (failures > 0) state.SkipWithError("a purchase failed");
  auto per_second = [&](std::size_t b) {
    return static_cast<double>(state.iterations() * shops[b]->purchases_per_round()) / std::chrono::duration<double>(spent[b]).count();
  };
  state.counters["sqlite_per_s"] = per_second(0);
  state.counters["pg1_per_s"] = per_second(1);
  state.counters["pg2_per_s"] = per_second(2);
  state.counters["pg1_ratio"] = per_second(1) / per_second(0);
  state.counters["pg2_ratio"] = per_second(2) / per_second(0);
}
BENCHMARK(BM_PurchasesBackendsTakingTurns)
    ->Name("purchases_backend_turns")
    ->Arg(1)
    ->Arg(8)
    ->Arg(kMaxClients)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_PurchaseRoundTrip(benchmark::State& state) {
  auto shop = Shop::open(static_cast<Backend>(state.range(0)), 1);
  if (!shop) {
    state.SkipWithError(shop.error().message.c_str());
    return;
  }
  wallet::EngineClient handset((*shop)->endpoint(0));
  // Signed before the clock starts: the round trip is the wire, the engine and the store.
  std::vector<entitlement::BuyTicketRequest> purchases;
  for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i) {
    auto purchase = (*shop)->next_purchase(0);
    if (!purchase) {
      state.SkipWithError("more iterations than purchases to sell");
      return;
    }
    purchases.push_back(std::move(*purchase));
  }
  std::size_t next = 0;
  for (auto _ : state) {
    if (auto bought = handset.buy_ticket(purchases[next++]); !bought) {
      state.SkipWithError(bought.error().message.c_str());
      break;
    }
  }
}
BENCHMARK(BM_PurchaseRoundTrip)
    ->Name("purchase_round_trip")
    ->Arg(sqlite_file)
    ->Arg(postgres_one_engine)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// One statement to the durable server and its answer (SELECT 1, through the storage interface as
// the stores send theirs): the unit a PostgreSQL store pays per statement, against which
// purchase_round_trip/1 is read (ratio_main.cc).
void BM_PostgresStatementRoundTrip(benchmark::State& state) {
  auto server = durable_server();
  if (!server) {
    state.SkipWithError(server.error().message.c_str());
    return;
  }
  auto url = (*server)->create_database();
  if (!url) {
    state.SkipWithError(url.error().message.c_str());
    return;
  }
  auto db = sql::open_postgres(*url, "bench");
  if (!db) {
    state.SkipWithError(db.error().message.c_str());
    return;
  }
  auto select = db->prepare("SELECT 1");
  for (auto _ : state) {
    if (!select.step()) state.SkipWithError("SELECT 1 gave no row");
    select.reset();
  }
}
BENCHMARK(BM_PostgresStatementRoundTrip)->Name("postgres_statement_round_trip")->Unit(benchmark::kMicrosecond)->UseRealTime();

// Billing's counter as the settlements need it: the operator's store on the backend with event 7
// and a card that pays, one or two engines serving it, and as many billings (certified by the
// operator, each asking its own engine; a second one opened from a copy of the first one's home),
// each a BillingService on a ReplyServer in a thread.
class SettlementDesk {
 public:
  static Result<std::unique_ptr<SettlementDesk>> open(Backend backend, int clients) {
    std::unique_ptr<SettlementDesk> desk(new SettlementDesk());
    const std::string home = desk->dir_.file("operator");
    USHER_TRY(auto url, database_url(backend));
    USHER_TRY(auto created, entitlement::EntitlementStore::create(home, kCaSystemId, url));
    auto& store = *desk->stores_.emplace_back(std::make_unique<entitlement::EntitlementStore>(std::move(created)));
    entitlement::EventInfo event;
    event.event_id = 7;
    event.service_id = 1;
    event.start = kT0;
    event.duration = 3600;
    event.title = "Bench";
    event.price = {1, kEur};
    USHER_CHECK(store.add_service(1, "Bench"));
    USHER_CHECK(store.add_event(event));
    desk->handset_.emplace(store, "bench", 2'000'000);
    for (int i = 0; i < clients; ++i) {
      desk->stbs_.push_back(std::make_unique<bench::SyntheticStb>(store, static_cast<std::uint32_t>(3000 + i)));
    }
    // The engines billing asks, each on its own connection to the operator's store, as `usher
    // entitlement serve` holds one: the first from the operator's home, a second from a copy.
    std::vector<std::string> homes{home};
    if (backend == postgres_two_engines) {
      homes.push_back(desk->dir_.file("operator-b"));
      std::filesystem::copy(home, homes.back(), std::filesystem::copy_options::recursive);
    }
    for (const auto& h : homes) {
      USHER_TRY(auto served, entitlement::EntitlementStore::open(h));
      desk->engines_.push_back(std::make_unique<ServedEngine>(*desk->stores_.emplace_back(
          std::make_unique<entitlement::EntitlementStore>(std::move(served)))));
    }
    // Billing as an operator makes it: init (on the same database as the engine, schema
    // "billing"), the operator certifying billing.pub, billing installing the certificate.
    const std::string billing_home = desk->dir_.file("billing");
    USHER_TRY(auto op, entitlement::OperatorPublicFile::read(home + "/" + entitlement::OperatorPublicFile::kFileName));
    USHER_TRY(auto billing, billing::BillingStore::create(billing_home, 1, op, desk->engines_[0]->server.endpoint(), url));
    const auto pub = billing.public_file();
    USHER_CHECK(billing.install_certificate(store.certify_billing(pub.billing_id, pub.ed25519_public, pub.x25519_public, unix_now())));
    desk->billings_.push_back(std::make_unique<ServedBilling>(std::move(billing)));
    if (backend == postgres_two_engines) {
      const std::string second = desk->dir_.file("billing-b");
      std::filesystem::copy(billing_home, second, std::filesystem::copy_options::recursive);
      USHER_TRY(auto other, billing::BillingStore::open(second, desk->engines_[1]->server.endpoint()));
      desk->billings_.push_back(std::make_unique<ServedBilling>(std::move(other)));
    }
    // Client c relays to billing c % billings.
    for (int c = 0; c < clients; ++c) {
      desk->handsets_.push_back(
          std::make_unique<wallet::BillingClient>(desk->billings_[static_cast<std::size_t>(c) % desk->billings_.size()]->server.endpoint()));
    }
    return desk;
  }

  SettlementDesk(const SettlementDesk&) = delete;
  SettlementDesk& operator=(const SettlementDesk&) = delete;
  ~SettlementDesk() = default;

  // Each client's next `per_client` one-record histories, sealed for billing (the certificate is the
  // same for every billing of the id).
  std::vector<std::vector<std::vector<std::uint8_t>>> seal_next(int per_client) {
    std::vector<std::vector<std::vector<std::uint8_t>>> sealed(stbs_.size());
    for (std::size_t i = 0; i < stbs_.size(); ++i) {
      for (int k = 0; k < per_client; ++k) sealed[i].push_back(stbs_[i]->seal(stbs_[i]->next(1, kT0), billings_[0]->store.certificate()));
    }
    return sealed;
  }
  // Every client relays and pays its histories, all clients at once. The settlements that failed.
  int settle(const std::vector<std::vector<std::vector<std::uint8_t>>>& sealed) {
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < handsets_.size(); ++i) {
      threads.emplace_back([&, i] {
        auto& billing = *handsets_[i];
        for (const auto& history : sealed[i]) {
          auto reply = billing.relay({history, handset_->card_id()}, handset_->signer());
          if (!reply || !reply->has_quote ||
              !billing.pay({reply->quote.settlement_id, handset_->spend(reply->quote.amount, reply->quote.payee)})) {
            ++failures;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    return failures;
  }

 private:
  // One billing as `usher billing serve` runs it.
  struct ServedBilling {
    billing::BillingStore store;
    billing::BillingService service;
    net::ReplyServer server;
    std::atomic<bool> stop{false};
    std::thread thread;
    explicit ServedBilling(billing::BillingStore s)
        : store(std::move(s)),
          service(store, kUnlimited),
          server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([this](const auto& r) { return service.handle_batch(r); })),
          thread([this] { server.run(stop); }) {}
    ServedBilling(const ServedBilling&) = delete;
    ServedBilling& operator=(const ServedBilling&) = delete;
    ~ServedBilling() {
      stop = true;
      thread.join();
    }
  };

  SettlementDesk() = default;

  usher::testing::TempDir dir_;
  std::vector<std::unique_ptr<entitlement::EntitlementStore>> stores_;  // before the engines: they outlive them
  std::optional<usher::testing::TestCard> handset_;
  std::vector<std::unique_ptr<bench::SyntheticStb>> stbs_;
  std::vector<std::unique_ptr<ServedEngine>> engines_;    // before the billings: they outlive them
  std::vector<std::unique_ptr<ServedBilling>> billings_;
  std::vector<std::unique_ptr<wallet::BillingClient>> handsets_;
};

void BM_SettlementsOnBackend(benchmark::State& state) {
  constexpr int kPerClient = 10;  // settlements in a row per handset per iteration
  auto desk = SettlementDesk::open(static_cast<Backend>(state.range(0)), static_cast<int>(state.range(1)));
  if (!desk) {
    state.SkipWithError(desk.error().message.c_str());
    return;
  }
  int failures = 0;
  std::int64_t settled = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto sealed = (*desk)->seal_next(kPerClient);
    state.ResumeTiming();
    failures += (*desk)->settle(sealed);
    settled += state.range(1) * kPerClient;
  }
  if (failures > 0) state.SkipWithError("a settlement failed");
  state.counters["settlements_per_s"] = benchmark::Counter(static_cast<double>(settled), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SettlementsOnBackend)
    ->Name("settlements_backend")
    ->ArgsProduct({{sqlite_file, postgres_one_engine, postgres_two_engines}, {1, 8, kMaxClients}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
