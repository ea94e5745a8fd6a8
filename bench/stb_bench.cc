// The STB's side of the EMM stream (issue 11): what applying one EMM costs with no tickets held and
// with 4,000 (it used to re-read and re-verify every ticket after each EMM), and what filtering the
// EMMs that are not for the box costs, per EMM and as a share of one core at the full EMM rate of a
// 1 Mbit/s EMM stream. Real secure elements on real SQLite files; the operator's side is played with
// its own keys and the formats API.
#include <benchmark/benchmark.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "temp_dir.h"
#include "usher/core/crypto.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/messages.h"
#include "usher/stb/descrambler.h"
#include "usher/stb/secure_element.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"

namespace usher {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;
constexpr std::uint16_t kCa = 0x4AFF;
// A 1 Mbit/s EMM stream carries at most this many TS packets a second; an EMM takes about one.
constexpr double kEmmsPerSecondAt1Mbps = 1'000'000.0 / (188 * 8);

Key256 random_key() {
  Key256 k;
  crypto::random_bytes(k.mutable_bytes());
  return k;
}

// The operator's keys, a sequence counter, and secure elements made for them in a temporary directory.
class BenchOperator {
 public:
  BenchOperator() {
    pub_.ca_system_id = kCa;
    pub_.x25519_public = x_.public_key;
    pub_.ed25519_public = ed_.public_key;
  }
  stb::SecureElement& add_box(std::uint32_t stb_id) {
    auto se = stb::SecureElement::init(dir_.file("stb-" + std::to_string(stb_id)), stb_id, pub_);
    if (!se) std::abort();
    boxes_.push_back(std::make_unique<stb::SecureElement>(std::move(se.value())));
    return *boxes_.back();
  }
  std::vector<std::uint8_t> unique(const stb::SecureElement& se, std::vector<entitlement::EmmItem> items) {
    const auto key = entitlement::derive_emm_key(x_.private_key, se.public_identity().x25519_public, kCa, se.stb_id()).value();
    return entitlement::encode_emm({se.stb_id(), ++sequence_, kT0, std::move(items)}, key);
  }
  // A unique EMM for an STB that is not one of ours (sealed under a throwaway key: the box never
  // gets past its header).
  std::vector<std::uint8_t> unique_for_other(std::uint32_t stb_id) {
    std::vector<entitlement::EmmItem> items;
    items.emplace_back(entitlement::EmmGrant{1, 1, random_key(), kT0, kT0 + 86400});
    return entitlement::encode_emm({stb_id, ++sequence_, kT0, std::move(items)}, random_key());
  }
  std::vector<std::uint8_t> group(std::uint32_t group_id, std::uint32_t key_version) {
    entitlement::EmmMemberGrant g;
    for (std::uint16_t p = 0; p < 256; p += 2) g.members.set(static_cast<std::uint8_t>(p));
    g.not_before = kT0;
    g.not_after = kT0 + 30 * 86400;
    for (std::uint16_t s = 1; s <= 4; ++s) g.services.push_back({s, 1, random_key()});
    std::vector<entitlement::EmmItem> items;
    items.emplace_back(std::move(g));
    return entitlement::encode_shared_emm({{entitlement::EmmAddressType::group, group_id, key_version}, ++sequence_, kT0, std::move(items)},
                                          random_key());
  }
  // Gives `se` `n` tickets, a few per EMM as the engine packs them.
  void give_tickets(stb::SecureElement& se, int n) {
    for (int i = 0; i < n;) {
      std::vector<entitlement::EmmItem> items;
      for (int k = 0; k < 5 && i < n; ++k, ++i) {
        entitlement::Ticket t;
        t.ticket_id = static_cast<std::uint64_t>(i) + 1;
        t.event_id = static_cast<std::uint32_t>(i) + 1;
        t.service_id = 1;
        t.stb_id = se.stb_id();
        t.valid_from = kT0;
        t.valid_until = kT0 + 7200;
        t.issued = kT0;
        t.provider_id = kCa;
        t.title = "Match";
        t.sign(ed_.private_key);
        items.emplace_back(entitlement::EmmTicket{t.encode(), random_key()});
      }
      if (!se.apply_emm(unique(se, std::move(items)))) std::abort();
    }
    if (se.tickets().size() != static_cast<std::size_t>(n)) std::abort();
  }

 private:
  testing::TempDir dir_;
  crypto::X25519KeyPair x_ = crypto::X25519KeyPair::generate();
  crypto::Ed25519KeyPair ed_ = crypto::Ed25519KeyPair::generate();
  entitlement::OperatorPublicFile pub_;
  std::uint64_t sequence_ = 0;
  std::vector<std::unique_ptr<stb::SecureElement>> boxes_;
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

constexpr int kTicketsHeld = 4000;
constexpr int kApplyRounds = 600;

// One grant EMM applied to a box holding no ticket and one to a box holding 4,000, taking turns so
// that both are timed at the same moments of a shared machine. Counters: microseconds per EMM for
// each, and their ratio (1.0: applying an EMM does not depend on the tickets held).
void BM_EmmApplyByTicketsHeld(benchmark::State& state) {
  BenchOperator op;
  auto& empty = op.add_box(1001);
  auto& full = op.add_box(1002);
  op.give_tickets(full, kTicketsHeld);
  // Sealed ahead: only applying is timed.
  std::vector<std::vector<std::uint8_t>> to_empty;
  std::vector<std::vector<std::uint8_t>> to_full;
  for (int i = 0; i < kApplyRounds; ++i) {
    for (auto* se : {&empty, &full}) {
      std::vector<entitlement::EmmItem> items;
      items.emplace_back(entitlement::EmmGrant{static_cast<std::uint16_t>(1 + i % 8), 1, random_key(), kT0, kT0 + 86400 + static_cast<std::uint64_t>(i)});
      (se == &empty ? to_empty : to_full).push_back(op.unique(*se, std::move(items)));
    }
  }
  using Clock = std::chrono::steady_clock;
  Clock::duration spent_empty{};
  Clock::duration spent_full{};
  // CPU time apart: the wall time of an EMM is mostly SQLite's commit waiting for the disk, which
  // moves with the other processes of a shared machine.
  double cpu_empty = 0;
  double cpu_full = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto c0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    const auto a = empty.apply_emm(to_empty.at(i));
    const auto t1 = Clock::now();
    const auto c1 = thread_cpu_seconds();
    const auto b = full.apply_emm(to_full.at(i));
    const auto t2 = Clock::now();
    cpu_empty += c1 - c0;
    cpu_full += thread_cpu_seconds() - c1;
    if (!a || !b || *a != stb::EmmOutcome::applied || *b != stb::EmmOutcome::applied) {
      state.SkipWithError("EMM not applied");
      break;
    }
    spent_empty += t1 - t0;
    spent_full += t2 - t1;
    state.SetIterationTime(std::chrono::duration<double>(t2 - t0).count());
    ++i;
  }
  const auto us = [&](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count() / static_cast<double>(i); };
  state.counters["us_0_tickets"] = us(spent_empty);
  state.counters["us_4000_tickets"] = us(spent_full);
  state.counters["tickets_ratio"] = us(spent_full) / us(spent_empty);
  state.counters["cpu_us_0_tickets"] = cpu_empty * 1e6 / static_cast<double>(i);
  state.counters["cpu_us_4000_tickets"] = cpu_full * 1e6 / static_cast<double>(i);
  state.counters["cpu_tickets_ratio"] = cpu_full / cpu_empty;
}
BENCHMARK(BM_EmmApplyByTicketsHeld)->Name("stb_emm_apply_by_tickets")->Iterations(kApplyRounds)->UseManualTime()->Unit(benchmark::kMicrosecond);

// EMMs that are not for the box: other boxes' unique EMMs, other groups' group EMMs, and its own
// group's under a key version it does not hold. What the secure element does with each (read the
// clear header and skip it), per EMM.
std::vector<std::vector<std::uint8_t>> others_emms(BenchOperator& op, std::size_t n) {
  std::vector<std::vector<std::uint8_t>> out;
  for (std::size_t k = 0; k < n; ++k) {
    if (k % 3 == 0) out.push_back(op.unique_for_other(static_cast<std::uint32_t>(2000 + k)));
    else if (k % 3 == 1) out.push_back(op.group(static_cast<std::uint32_t>(100 + k), 1));
    else out.push_back(op.group(7, 2));
  }
  return out;
}

stb::SecureElement& box_in_group_7(BenchOperator& op) {
  auto& se = op.add_box(1001);
  std::vector<entitlement::EmmItem> items;
  items.emplace_back(entitlement::EmmGroupKey{7, 3, 1, random_key()});
  items.emplace_back(entitlement::EmmGlobalKey{1, random_key()});
  if (!se.apply_emm(op.unique(se, std::move(items)))) std::abort();
  return se;
}

void BM_EmmFilterOthers(benchmark::State& state) {
  BenchOperator op;
  auto& se = box_in_group_7(op);
  const auto emms = others_emms(op, 999);
  std::size_t i = 0;
  for (auto _ : state) {
    auto outcome = se.apply_emm(emms[i++ % emms.size()]);
    if (!outcome || *outcome != stb::EmmOutcome::not_addressed) {
      state.SkipWithError("an EMM for another box was not skipped");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_emm"] = benchmark::Counter(static_cast<double>(state.iterations()) * 1e-9,
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["core_pct_at_1Mbps"] = benchmark::Counter(static_cast<double>(state.iterations()) / (kEmmsPerSecondAt1Mbps * 100.0),
                                                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_EmmFilterOthers)->Name("stb_emm_filter");

// The same EMMs as they arrive: TS packets of the EMM PID through the descrambler (section
// assembly, then the secure element's filter), per EMM.
void BM_EmmFilterOthersFromTs(benchmark::State& state) {
  BenchOperator op;
  auto& se = box_in_group_7(op);
  constexpr std::uint16_t kEmmPid = 0x1FF0;
  std::vector<streams::TsPacket> cat_packets;
  {
    streams::Cat cat;
    streams::append_ca_descriptor(cat.descriptors, {kCa, kEmmPid, {}});
    streams::SectionPacketizer p(streams::kCatPid);
    p.packetize(cat.serialize(), cat_packets);
  }
  auto emms = others_emms(op, 999);
  std::vector<streams::TsPacket> emm_packets;
  streams::SectionPacketizer packetizer(kEmmPid);
  for (const auto& e : emms) packetizer.packetize(e, emm_packets);
  // Played in a loop: a whole number of continuity counter cycles, so that the loop is seamless.
  while (emm_packets.size() % 16 != 0) {
    emms.push_back(op.unique_for_other(9999));
    packetizer.packetize(emms.back(), emm_packets);
  }
  stb::Descrambler d(&se, {});
  std::vector<streams::TsPacket> out;
  d.process(cat_packets, out);
  std::size_t sections = 0;
  for (auto _ : state) {
    out.clear();
    d.process(emm_packets, out);
    sections += emms.size();
  }
  if (d.stats().emm_other_stb != sections || d.stats().emm_refused != 0) {
    const auto why = "an EMM for another box was not skipped (" + std::to_string(d.stats().emm_other_stb) + " of " + std::to_string(sections) +
                     ", " + std::to_string(d.stats().emm_refused) + " refused, " + std::to_string(d.stats().sections_dropped) + " dropped)";
    state.SkipWithError(why.c_str());
  }
  state.counters["packets_per_emm"] = static_cast<double>(emm_packets.size()) / static_cast<double>(emms.size());
  state.counters["ns_per_emm"] = benchmark::Counter(static_cast<double>(sections) * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["core_pct_at_1Mbps"] = benchmark::Counter(static_cast<double>(sections) / (kEmmsPerSecondAt1Mbps * 100.0),
                                                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_EmmFilterOthersFromTs)->Name("stb_emm_filter_ts")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace usher
