// Throughput of the broadcast path against raw libdvbcsa, measured in the same run.
//
// Baselines: libdvbcsa's bitslice encrypt and decrypt over full batches of 184-byte payloads.
// Pipelines: the headend Scrambler and the STB Descrambler over a real generated H.264 + AAC stream
// held in memory (GStreamer makes it at start-up). Each reports TS Mbit/s; the summary at the end
// gives each pipeline as a ratio to its baseline (the medians when run with --benchmark_repetitions).
#include <benchmark/benchmark.h>

extern "C" {
#include <dvbcsa/dvbcsa.h>
}

#include <string>

#include "broadcast_fixture.h"
#include "usher/headend/scrambler.h"
#include "usher/stb/descrambler.h"
#include "usher/streams/generator.h"
#include "usher/streams/io.h"

namespace {

using usher::streams::TsPacket;
constexpr std::uint64_t kStart = 1'900'000'000;

void set_rate(benchmark::State& state, std::size_t packets_per_iteration) {
  state.counters["TS_Mbps"] = benchmark::Counter(static_cast<double>(packets_per_iteration) * 188 * 8 / 1e6,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

template <bool Encrypt>
void BM_RawBitslice(benchmark::State& state) {
  const std::size_t batch = dvbcsa_bs_batch_size();
  const std::size_t packets = batch * 64;
  std::vector<TsPacket> data(packets, TsPacket::null_packet());
  for (std::size_t i = 0; i < packets; ++i) {
    for (auto& b : data[i].payload()) b = static_cast<std::uint8_t>(i * 13 + (&b - data[i].bytes.data()));
  }
  auto cw = usher::ControlWord::random();
  dvbcsa_bs_key_s* key = dvbcsa_bs_key_alloc();
  dvbcsa_bs_key_set(cw.bytes().data(), key);
  std::vector<dvbcsa_bs_batch_s> entries(batch + 1);
  for (auto _ : state) {
    for (std::size_t first = 0; first < packets; first += batch) {
      for (std::size_t i = 0; i < batch; ++i) entries[i] = {data[first + i].bytes.data() + 4, 184};
      entries[batch] = {nullptr, 0};
      if constexpr (Encrypt) {
        dvbcsa_bs_encrypt(key, entries.data(), 184);
      } else {
        dvbcsa_bs_decrypt(key, entries.data(), 184);
      }
    }
    benchmark::DoNotOptimize(data.data());
  }
  dvbcsa_bs_key_free(key);
  set_rate(state, packets);
}
BENCHMARK(BM_RawBitslice<true>)->Name("raw_libdvbcsa_encrypt")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawBitslice<false>)->Name("raw_libdvbcsa_decrypt")->Unit(benchmark::kMillisecond);

// One operator, a real stream, its scrambled form, and an entitled STB, made once.
struct World {
  usher::testing::BroadcastWorld world;
  std::vector<TsPacket> clear;
  std::vector<TsPacket> scrambled;
  std::vector<TsPacket> cbr;  // the same stream padded with null packets to a constant rate (40 % stuffing)
  World() {
    world.add_service(1);
    world.add_stb(1001);
    if (!world.store().grant(1001, 1, kStart - 10, kStart + 86400)) std::abort();
    usher::streams::GeneratorOptions g;
    g.seconds = 20;
    g.video_kbps = 4000;
    usher::streams::generate_test_stream(world.dir().file("bench.ts"), g);
    clear = usher::streams::read_ts_file(world.dir().file("bench.ts"));
    scrambled = scramble_once();
    // Two nulls after every three packets: the PCRs no longer match the rate, which the scrambler
    // does not mind; it is the per-packet cost of the constant-bitrate path that is measured.
    for (std::size_t i = 0; i < clear.size(); ++i) {
      cbr.push_back(clear[i]);
      if (i % 3 == 2) {
        cbr.push_back(TsPacket::null_packet());
        cbr.push_back(TsPacket::null_packet());
      }
    }
  }
  usher::headend::ScramblerConfig config() {
    usher::headend::ScramblerConfig c;
    c.start_unix = kStart;
    return c;
  }
  std::vector<TsPacket> scramble_once() {
    usher::headend::StoreKeySource keys(world.store());
    usher::headend::Scrambler s(config(), keys);
    std::vector<TsPacket> out;
    out.reserve(clear.size() + clear.size() / 20);
    for (std::size_t i = 0; i < clear.size(); i += 2048) s.process(std::span(clear).subspan(i, std::min<std::size_t>(2048, clear.size() - i)), out);
    s.finish(out);
    return out;
  }
};
World& world() {
  static World w;
  return w;
}

void BM_HeadendPipeline(benchmark::State& state) {
  auto& w = world();
  std::vector<TsPacket> out;
  out.reserve(w.clear.size() * 2);
  for (auto _ : state) {
    usher::headend::StoreKeySource keys(w.world.store());
    usher::headend::Scrambler s(w.config(), keys);
    out.clear();
    for (std::size_t i = 0; i < w.clear.size(); i += 2048) {
      s.process(std::span(w.clear).subspan(i, std::min<std::size_t>(2048, w.clear.size() - i)), out);
    }
    s.finish(out);
    benchmark::DoNotOptimize(out.data());
  }
  set_rate(state, w.clear.size());
}
BENCHMARK(BM_HeadendPipeline)->Name("headend_pipeline")->Unit(benchmark::kMillisecond);

// The same CBR input under each insertion policy: `add` (nulls replaced where at hand) against
// `replace-nulls` (one packet out per packet in, PCRs moved on while a packet is sent ahead).
template <usher::headend::InsertPolicy kPolicy>
void BM_HeadendCbr(benchmark::State& state) {
  auto& w = world();
  std::vector<TsPacket> out;
  out.reserve(w.cbr.size() * 2);
  for (auto _ : state) {
    usher::headend::StoreKeySource keys(w.world.store());
    auto config = w.config();
    config.insert_policy = kPolicy;
    usher::headend::Scrambler s(std::move(config), keys);
    out.clear();
    for (std::size_t i = 0; i < w.cbr.size(); i += 2048) {
      s.process(std::span(w.cbr).subspan(i, std::min<std::size_t>(2048, w.cbr.size() - i)), out);
    }
    s.finish(out);
    if (kPolicy == usher::headend::InsertPolicy::replace_nulls && out.size() + s.stats().nulls_given_back !=
                                                                       w.cbr.size() + s.stats().packets_borrowed) {
      state.SkipWithError("replace-nulls changed the packet count");
    }
    benchmark::DoNotOptimize(out.data());
  }
  set_rate(state, w.cbr.size());
}
BENCHMARK(BM_HeadendCbr<usher::headend::InsertPolicy::add>)->Name("headend_cbr_add")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HeadendCbr<usher::headend::InsertPolicy::replace_nulls>)->Name("headend_cbr_replace")->Unit(benchmark::kMillisecond);

void BM_StbPipeline(benchmark::State& state) {
  auto& w = world();
  std::vector<TsPacket> out;
  out.reserve(w.scrambled.size());
  for (auto _ : state) {
    usher::stb::Descrambler d(&w.world.stb(1001), {});
    out.clear();
    for (std::size_t i = 0; i < w.scrambled.size(); i += 2048) {
      d.process(std::span(w.scrambled).subspan(i, std::min<std::size_t>(2048, w.scrambled.size() - i)), out);
    }
    d.finish(out);
    if (d.stats().packets_left_scrambled != 0) state.SkipWithError("STB could not descramble");
    benchmark::DoNotOptimize(out.data());
  }
  set_rate(state, w.scrambled.size());
}
BENCHMARK(BM_StbPipeline)->Name("stb_pipeline")->Unit(benchmark::kMillisecond);

}  // namespace
