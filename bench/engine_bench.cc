// The entitlement engine and the STB's key path:
//  - purchases per second end to end: wallet client -> ZeroMQ (loopback TCP) -> engine -> SQLite
//    (WAL, synchronous=FULL: every purchase is durable before its reply), one client at a time and
//    with 8 concurrent clients;
//  - EMMs generated per second: sealing a grant EMM for an STB whose key is derived (per-STB key
//    cached, as a carousel generator would), and the full store path (X25519 + SQLite) for contrast;
//  - ECM to control word in the STB: secure element opens the ECM, checks the entitlement, the
//    descrambler installs the keys.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include "broadcast_fixture.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/descrambler.h"
#include "usher/wallet_bridge/wallet.h"

namespace {

using namespace usher;
const entitlement::Currency kEur{'E', 'U', 'R'};
constexpr std::uint64_t kT0 = 4'000'000'000;

struct Engine {
  // One sale per entitlement: every purchase is of another (event, STB) pair, so the bench has
  // kStbs boxes and kEvents one-minute events to sell (kStbs * kEvents purchases in all).
  static constexpr std::uint32_t kStbs = 16;
  static constexpr std::uint32_t kEvents = 4000;
  usher::testing::BroadcastWorld world;
  entitlement::TestAcquirer acquirer;
  crypto::Ed25519KeyPair handset = crypto::Ed25519KeyPair::generate();
  std::uint64_t card = 0;
  std::atomic<std::uint32_t> sold{0};
  Engine() {
    world.add_service(1);
    world.add_stb(1001);
    for (std::uint32_t s = 1; s < kStbs; ++s) {
      (void)world.store().register_stb({1001 + s, crypto::X25519KeyPair::generate().public_key,
                                        crypto::Ed25519KeyPair::generate().public_key});
    }
    (void)world.store().batch([&] {
      for (std::uint32_t e = 1; e <= kEvents; ++e) world.add_event(e, 1, kT0 + 60 * std::uint64_t{e}, 60, 1, "Bench");
    });
    card = world.store().register_handset("bench", handset.public_key, kEur)->card_id;
    for (int i = 0; i < 20; ++i) (void)world.store().top_up(card, 100'000, "visa", acquirer);
  }
  entitlement::BuyTicketRequest buy() {
    const auto n = sold++;
    const auto event = 1 + (n / kStbs) % kEvents;
    const auto stb = 1001 + n % kStbs;
    entitlement::BuyTicketRequest q{event, stb, {}};
    q.spend.card_id = card;
    q.spend.amount = {1, kEur};
    q.spend.payee = entitlement::payee_for(event, stb);
    crypto::random_bytes(q.spend.nonce);
    q.spend.sign(handset.private_key);
    return q;
  }
};

void BM_PurchasesThroughZeroMq(benchmark::State& state) {
  Engine engine;
  // One card buys for every client: the benchmark measures the engine, not the per-card limit.
  constexpr RateLimiter::Rate kUnlimited{1U << 30, 1U << 30};
  entitlement::EngineService service(engine.world.store(), engine.acquirer, {kUnlimited, kUnlimited});
  net::ReplyServer server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([&](const auto& r) { return service.handle_batch(r); }));
  std::atomic<bool> stop{false};
  std::thread t([&] { server.run(stop); });
  const int clients = static_cast<int>(state.range(0));
  std::int64_t done = 0;
  for (auto _ : state) {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        wallet::EngineClient client(server.endpoint());
        for (int i = 0; i < 50; ++i) {
          if (!client.buy_ticket(engine.buy())) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    if (failures > 0) state.SkipWithError("a purchase failed");
    done += clients * 50;
  }
  stop = true;
  t.join();
  state.SetItemsProcessed(done);
}
BENCHMARK(BM_PurchasesThroughZeroMq)->Name("purchases_zeromq")->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EmmSeal(benchmark::State& state) {
  auto op = crypto::X25519KeyPair::generate();
  auto stb = crypto::X25519KeyPair::generate();
  const auto key = entitlement::derive_emm_key(op.private_key, stb.public_key, 0x4AFF, 1001).value();
  Key256 service_key;
  std::uint64_t seq = 0;
  for (auto _ : state) {
    entitlement::EmmContent emm{1001, ++seq, kT0, {}};
    emm.items.emplace_back(entitlement::EmmGrant{1, 1, service_key.clone(), kT0, kT0 + 86400});
    benchmark::DoNotOptimize(entitlement::encode_emm(emm, key));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EmmSeal)->Name("emm_generate");

void BM_EmmGrantThroughStore(benchmark::State& state) {
  usher::testing::BroadcastWorld world;
  world.add_service(1);
  world.add_stb(1001);
  std::uint64_t n = 0;
  for (auto _ : state) {
    if (!world.store().grant(1001, 1, kT0, kT0 + 86400 + ++n)) state.SkipWithError("grant failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EmmGrantThroughStore)->Name("emm_grant_via_store")->Unit(benchmark::kMicrosecond);

void BM_EcmToControlWord(benchmark::State& state) {
  usher::testing::BroadcastWorld world;
  world.add_service(1);
  auto& se = world.add_stb(1001);
  if (!world.store().grant(1001, 1, kT0 - 10, kT0 + 86400)) std::abort();
  (void)se.apply_emm(world.store().emm_sections(kT0).at(0));
  const auto key = world.store().service_key(1).value();
  std::vector<std::vector<std::uint8_t>> ecms;
  for (std::uint32_t p = 0; p < 64; ++p) {
    entitlement::EcmContent e;
    e.service_id = 1;
    e.key_version = key.key_version;
    e.current.crypto_period = p;
    e.next.crypto_period = p + 1;
    e.current.time_unix = kT0;
    e.next.time_unix = kT0;
    e.current.cw = ControlWord::random();
    e.next.cw = ControlWord::random();
    ecms.push_back(entitlement::encode_ecm(e, key.key, key.key));
  }
  CsaPipeline pipeline(CsaDirection::decrypt);
  const auto even = pipeline.add_slot();
  const auto odd = pipeline.add_slot();
  std::size_t i = 0;
  for (auto _ : state) {
    // Both control words, each opened on its own as the descrambler does.
    const auto& section = ecms[i++ % ecms.size()];
    auto current = se.open_ecm(section, entitlement::EcmPart::current);
    auto next = se.open_ecm(section, entitlement::EcmPart::next);
    if (!current || !next) {
      state.SkipWithError("ECM refused");
      break;
    }
    pipeline.set_key(current->crypto_period % 2 == 0 ? even : odd, current->cw);
    pipeline.set_key(next->crypto_period % 2 == 0 ? even : odd, next->cw);
  }
}
BENCHMARK(BM_EcmToControlWord)->Name("ecm_to_control_word")->Unit(benchmark::kMicrosecond);

}  // namespace
