// Throughput of the broadcast path against raw libdvbcsa, measured in the same run, and the latency
// the CSA batches add, in stream time.
//
// Baselines: libdvbcsa's bitslice encrypt and decrypt over full batches of 184-byte payloads.
// Pipelines: the headend Scrambler and the STB Descrambler over a real generated H.264 + AAC stream
// held in memory (GStreamer makes it at start-up). Each reports TS Mbit/s; the summary at the end
// gives each pipeline as a ratio to its baseline (the medians when run with --benchmark_repetitions).
#include <benchmark/benchmark.h>

extern "C" {
#include <dvbcsa/dvbcsa.h>
}

#include <time.h>

#include <algorithm>
#include <optional>
#include <string>

#include "broadcast_fixture.h"
#include "stream_latency.h"
#include "synthetic_stream.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"
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

// One full bitslice batch of `packets`' 184-byte payloads, straight through libdvbcsa: the baseline.
template <bool Encrypt>
void raw_batch(dvbcsa_bs_key_s* key, std::span<TsPacket> packets, std::vector<dvbcsa_bs_batch_s>& entries) {
  for (std::size_t i = 0; i < packets.size(); ++i) entries[i] = {packets[i].bytes.data() + 4, 184};
  entries[packets.size()] = {nullptr, 0};
  if constexpr (Encrypt) {
    dvbcsa_bs_encrypt(key, entries.data(), 184);
  } else {
    dvbcsa_bs_decrypt(key, entries.data(), 184);
  }
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
      raw_batch<Encrypt>(key, std::span(data).subspan(first, batch), entries);
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
    // A high-rate service (20 Mbit/s of video, the rate of pipeline_latency's fastest service): it
    // fills its CSA batches within the 20 ms hold (batch_fill_pct), so what is measured is the
    // pipeline's own cost around libdvbcsa. A lower-rate service runs partial batches under the
    // bound, which costs CPU by design (a 12 Mbit/s encode, its rate moving from frame to frame,
    // fills 98 %): pipeline_latency reports how full its batches are. (The SMPTE bars need no more
    // than ~4 Mbit/s whatever is asked; the noise pattern takes every bit.)
    usher::streams::GeneratorOptions g;
    g.seconds = 8;
    g.video_kbps = 20000;
    g.pattern = "snow";
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

// Drives a pipeline as `headend run` and `stb run` do (app/cli.cc, pump()): 2048 packets read into
// one reused buffer, processed, the output written out and its buffer reused. The copy into the
// buffer stands for the read and is not counted: without it the benchmark would stream the whole
// stream (tens of MB, more than the caches) from memory and back, which no run does, and would
// measure the memory against a baseline whose 1.5 MB stay cached. Returns the CPU seconds of this
// thread spent in process() and finish(): the benchmarks that use it run on manual time, this thread's
// CPU time in the pipeline's construction, process() and finish(). `between(n)` runs before each
// chunk of n packets is read, untimed (the interleaved benchmarks run raw libdvbcsa there).
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

template <class Pipeline, class Between = void (*)(std::size_t)>
double drive(Pipeline& pipeline, const std::vector<TsPacket>& stream, std::size_t* packets_out = nullptr,
             Between&& between = [](std::size_t) {}) {
  constexpr std::size_t kChunk = 2048;
  thread_local std::vector<TsPacket> input;
  thread_local std::vector<TsPacket> output;
  input.reserve(kChunk);
  output.reserve(kChunk * 2);
  double seconds = 0;
  std::size_t out_count = 0;
  for (std::size_t at = 0; at < stream.size(); at += kChunk) {
    const std::size_t n = std::min(kChunk, stream.size() - at);
    between(n);
    input.assign(stream.begin() + static_cast<std::ptrdiff_t>(at), stream.begin() + static_cast<std::ptrdiff_t>(at + n));
    output.clear();
    const double t0 = thread_cpu_seconds();
    pipeline.process(input, output);
    seconds += thread_cpu_seconds() - t0;
    benchmark::DoNotOptimize(output.data());
    out_count += output.size();
  }
  output.clear();
  const double t0 = thread_cpu_seconds();
  pipeline.finish(output);
  seconds += thread_cpu_seconds() - t0;
  benchmark::DoNotOptimize(output.data());
  out_count += output.size();
  if (packets_out != nullptr) *packets_out = out_count;
  return seconds;
}

void BM_HeadendPipeline(benchmark::State& state) {
  auto& w = world();
  for (auto _ : state) {
    const double t0 = thread_cpu_seconds();
    usher::headend::StoreKeySource keys(w.world.store());
    usher::headend::Scrambler s(w.config(), keys);
    state.SetIterationTime(thread_cpu_seconds() - t0 + drive(s, w.clear));
    const auto st = s.stats();
    state.counters["batch_fill_pct"] = 100.0 * static_cast<double>(st.packets_scrambled) /
                                       static_cast<double>((st.csa_full_batches + st.csa_partial_batches) * usher::csa_batch_size());
    state.counters["stream_Mbps"] = static_cast<double>(w.clear.size()) * 188 * 8 / 1e6 / s.clock().seconds();
  }
  set_rate(state, w.clear.size());
}
BENCHMARK(BM_HeadendPipeline)->Name("headend_pipeline")->Unit(benchmark::kMillisecond)->UseManualTime();

// The same CBR input under each insertion policy: `add` (nulls replaced where at hand) against
// `replace-nulls` (one packet out per packet in, PCRs moved on while a packet is sent ahead).
template <usher::headend::InsertPolicy kPolicy>
void BM_HeadendCbr(benchmark::State& state) {
  auto& w = world();
  for (auto _ : state) {
    const double t0 = thread_cpu_seconds();
    usher::headend::StoreKeySource keys(w.world.store());
    auto config = w.config();
    config.insert_policy = kPolicy;
    usher::headend::Scrambler s(std::move(config), keys);
    std::size_t out = 0;
    state.SetIterationTime(thread_cpu_seconds() - t0 + drive(s, w.cbr, &out));
    if (kPolicy == usher::headend::InsertPolicy::replace_nulls && out + s.stats().nulls_given_back !=
                                                                       w.cbr.size() + s.stats().packets_borrowed) {
      state.SkipWithError("replace-nulls changed the packet count");
    }
  }
  set_rate(state, w.cbr.size());
}
BENCHMARK(BM_HeadendCbr<usher::headend::InsertPolicy::add>)->Name("headend_cbr_add")->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_HeadendCbr<usher::headend::InsertPolicy::replace_nulls>)->Name("headend_cbr_replace")->Unit(benchmark::kMillisecond)->UseManualTime();

void BM_StbPipeline(benchmark::State& state) {
  auto& w = world();
  for (auto _ : state) {
    const double t0 = thread_cpu_seconds();
    usher::stb::Descrambler d(&w.world.stb(1001), {});
    state.SetIterationTime(thread_cpu_seconds() - t0 + drive(d, w.scrambled));
    if (d.stats().packets_left_scrambled != 0) state.SkipWithError("STB could not descramble");
  }
  set_rate(state, w.scrambled.size());
}
BENCHMARK(BM_StbPipeline)->Name("stb_pipeline")->Unit(benchmark::kMillisecond)->UseManualTime();

// The same two comparisons with raw libdvbcsa and the pipeline taking turns, chunk by chunk (as
// many packets through raw libdvbcsa, in full batches, before each chunk of 2048 the pipeline
// takes; CPU time of this thread): on a shared machine, whose speed moves from one second to the
// next, both see the same machine within a few milliseconds. Reports the ratio directly.
template <bool Encrypt>
void BM_PipelineAgainstRaw(benchmark::State& state) {
  auto& w = world();
  const auto& input = Encrypt ? w.clear : w.scrambled;
  const std::size_t batch = dvbcsa_bs_batch_size();
  std::vector<TsPacket> data(batch * 64, TsPacket::null_packet());
  for (std::size_t i = 0; i < data.size(); ++i) {
    for (auto& b : data[i].payload()) b = static_cast<std::uint8_t>(i * 13 + (&b - data[i].bytes.data()));
  }
  auto cw = usher::ControlWord::random();
  dvbcsa_bs_key_s* key = dvbcsa_bs_key_alloc();
  dvbcsa_bs_key_set(cw.bytes().data(), key);
  std::vector<dvbcsa_bs_batch_s> entries(batch + 1);
  double raw_seconds = 0, pipeline_seconds = 0;
  std::size_t raw_packets = 0, pipeline_packets = 0, owed = 0, next = 0;
  const auto raw_alongside = [&](std::size_t n) {
    owed += n;  // full batches only: what is left over goes with the next chunk
    const double t0 = thread_cpu_seconds();
    for (; owed >= batch; owed -= batch) {
      raw_batch<Encrypt>(key, std::span(data).subspan(next, batch), entries);
      next = (next + batch) % data.size();
      raw_packets += batch;
    }
    benchmark::DoNotOptimize(data.data());
    raw_seconds += thread_cpu_seconds() - t0;
  };
  for (auto _ : state) {
    const double s0 = thread_cpu_seconds();
    if constexpr (Encrypt) {
      usher::headend::StoreKeySource keys(w.world.store());
      usher::headend::Scrambler s(w.config(), keys);
      pipeline_seconds += thread_cpu_seconds() - s0;
      pipeline_seconds += drive(s, input, nullptr, raw_alongside);
    } else {
      usher::stb::Descrambler d(&w.world.stb(1001), {});
      pipeline_seconds += thread_cpu_seconds() - s0;
      pipeline_seconds += drive(d, input, nullptr, raw_alongside);
    }
    pipeline_packets += input.size();
  }
  dvbcsa_bs_key_free(key);
  const double raw_rate = static_cast<double>(raw_packets) / raw_seconds;
  const double pipeline_rate = static_cast<double>(pipeline_packets) / pipeline_seconds;
  state.counters["ratio_to_raw"] = pipeline_rate / raw_rate;
  state.counters["raw_Mbps"] = raw_rate * 188 * 8 / 1e6;
  state.counters["pipeline_Mbps"] = pipeline_rate * 188 * 8 / 1e6;
}
BENCHMARK(BM_PipelineAgainstRaw<true>)->Name("headend_pipeline_interleaved")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PipelineAgainstRaw<false>)->Name("stb_pipeline_interleaved")->Unit(benchmark::kMillisecond);

// The latency the CSA batches add, in stream time (not wall time: the same however fast the machine
// is): for a service of 20, 2 and 0.128 Mbit/s, each alone in its multiplex (in one multiplex every
// packet waits behind the slowest service's: output keeps the input's order), fed one packet at a
// time through the headend and then an STB; the 99th percentile of the service's packets' waits per
// stage (tests/support/stream_latency.h), how full the headend's CSA batches were (the CPU price of
// the bound: a batch costs the same full or not), and the zap time: an STB tuned in at 16 points of
// the stream, the stream time from tuning to its first clear packet, next to the ECM interval (the
// wait for the key is the floor).
struct LatencyWorld {
  static constexpr std::uint64_t kRates[3] = {20'000'000, 2'000'000, 128'000};
  static constexpr const char* kRateNames[3] = {"20M", "2M", "0.128M"};
  usher::testing::BroadcastWorld world;
  std::vector<TsPacket> clear[3];
  std::vector<std::uint64_t> clear_times[3];
  static usher::headend::ScramblerConfig config() {
    usher::headend::ScramblerConfig c;
    c.start_unix = kStart;
    return c;
  }
  LatencyWorld() {
    world.add_stb(1001);
    for (std::uint16_t i = 0; i < 3; ++i) {
      const auto id = static_cast<std::uint16_t>(i + 1);
      world.add_service(id);
      if (!world.store().grant(1001, id, kStart - 10, kStart + 86400)) std::abort();
      usher::testing::SyntheticMuxOptions o;
      o.services = {id};
      o.service_bitrates = {kRates[i]};
      o.bitrate = kRates[i] * 5 / 4 + 256'000;  // room for PSI, ECMs, EMMs
      o.seconds = 4;
      o.seed = id;
      clear[i] = usher::testing::make_synthetic_mux(o);
      clear_times[i] = usher::testing::stream_times(clear[i]);
    }
  }
  static std::vector<std::uint16_t> pids() { return {usher::testing::synthetic_video_pid(0), usher::testing::synthetic_audio_pid(0)}; }
};

void BM_PipelineLatency(benchmark::State& state) {
  static LatencyWorld w;
  constexpr double kTicksPerMs = 27'000.0;
  const auto pids = LatencyWorld::pids();
  for (auto _ : state) {
    for (std::size_t r = 0; r < 3; ++r) {
      const std::string rate = LatencyWorld::kRateNames[r];
      usher::headend::StoreKeySource keys(w.world.store());
      usher::headend::Scrambler scrambler(LatencyWorld::config(), keys);
      std::vector<TsPacket> scrambled;
      std::size_t survey_end = w.clear[r].size();
      const auto head = usher::testing::feed_one_by_one(
          scrambler, w.clear[r], w.clear_times[r], 0, pids,
          [&](std::size_t i, const std::vector<TsPacket>& out) {
            if (!scrambler.surveying() && survey_end == w.clear[r].size()) survey_end = i + 1;
            scrambled.insert(scrambled.end(), out.begin(), out.end());
          },
          &survey_end);
      scrambler.finish(scrambled);
      const auto hs = scrambler.stats();
      const auto times = usher::testing::stream_times(scrambled);
      // The STB from the start: it takes its entitlements from the stream's EMMs.
      // Until its second PCR the STB's clock runs at an assumed rate: measured from when it knows it.
      usher::stb::Descrambler box(&w.world.stb(1001), {});
      std::size_t rate_known = 0;
      const auto stb = usher::testing::feed_one_by_one(
          box, scrambled, times, 0, pids,
          [&](std::size_t i, const auto&) {
            if (!box.clock().bitrate_measured()) rate_known = i + 1;
          },
          &rate_known);
      if (box.stats().packets_descrambled == 0) {
        state.SkipWithError("the STB descrambled nothing");
        return;
      }
      state.counters["head_p99_ms_" + rate] = static_cast<double>(head.quantile(pids, 0.99)) / kTicksPerMs;
      state.counters["stb_p99_ms_" + rate] = static_cast<double>(stb.quantile(pids, 0.99)) / kTicksPerMs;
      state.counters["batch_fill_pct_" + rate] =
          100.0 * static_cast<double>(hs.packets_scrambled) /
          static_cast<double>((hs.csa_full_batches + hs.csa_partial_batches) * usher::csa_batch_size());
      // Zapping: tuned in at 16 points from 0.5 s on, 137 ms apart.
      std::vector<double> zaps;
      for (std::uint64_t k = 0; k < 16; ++k) {
        const std::uint64_t at = (500 + 137 * k) * 27'000;
        const auto tune = static_cast<std::size_t>(std::lower_bound(times.begin(), times.end(), at) - times.begin());
        usher::stb::Descrambler d(&w.world.stb(1001), {});
        std::vector<TsPacket> out;
        std::optional<std::uint64_t> first_clear;
        for (std::size_t i = tune; i < scrambled.size() && !first_clear; ++i) {
          out.clear();
          d.process(std::span(scrambled).subspan(i, 1), out);
          for (const auto& p : out) {
            if (std::find(pids.begin(), pids.end(), p.pid()) != pids.end() && p.scrambling() == usher::streams::Scrambling::clear) {
              first_clear = times[i] - times[tune];
              break;
            }
          }
        }
        if (!first_clear) {
          state.SkipWithError("an STB did not get the service clear after zapping");
          return;
        }
        zaps.push_back(static_cast<double>(*first_clear) / kTicksPerMs);
      }
      std::sort(zaps.begin(), zaps.end());
      state.counters["zap_median_ms_" + rate] = zaps[zaps.size() / 2];
      state.counters["zap_max_ms_" + rate] = zaps.back();
    }
    state.counters["ecm_interval_ms"] = LatencyWorld::config().ecm_interval_ms;
    state.counters["max_hold_ms"] = LatencyWorld::config().max_hold_ms;
  }
}
BENCHMARK(BM_PipelineLatency)->Name("pipeline_latency")->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
