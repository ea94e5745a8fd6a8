// Bulk provisioning (issue 11, section 3): a subscriber-management system's export of N boxes
// registered with EntitlementStore::register_stbs, then a package of three services granted to
// all of them with grant_many (one EMM per box and service, as the store queues them today), on
// SQLite with synchronous=FULL. N comes from USHER_BENCH_BOXES (default 20,000; the target
// is a million registered and granted in under 5 minutes on 2 cores). The boxes' keys are real
// key pairs derived from their ids (tests/support/synthetic_boxes.h), made before the clock starts.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "bench_size.h"
#include "synthetic_boxes.h"
#include "temp_dir.h"
#include "usher/entitlement/store.h"

namespace {

using namespace usher;

std::size_t bench_boxes() { return usher::bench::size_from_env("USHER_BENCH_BOXES", 20'000); }

// Box ids 1,000,001 onward, their keys derived on every core.
const std::vector<entitlement::StbRow>& boxes() {
  static const std::vector<entitlement::StbRow> rows = [] {
    std::vector<entitlement::StbRow> out(bench_boxes());
    const unsigned threads = std::max(1U, std::thread::hardware_concurrency());
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&out, t, threads] {
        for (std::size_t i = t; i < out.size(); i += threads) out[i] = testing::synthetic_box(static_cast<std::uint32_t>(1'000'001 + i));
      });
    }
    for (auto& w : workers) w.join();
    return out;
  }();
  return rows;
}

void BM_Provisioning(benchmark::State& state) {
  const auto& rows = boxes();
  for (auto _ : state) {
    testing::TempDir dir;
    auto store = entitlement::EntitlementStore::create(dir.file("ent"), entitlement::kDefaultCaSystemId).value();
    for (std::uint16_t s = 1; s <= 3; ++s) (void)store.add_service(s, "Service " + std::to_string(s));
    (void)store.add_package(1, "Basic", {1, 2, 3});
    const auto services = store.package_services(1).value();

    const auto t0 = std::chrono::steady_clock::now();
    const auto registered = store.register_stbs(rows);
    const auto t1 = std::chrono::steady_clock::now();
    const auto ids = store.stb_ids();
    const auto granted = store.grant_many(ids, services, 4'000'000'000, 4'000'000'000 + 30 * 86400);
    const auto t2 = std::chrono::steady_clock::now();
    if (!registered || !granted || registered->added != rows.size() || granted->added != rows.size()) {
      state.SkipWithError("bulk provisioning failed");
      return;
    }
    // Running both again: everything skipped, nothing written (what resuming costs).
    const auto again = store.register_stbs(rows);
    const auto granted_again = store.grant_many(ids, services, 4'000'000'000, 4'000'000'000 + 30 * 86400);
    const auto t3 = std::chrono::steady_clock::now();
    if (!again || !granted_again || again->skipped != rows.size() || granted_again->skipped != rows.size()) {
      state.SkipWithError("re-run did not skip everything");
      return;
    }
    const auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    state.SetIterationTime(seconds(t0, t2));
    state.counters["boxes"] = static_cast<double>(rows.size());
    state.counters["import_s"] = seconds(t0, t1);
    state.counters["grant_s"] = seconds(t1, t2);
    state.counters["import_rows_per_s"] = static_cast<double>(rows.size()) / seconds(t0, t1);
    state.counters["grant_rows_per_s"] = static_cast<double>(rows.size()) / seconds(t1, t2);
    state.counters["emms_queued"] = static_cast<double>(rows.size() * services.size());
    state.counters["rerun_skip_s"] = seconds(t2, t3);
  }
}
BENCHMARK(BM_Provisioning)->Name("provisioning")->Unit(benchmark::kSecond)->UseManualTime()->Iterations(1);

}  // namespace
