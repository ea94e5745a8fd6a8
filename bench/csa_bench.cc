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

#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "broadcast_fixture.h"
#include "usher/core/log.h"
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

// Prints the usual table, then the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      auto it = r.counters.find("TS_Mbps");
      if (it == r.counters.end()) it = r.counters.find("records_per_s");
      const bool rate = it != r.counters.end();
      // Round trips compare by time per iteration (lower is better).
      const double value = rate ? it->second.value : r.GetAdjustedRealTime();
      // With --benchmark_repetitions the median stands for the benchmark; otherwise the single run.
      std::string name = r.benchmark_name();
      const bool median = name.size() > 7 && name.ends_with("_median");
      if (median) name.resize(name.size() - 7);
      name = name.substr(0, name.find('/'));  // "relay_round_trip/iterations:200/real_time" and the like
      if (median || !medians_.contains(name)) rates_[name] = value;
      if (median) medians_.insert(name);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    auto ratio = [&](const char* name, const char* base) {
      if (!rates_.contains(name) || !rates_.contains(base)) return;
      std::printf("%-18s %8.1f Mbit/s of TS = %.2f x %s (%.1f Mbit/s)\n", name, rates_[name],
                  rates_[name] / rates_[base], base, rates_[base]);
    };
    std::printf("\nRatios (same run):\n");
    ratio("headend_pipeline", "raw_libdvbcsa_encrypt");
    ratio("stb_pipeline", "raw_libdvbcsa_decrypt");
    if (rates_.contains("history_settled") && rates_.contains("history_signature_check")) {
      std::printf("%-18s %8.0f records/s settled = %.2f x history_signature_check (%.0f records/s)\n", "history_settled",
                  rates_["history_settled"], rates_["history_settled"] / rates_["history_signature_check"],
                  rates_["history_signature_check"]);
    }
    if (rates_.contains("relay_round_trip") && rates_.contains("zmq_echo_round_trip")) {
      // Both in their own unit: relay in ms, echo in us.
      std::printf("%-18s %8.2f ms per round = %.0f x zmq_echo_round_trip (%.0f us)\n", "relay_round_trip", rates_["relay_round_trip"],
                  rates_["relay_round_trip"] * 1000.0 / rates_["zmq_echo_round_trip"], rates_["zmq_echo_round_trip"]);
    }
  }

 private:
  std::map<std::string, double> rates_;
  std::set<std::string> medians_;
};

}  // namespace

int main(int argc, char** argv) {
  usher::set_log_level(usher::LogLevel::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
