// A million subscribers within broadcast bandwidth (issue 11, section 4): the operator's whole
// population through the real engine store, the real headend's EMM output at a 1 Mbit/s budget,
// and a random sample of real secure elements decoding that output.
//
//  - million_box_renewal: N boxes (USHER_SIM_BOXES, default 3,000; the closing note's figures use
//    1,000,000) imported in bulk, subscribed to three packages of two services each (about 60 % of
//    the boxes each), with a month's churn (3 % of each package's subscribers leave, as many join).
//    Then, at stream time 0, the monthly renewal of every subscriber and the rotation of every
//    service key at the start of the new month (a box counts as renewed once it holds the renewed
//    window and the next key version). The headend's Scrambler runs over a
//    synthetic 4 Mbit/s multiplex with EMMs at 1 Mbit/s; S secure elements chosen at random
//    (USHER_SIM_SAMPLE, default 5 % of N, at most 10,000) take the EMMs addressed to them from its
//    output. While the renewal runs, one box of the sample per stream second is newly subscribed
//    and one has a service revoked (a box that never held it subscribes, one holding service 1
//    loses it). Counters, in stream seconds unless said:
//      renewal_s          until every sampled subscriber holds its renewed rights
//      departed_renewed   sampled boxes that left and yet hold renewed rights (must be 0)
//      urgent_p99_s       new subscriptions and revocations queued meanwhile: 99th percentile of the
//                         time from queueing to the box applying it (urgent_max_s, urgent_n)
//      filter_core_pct    the share of one core an STB spends filtering out EMMs not for it, at the
//                         full EMM rate of the budget (each EMM as one packet: the most sections/s)
//      register_s, grant_s, renew_s   wall seconds for bulk registration, the first month's grants,
//                         and queueing the renewal and key rotation
//      renewal_emms, renewal_packets  the EMMs the renewal queued, and the TS packets they take
//      emm_sections, carousel_entries, carousel_mb (on the wire) at the end of the run
//      shared_pass_s, unique_pass_s   the carousel's two passes at the end (docs/headend.md): the
//                         longest a box that holds its group key waits for a group EMM it missed,
//                         and the longest a box switched on for the first time waits for its key EMM
// The boxes' keys are derived from a seed (tests/support/synthetic_boxes.h); the sample's are real
// secure elements' own (SecureElement::init), registered in the same import.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench_size.h"
#include "synthetic_boxes.h"
#include "synthetic_stream.h"
#include "temp_dir.h"
#include "usher/core/clock.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/store.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"
#include "usher/stb/secure_element.h"
#include "usher/streams/section.h"

namespace {

using namespace usher;
using Clock = std::chrono::steady_clock;
constexpr std::uint16_t kCaSystemId = 0x4AFF;
constexpr std::uint64_t kDay = 86400;
constexpr std::uint64_t kMuxBitrate = 4'000'000;
constexpr std::uint64_t kEmmBudget = 1'000'000;
constexpr double kMaxStreamSeconds = 900;

using usher::bench::size_from_env;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Packages 1, 2, 3 of services {1, 2}, {3, 4}, {5, 6}.
std::vector<std::uint16_t> package_services(int package) {
  return {static_cast<std::uint16_t>(2 * package - 1), static_cast<std::uint16_t>(2 * package)};
}

// The sample's secure elements, opened when an EMM is for them (ten thousand open stores would
// take more file descriptors than a process gets): at most kOpen at once.
class SampleBoxes {
 public:
  static constexpr std::size_t kOpen = 2000;
  explicit SampleBoxes(const usher::testing::TempDir& dir) : dir_(dir) {}
  std::string home(std::uint32_t id) const { return dir_.file("stb-" + std::to_string(id)); }
  stb::SecureElement& open(std::uint32_t id) {
    auto it = open_.find(id);
    if (it != open_.end()) return *it->second;
    if (open_.size() >= kOpen) open_.clear();
    auto se = stb::SecureElement::open(home(id));
    if (!se) throw std::runtime_error("secure element " + std::to_string(id) + ": " + se.error().message);
    return *open_.emplace(id, std::make_unique<stb::SecureElement>(std::move(*se))).first->second;
  }

 private:
  const usher::testing::TempDir& dir_;
  std::map<std::uint32_t, std::unique_ptr<stb::SecureElement>> open_;
};

// What a sampled box must end up holding, and when it did.
struct Expectation {
  std::set<std::uint16_t> renewed;    // services whose renewed window (and next key) it must hold
  std::set<std::uint16_t> departed;   // services of packages it left: no renewed window for them
  double done_at = -1;                // stream seconds
};

bool holds_renewal(stb::SecureElement& se, const std::set<std::uint16_t>& services, std::uint64_t renewed_until,
                   std::uint16_t next_version) {
  std::size_t found = 0;
  for (const auto& e : se.entitlements()) {
    if (!services.contains(e.service_id) || e.revoked) continue;
    if (e.not_after != renewed_until) return false;
    if (std::find(e.key_versions.begin(), e.key_versions.end(), next_version) == e.key_versions.end()) return false;
    ++found;
  }
  return found == services.size();
}

void million_box_renewal(benchmark::State& state) {
  const std::size_t boxes = size_from_env("USHER_SIM_BOXES", 3000);
  const std::size_t sample_size = std::min(boxes, size_from_env("USHER_SIM_SAMPLE", std::min<std::size_t>(10000, std::max<std::size_t>(boxes / 20, 50))));
  for (auto _ : state) {
    usher::testing::TempDir dir;
    const std::string home = dir.file("operator");
    auto created = entitlement::EntitlementStore::create(home, kCaSystemId);
    if (!created) return state.SkipWithError(created.error().message.c_str());
    auto& store = *created;
    const auto op = entitlement::OperatorPublicFile::read(home + "/" + entitlement::OperatorPublicFile::kFileName);
    if (!op) return state.SkipWithError(op.error().message.c_str());
    for (std::uint16_t s = 1; s <= 6; ++s) (void)store.add_service(s, "Service " + std::to_string(s));
    for (int p = 1; p <= 3; ++p) (void)store.add_package(static_cast<std::uint16_t>(p), "Package " + std::to_string(p), package_services(p));

    std::mt19937 rng(20261125);
    std::vector<std::uint32_t> ids(boxes);
    for (std::size_t i = 0; i < boxes; ++i) ids[i] = static_cast<std::uint32_t>(i + 1);
    std::vector<std::uint32_t> sample;
    std::sample(ids.begin(), ids.end(), std::back_inserter(sample), static_cast<std::ptrdiff_t>(sample_size), rng);
    const std::set<std::uint32_t> in_sample(sample.begin(), sample.end());

    // The import: every box as an SMS export holds it; the sample's keys are their secure elements'.
    SampleBoxes sampled(dir);
    std::vector<entitlement::StbRow> rows;
    rows.reserve(boxes);
    for (const auto id : ids) {
      if (in_sample.contains(id)) {
        auto se = stb::SecureElement::init(sampled.home(id), id, *op);
        if (!se) return state.SkipWithError(se.error().message.c_str());
        const auto pub = se->public_identity();
        entitlement::StbRow row;
        row.stb.stb_id = id;
        row.stb.x25519_public = pub.x25519_public;
        row.stb.ed25519_public = pub.ed25519_public;
        rows.push_back(std::move(row));
      } else {
        rows.push_back(usher::testing::synthetic_box(id));
      }
    }
    auto t = Clock::now();
    auto registered = store.register_stbs(rows);
    if (!registered) return state.SkipWithError(registered.error().message.c_str());
    state.counters["register_s"] = seconds_since(t);
    rows.clear();
    rows.shrink_to_fit();

    // The month before: about 60 % of the boxes take each package.
    const std::uint64_t t0 = unix_now();
    const std::uint64_t month_end = t0 + 30 * kDay;
    const std::uint64_t renewed_until = t0 + 60 * kDay;
    std::map<int, std::vector<std::uint32_t>> subscribers;
    std::uniform_real_distribution<double> coin(0, 1);
    for (int p = 1; p <= 3; ++p) {
      for (const auto id : ids) {
        if (coin(rng) < 0.6) subscribers[p].push_back(id);
      }
    }
    t = Clock::now();
    for (int p = 1; p <= 3; ++p) {
      const auto services = package_services(p);
      auto granted = store.grant_many(subscribers[p], services, t0 - kDay, month_end);
      if (!granted) return state.SkipWithError(granted.error().message.c_str());
    }
    // Churn over the month: 3 % of each package's subscribers leave (they are not renewed), as many
    // boxes that did not have it join (granted during the month, so delivered long before).
    std::map<std::uint32_t, Expectation> expect;
    for (int p = 1; p <= 3; ++p) {
      auto& subs = subscribers[p];
      std::shuffle(subs.begin(), subs.end(), rng);
      const std::size_t churn = subs.size() * 3 / 100;
      std::vector<std::uint32_t> leaving(subs.end() - static_cast<std::ptrdiff_t>(churn), subs.end());
      subs.resize(subs.size() - churn);
      std::set<std::uint32_t> has(subs.begin(), subs.end());
      for (const auto id : leaving) has.insert(id);
      std::vector<std::uint32_t> joining;
      for (const auto id : ids) {
        if (joining.size() >= churn) break;
        if (!has.contains(id) && coin(rng) < 0.1) joining.push_back(id);
      }
      const auto services = package_services(p);
      auto granted = store.grant_many(joining, services, t0 - kDay, month_end);
      if (!granted) return state.SkipWithError(granted.error().message.c_str());
      subs.insert(subs.end(), joining.begin(), joining.end());
      for (const auto id : leaving) {
        if (in_sample.contains(id)) expect[id].departed.insert(services.begin(), services.end());
      }
      for (const auto id : subs) {
        if (in_sample.contains(id)) {
          for (const auto s : services) expect[id].renewed.insert(s);
        }
      }
    }
    state.counters["grant_s"] = seconds_since(t);

    // Everything queued so far reached the boxes during the month: hand it to the sample directly.
    // Which sampled boxes look at a section beyond its clear header: the one a unique EMM names,
    // the members of a group EMM's group (as each box's secure element says after its key EMM),
    // every box for a global one. The others filter it out on the header: that cost is measured
    // below (filter_ns), not paid ten thousand times here.
    std::map<std::uint32_t, std::set<std::uint32_t>> sample_by_group;
    std::map<std::uint32_t, std::uint32_t> group_of_box;
    auto route = [&](std::span<const std::uint8_t> section, auto&& each_box) {
      const auto header = entitlement::peek_any_emm(section);
      if (!header) return;
      if (header->address.type == entitlement::EmmAddressType::unique) {
        if (!in_sample.contains(header->address.id)) return;
        each_box(header->address.id);
        const auto membership = sampled.open(header->address.id).group();
        const auto before = group_of_box.find(header->address.id);
        if (before != group_of_box.end() && (!membership || membership->group_id != before->second)) {
          sample_by_group[before->second].erase(header->address.id);
          group_of_box.erase(before);
        }
        if (membership) {
          sample_by_group[membership->group_id].insert(header->address.id);
          group_of_box[header->address.id] = membership->group_id;
        }
        return;
      }
      if (header->address.type == entitlement::EmmAddressType::group) {
        const auto it = sample_by_group.find(header->address.id);
        if (it == sample_by_group.end()) return;
        const std::vector<std::uint32_t> members(it->second.begin(), it->second.end());
        for (const auto id : members) each_box(id);
        return;
      }
      for (const auto id : sample) each_box(id);
    };
    std::uint64_t cursor = 0;
    for (;;) {
      auto page = store.emm_changes(cursor);
      for (const auto& a : page.added) {
        route(a.section, [&](std::uint32_t id) { (void)sampled.open(id).apply_emm(a.section); });
      }
      cursor = page.next_cursor;
      if (!page.more) break;
    }

    // The headend: the real Scrambler fed from the store, its EMM budget 1 Mbit/s.
    headend::StoreKeySource keys(store);
    headend::ScramblerConfig config;
    config.ca_system_id = kCaSystemId;
    config.services = {1};
    config.emm_bitrate = kEmmBudget;
    config.insert_policy = headend::InsertPolicy::replace_nulls;
    config.start_unix = t0;
    config.survey_ms = 200;
    headend::Scrambler scrambler(std::move(config), keys);
    usher::testing::SyntheticMuxOptions mux;
    mux.services = {1};
    mux.seconds = 1.0;
    mux.bitrate = kMuxBitrate;
    mux.null_fraction = 0.45;
    const auto second_of_input = usher::testing::make_synthetic_mux(mux);
    // The headend is on air before the renewal, its carousel holding what was queued during the
    // month (as a headend that has run all along would): the renewal reaches it as new EMMs.
    {
      std::vector<streams::TsPacket> warm;
      for (int i = 0; i < 2; ++i) {
        scrambler.process(second_of_input, warm);
        scrambler.refresh_emms();
      }
    }

    // Stream time 0: the monthly renewal, and the next key of every service for the new month.
    t = Clock::now();
    // The rotation first (announced in the member grants the carousel carries), then the renewal,
    // whose member grants carry the current and the next key of each service.
    std::uint16_t next_version = 0;
    for (std::uint16_t s = 1; s <= 6; ++s) {
      auto next = store.rotate_service_key(s, month_end, unix_now());
      if (!next) return state.SkipWithError(next.error().message.c_str());
      next_version = next->key_version;
    }
    for (int p = 1; p <= 3; ++p) {
      // The window is extended, as `entitlement renew` does: a box keeps watching until month_end
      // whichever of the two member grants it meets first (a box holds one window per service).
      auto renewed = store.grant_many(subscribers[p], package_services(p), t0 - kDay, renewed_until);
      if (!renewed) return state.SkipWithError(renewed.error().message.c_str());
    }
    state.counters["renew_s"] = seconds_since(t);
    {
      // What the renewal put on the air: EMMs, and TS packets (a section takes (bytes + 1) / 184).
      double sections = 0;
      double packets = 0;
      for (;;) {
        auto page = store.emm_changes(cursor);
        for (const auto& a : page.added) {
          sections += 1;
          packets += static_cast<double>((a.section.size() + 1 + 183) / 184);
        }
        cursor = page.next_cursor;
        if (!page.more) break;
      }
      state.counters["renewal_emms"] = sections;
      state.counters["renewal_packets"] = packets;
    }

    scrambler.refresh_emms();

    // New subscriptions and revocations while the renewal runs: one each per stream second, to boxes
    // of the sample, with the stream time they were queued.
    struct Urgent {
      std::uint32_t stb = 0;
      std::uint16_t service = 0;
      bool grant = true;
      double queued_at = 0;
      double done_at = -1;
    };
    std::vector<Urgent> urgent;
    std::vector<double> latencies;
    std::size_t pending_renewals = 0;
    for (auto& [id, e] : expect) {
      if (!e.renewed.empty()) ++pending_renewals;
    }
    std::vector<std::vector<std::uint8_t>> stream_sections;  // for the filtering cost
    double stream_s = 0;
    double renewal_s = -1;
    std::vector<streams::TsPacket> out;
    std::uint16_t emm_pid = 0;
    std::unique_ptr<streams::SectionAssembler> emms;
    std::vector<std::vector<std::uint8_t>> arrived;
    // A new subscription goes to a box that never held service 6, a revocation to one holding
    // service 1: a grant to a box holding the service already is a renewal (it waits behind the
    // month's renewal by design), and a grant made only to be revoked measures nothing real.
    std::vector<std::uint32_t> gain_pool;
    std::vector<std::uint32_t> lose_pool;
    for (const auto id : sample) {
      const auto it = expect.find(id);
      const bool left_nothing = it == expect.end() || it->second.departed.empty();
      if (left_nothing && (it == expect.end() || !it->second.renewed.contains(6))) gain_pool.push_back(id);
      if (left_nothing && it != expect.end() && it->second.renewed.contains(1)) lose_pool.push_back(id);
    }
    std::shuffle(gain_pool.begin(), gain_pool.end(), rng);
    std::shuffle(lose_pool.begin(), lose_pool.end(), rng);
    // A box that both gains 6 and loses 1 would have its two changes measured together: kept apart.
    {
      const std::set<std::uint32_t> gaining(gain_pool.begin(), gain_pool.begin() + static_cast<std::ptrdiff_t>(gain_pool.size() / 2));
      std::erase_if(lose_pool, [&](std::uint32_t id) { return gaining.contains(id); });
      gain_pool.resize(gain_pool.size() / 2);
    }
    std::size_t next_gain = 0;
    std::size_t next_lose = 0;

    while (stream_s < kMaxStreamSeconds) {
      out.clear();
      scrambler.process(second_of_input, out);
      stream_s += 1.0;
      if (emm_pid == 0) {
        emm_pid = scrambler.emm_pid();
        emms = std::make_unique<streams::SectionAssembler>([&](auto s) { arrived.emplace_back(s.begin(), s.end()); });
      }
      for (const auto& p : out) {
        if (p.pid() == emm_pid) emms->feed(p);
      }
      std::set<std::uint32_t> touched;
      for (const auto& section : arrived) {
        route(section, [&](std::uint32_t id) {
          auto outcome = sampled.open(id).apply_emm(section);
          if (outcome && *outcome == stb::EmmOutcome::applied) touched.insert(id);
        });
        if (stream_sections.size() < 20000) stream_sections.push_back(section);
      }
      arrived.clear();
      for (const auto id : touched) {
        auto& se = sampled.open(id);
        auto it = expect.find(id);
        if (it != expect.end() && !it->second.renewed.empty() && it->second.done_at < 0 &&
            holds_renewal(se, it->second.renewed, renewed_until, next_version)) {
          it->second.done_at = stream_s;
          --pending_renewals;
        }
        for (auto& u : urgent) {
          if (u.stb != id || u.done_at >= 0) continue;
          for (const auto& e : se.entitlements()) {
            if (e.service_id != u.service) continue;
            if (u.grant ? (!e.revoked && e.not_after == renewed_until) : e.revoked) {
              u.done_at = stream_s;
              latencies.push_back(u.done_at - u.queued_at);
            }
          }
        }
      }
      if (pending_renewals == 0 && renewal_s < 0) renewal_s = stream_s;
      const bool urgent_done = std::all_of(urgent.begin(), urgent.end(), [](const Urgent& u) { return u.done_at >= 0; });
      if (renewal_s >= 0 && urgent_done && stream_s > 5) break;
      if (renewal_s < 0 && next_gain < gain_pool.size()) {
        // A box takes service 6, as a new subscription would.
        const auto gain = gain_pool[next_gain++];
        if (store.grant(gain, 6, t0, renewed_until)) urgent.push_back({gain, 6, true, stream_s});
        if (auto it = expect.find(gain); it != expect.end() && !it->second.renewed.empty()) it->second.renewed.insert(6);
      }
      if (renewal_s < 0 && next_lose < lose_pool.size()) {
        // Another loses service 1: it is no longer expected to hold 1 renewed.
        const auto lose = lose_pool[next_lose++];
        if (store.revoke(lose, 1)) urgent.push_back({lose, 1, false, stream_s});
        if (auto it = expect.find(lose); it != expect.end()) {
          if (it->second.renewed.erase(1) > 0 && it->second.renewed.empty() && it->second.done_at < 0) --pending_renewals;
        }
      }
      scrambler.refresh_emms();
    }
    std::size_t departed_renewed = 0;
    for (auto& [id, e] : expect) {
      if (e.departed.empty()) continue;
      for (const auto& ent : sampled.open(id).entitlements()) {
        if (e.departed.contains(ent.service_id) && !e.renewed.contains(ent.service_id) && ent.not_after == renewed_until && !ent.revoked) {
          ++departed_renewed;
          break;
        }
      }
    }
    std::sort(latencies.begin(), latencies.end());
    // Filtering: one box of the sample against every section of the stream not for it.
    double filter_ns = 0;
    {
      auto& se = sampled.open(sample.front());
      std::vector<const std::vector<std::uint8_t>*> others;
      for (const auto& s : stream_sections) {
        const auto h = entitlement::peek_any_emm(s);
        if (!h) continue;
        const bool mine = (h->address.type == entitlement::EmmAddressType::unique && h->address.id == se.stb_id()) ||
                          (h->address.type == entitlement::EmmAddressType::group && se.group() && se.group()->group_id == h->address.id) ||
                          h->address.type == entitlement::EmmAddressType::global;
        if (!mine) others.push_back(&s);
      }
      if (!others.empty()) {
        const int rounds = 20;
        const auto f0 = Clock::now();
        for (int r = 0; r < rounds; ++r) {
          for (const auto* s : others) benchmark::DoNotOptimize(se.apply_emm(*s));
        }
        filter_ns = std::chrono::duration<double, std::nano>(Clock::now() - f0).count() / (rounds * static_cast<double>(others.size()));
      }
    }
    const double max_sections_per_s = static_cast<double>(kEmmBudget) / (188.0 * 8.0);
    state.counters["boxes"] = static_cast<double>(boxes);
    state.counters["sample"] = static_cast<double>(sample.size());
    state.counters["renewal_s"] = renewal_s;
    state.counters["departed_renewed"] = static_cast<double>(departed_renewed);
    state.counters["urgent_n"] = static_cast<double>(latencies.size());
    state.counters["urgent_p99_s"] = latencies.empty() ? -1 : latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
    state.counters["urgent_max_s"] = latencies.empty() ? -1 : latencies.back();
    state.counters["filter_ns"] = filter_ns;
    state.counters["filter_core_pct"] = filter_ns * max_sections_per_s / 1e9 * 100;
    state.counters["stream_s"] = stream_s;
    state.counters["emm_sections"] = static_cast<double>(scrambler.stats().emm_sections);
    state.counters["carousel_entries"] = static_cast<double>(scrambler.stats().emm_carousel_entries);
    state.counters["carousel_mb"] = static_cast<double>(scrambler.stats().emm_carousel_bytes) / 1e6;
    const auto passes = scrambler.emm_carousel_passes();
    state.counters["shared_pass_s"] = passes.shared_seconds;
    state.counters["unique_pass_s"] = passes.unique_seconds;
    if (renewal_s < 0) state.SkipWithError("the renewal did not reach every sampled box within the stream simulated");
    if (departed_renewed > 0) state.SkipWithError("a box that left holds renewed rights");
  }
}
BENCHMARK(million_box_renewal)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
