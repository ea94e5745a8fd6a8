// A pay-per-view rush (issue 11, section 4): one big event bought by USHER_RUSH_BOXES boxes (default
// 4,000; the closing note's figures use 1,000,000), each once, by kClients handsets at once through
// the real path (wallet EngineClient -> ZeroMQ -> EngineService -> SQLite, durable before each
// reply), with a headend following the engine's EMM feed every second as EngineKeySource does.
// Counters:
//   purchases_per_s, p50_ms, p99_ms, max_ms   the sales and their round trips, as the handsets saw them
//   handset_delivery        every ticket reached its handset in the reply (its EMM, for the STB over
//                           the local link at once): 1 when all did
//   broadcast_p99_s, broadcast_last_s   the same tickets by broadcast: each ticket's EMM sent, in
//                           the order the engine queued them (urgent, first in first out), at
//                           kEmmBudget bit/s from the moment it was queued, whole packets; the p99 and
//                           the last of (sent - queued), in seconds. At a rush's rate the broadcast
//                           cannot keep up (one ticket EMM is two packets): that is why the handset
//                           carries the ticket
//   impulse_us              an impulse purchase on a real secure element's credit line: no message
//                           at buy time, this long on the box
//   headend_pages           feed pages the headend took meanwhile
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_size.h"
#include "synthetic_boxes.h"
#include "temp_dir.h"
#include "usher/core/clock.h"
#include "usher/core/rate_limit.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/store.h"
#include "usher/stb/secure_element.h"
#include "usher/wallet_bridge/wallet.h"

namespace {

using namespace usher;
using Clock = std::chrono::steady_clock;
const entitlement::Currency kEur{'E', 'U', 'R'};
constexpr std::uint16_t kCaSystemId = 0x4AFF;
constexpr int kClients = 64;
constexpr std::uint64_t kEmmBudget = 1'000'000;

using usher::bench::size_from_env;

void ppv_rush(benchmark::State& state) {
  const auto boxes = static_cast<std::uint32_t>(size_from_env("USHER_RUSH_BOXES", 4000));
  for (auto _ : state) {
    usher::testing::TempDir dir;
    const std::string home = dir.file("operator");
    auto created = entitlement::EntitlementStore::create(home, kCaSystemId);
    if (!created) return state.SkipWithError(created.error().message.c_str());
    auto& store = *created;
    (void)store.add_service(1, "Arena");
    std::vector<entitlement::StbRow> rows;
    rows.reserve(boxes);
    for (std::uint32_t id = 1; id <= boxes; ++id) rows.push_back(usher::testing::synthetic_box(id));
    if (auto r = store.register_stbs(rows); !r) return state.SkipWithError(r.error().message.c_str());
    rows = {};
    const std::uint64_t now = unix_now();
    entitlement::EventInfo fight;
    fight.event_id = 1;
    fight.service_id = 1;
    fight.start = now + 3600;
    fight.duration = 3 * 3600;
    fight.title = "The fight";
    fight.price = {6999, kEur};
    if (auto e = store.add_event(fight); !e) return state.SkipWithError(e.error().message.c_str());
    // A handset and card per client, funded for its share of the boxes.
    entitlement::TestAcquirer acquirer;
    std::vector<crypto::Ed25519KeyPair> handsets;
    std::vector<std::uint64_t> cards;
    const std::uint32_t per_client = (boxes + kClients - 1) / kClients;
    for (int c = 0; c < kClients; ++c) {
      handsets.push_back(crypto::Ed25519KeyPair::generate());
      auto card = store.register_handset("rush" + std::to_string(c), handsets.back().public_key, kEur);
      if (!card) return state.SkipWithError(card.error().message.c_str());
      cards.push_back(card->card_id);
      for (std::uint64_t funded = 0; funded < std::uint64_t{per_client} * 6999; funded += 100'000) {
        if (!store.top_up(card->card_id, 100'000, "visa", acquirer)) return state.SkipWithError("top-up failed");
      }
    }
    // The headend has followed the feed up to here.
    std::uint64_t cursor = 0;
    for (bool more = true; more;) {
      auto page = store.emm_changes(cursor);
      cursor = page.next_cursor;
      more = page.more;
    }
    const std::uint64_t rush_start_cursor = cursor;

    constexpr RateLimiter::Rate kUnlimited{1U << 30, 1U << 30};
    entitlement::EngineService service(store, acquirer, {kUnlimited, kUnlimited});
    net::ReplyServer server("tcp://127.0.0.1:*", net::ReplyServer::BatchHandler([&](const auto& r) { return service.handle_batch(r); }),
                            entitlement::kEngineServerLimits);
    std::atomic<bool> stop{false};
    std::thread serving([&] { server.run(stop); });

    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> pages{0};
    std::atomic<int> failures{0};
    // The headend: follows the feed every second, noting when each new entry was first seen.
    struct Seen {
      double at = 0;
      std::size_t bytes = 0;
    };
    std::vector<Seen> seen;
    const auto t0 = Clock::now();
    std::thread headend([&] {
      net::RequestClient client(server.endpoint(), {std::chrono::seconds(10), 1});
      std::uint64_t c = rush_start_cursor;
      while (true) {
        const bool last = done;
        for (bool more = true; more;) {
          auto body = entitlement::call_framed(client, static_cast<std::uint8_t>(entitlement::MessageType::emm_changes),
                                               entitlement::encode_emm_changes_request(c));
          if (!body) {
            ++failures;
            return;
          }
          auto page = entitlement::decode_emm_feed_page(*body);
          if (!page) {
            ++failures;
            return;
          }
          const double at = std::chrono::duration<double>(Clock::now() - t0).count();
          for (const auto& a : page->added) seen.push_back({at, a.section.size()});
          c = page->next_cursor;
          more = page->more;
          ++pages;
        }
        if (last) return;
        for (int i = 0; i < 100 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
    std::vector<std::vector<double>> latencies(kClients);
    std::atomic<std::uint64_t> delivered_to_handset{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        wallet::EngineClient client(server.endpoint(), {std::chrono::seconds(30), 1});
        for (std::uint32_t i = 0; i < per_client; ++i) {
          const std::uint32_t stb = 1 + static_cast<std::uint32_t>(c) * per_client + i;
          if (stb > boxes) break;
          entitlement::BuyTicketRequest q{1, stb, {}};
          q.spend.card_id = cards[static_cast<std::size_t>(c)];
          q.spend.amount = fight.price;
          q.spend.payee = entitlement::payee_for(1, stb);
          crypto::random_bytes(q.spend.nonce);
          q.spend.sign(handsets[static_cast<std::size_t>(c)].private_key);
          const auto start = Clock::now();
          auto reply = client.buy_ticket(q);
          latencies[static_cast<std::size_t>(c)].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          if (!reply) {
            ++failures;
          } else if (!reply->emm_section.empty()) {
            ++delivered_to_handset;
          }
        }
      });
    }
    for (auto& th : clients) th.join();
    const double rush_s = std::chrono::duration<double>(Clock::now() - t0).count();
    done = true;
    headend.join();
    stop = true;
    serving.join();

    std::vector<double> all;
    for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) { return all.empty() ? -1.0 : all[std::min(all.size() - 1, static_cast<std::size_t>(p * static_cast<double>(all.size())))]; };
    // Broadcast: the tickets' EMMs in the order seen, each sent whole-packet at the budget once both
    // it is queued and the ones before it are sent.
    std::vector<double> waits;
    double free_at = 0;
    for (const auto& s : seen) {
      const auto packets = (s.bytes + 183) / 184;
      const double send = std::max(free_at, s.at) + static_cast<double>(packets) * 188 * 8 / static_cast<double>(kEmmBudget);
      waits.push_back(send - s.at);
      free_at = send;
    }
    std::vector<double> sorted_waits = waits;
    std::sort(sorted_waits.begin(), sorted_waits.end());
    // Impulse purchase on the credit line: on the box alone.
    double impulse_us = -1;
    {
      auto se = stb::SecureElement::init(dir.file("impulse-stb"), 900'000'000,
                                         *entitlement::OperatorPublicFile::read(home + "/" + entitlement::OperatorPublicFile::kFileName));
      if (se) {
        const auto pub = se->public_identity();
        entitlement::StbInfo box;
        box.stb_id = 900'000'000;
        box.x25519_public = pub.x25519_public;
        box.ed25519_public = pub.ed25519_public;
        (void)store.register_stb(box);
        (void)store.set_credit(900'000'000, {1'000'000, kEur}, unix_now());
        // The box takes its EMMs (the credit line, the offers) from the feed.
        std::uint64_t c = cursor;
        for (bool more = true; more;) {
          auto page = store.emm_changes(c);
          for (const auto& a : page.added) (void)se->apply_emm(a.section);
          c = page.next_cursor;
          more = page.more;
        }
        const auto start = Clock::now();
        auto bought = se->impulse_buy(1, unix_now());
        if (bought) impulse_us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
      }
    }
    state.counters["boxes"] = boxes;
    state.counters["clients"] = kClients;
    state.counters["purchases_per_s"] = static_cast<double>(all.size()) / rush_s;
    state.counters["p50_ms"] = pct(0.50);
    state.counters["p99_ms"] = pct(0.99);
    state.counters["max_ms"] = all.empty() ? -1 : all.back();
    state.counters["handset_delivery"] = delivered_to_handset == all.size() ? 1 : 0;
    state.counters["broadcast_emms"] = static_cast<double>(waits.size());
    state.counters["broadcast_p99_s"] = sorted_waits.empty() ? -1 : sorted_waits[std::min(sorted_waits.size() - 1, sorted_waits.size() * 99 / 100)];
    state.counters["broadcast_last_s"] = sorted_waits.empty() ? -1 : sorted_waits.back();
    state.counters["impulse_us"] = impulse_us;
    state.counters["headend_pages"] = static_cast<double>(pages);
    if (failures > 0) state.SkipWithError("a purchase or a feed page failed");
  }
}
BENCHMARK(ppv_rush)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
