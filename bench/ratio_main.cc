// The benchmarks' main: Google Benchmark's usual table, then each figure as a ratio to its
// baseline measured in the same run (raw libdvbcsa, signature checking alone, a ZeroMQ echo, the
// engine's store on SQLite).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "usher/core/log.h"

namespace {

// "relay_round_trip/iterations:200/real_time" -> "relay_round_trip"; a numeric argument stays:
// "settlements_concurrent/8/real_time" -> "settlements_concurrent/8".
std::string short_name(const std::string& full) {
  std::string out = full.substr(0, full.find('/'));
  for (auto at = full.find('/'); at != std::string::npos;) {
    const auto next = full.find('/', at + 1);
    const auto part = full.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1);
    if (!part.empty() && part.find_first_not_of("0123456789") == std::string::npos) out += "/" + part;
    at = next;
  }
  return out;
}

// Prints the usual table, then the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred && r.error_message.find("PostgreSQL cannot be started here") != std::string::npos) postgres_missing_ = true;
      if (r.error_occurred) continue;
      if (short_name(r.benchmark_name()) == "pipeline_latency") {
        // In stream time, the same in every repetition; the median's (not the deviation's) if aggregated.
        if (r.run_type != Run::RT_Aggregate || r.aggregate_name == "median") {
          for (const auto& [name, counter] : r.counters) latency_[name] = counter.value;
        }
        continue;
      }
      if (r.counters.contains("pg1_ratio")) {
        // purchases_backend_turns: the backends measured taking turns inside the benchmark.
        std::string name = r.run_name.function_name + "/" + r.run_name.args;
        if (r.run_type != Run::RT_Aggregate || r.aggregate_name == "median") {
          for (const auto& [counter, value] : r.counters) turns_[short_name(name)][counter] = value.value;
        }
        continue;
      }
      if (r.counters.contains("tickets_ratio") || r.counters.contains("core_pct_at_1Mbps")) {
        // stb_bench.cc: the STB's EMM costs, printed from their own counters.
        if (r.run_type != Run::RT_Aggregate || r.aggregate_name == "median") {
          for (const auto& [counter, value] : r.counters) stb_[short_name(r.run_name.function_name)][counter] = value.value;
        }
        continue;
      }
      if (auto ratio = r.counters.find("ratio_to_raw"); ratio != r.counters.end()) {
        // Measured against raw libdvbcsa inside the benchmark itself, taking turns.
        std::string name = r.run_name.function_name;  // without the aggregate's suffix
        if (r.run_type != Run::RT_Aggregate || r.aggregate_name == "median") interleaved_[name] = ratio->second.value;
        continue;
      }
      auto it = r.counters.end();
      for (const char* counter : {"TS_Mbps", "records_per_s", "settlements_per_s", "purchases_per_s"}) {
        if (it == r.counters.end()) it = r.counters.find(counter);
      }
      const bool rate = it != r.counters.end();
      // Round trips compare by time per iteration (lower is better), in the benchmark's own unit.
      const double value = rate ? it->second.value : r.GetAdjustedRealTime();
      // With --benchmark_repetitions the median stands for the benchmark; otherwise the single run.
      std::string name = r.benchmark_name();
      const bool median = name.size() > 7 && name.ends_with("_median");
      if (median) name.resize(name.size() - 7);
      name = short_name(name);
      if (median || !medians_.contains(name)) {
        rates_[name] = value;
        if (!rate) seconds_[name] = value / benchmark::GetTimeUnitMultiplier(r.time_unit);
      }
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
    if (!interleaved_.empty()) {
      // The pipelines' figure: raw libdvbcsa and the pipeline take turns chunk by chunk, so both
      // are timed on the same machine at the same moments.
      std::printf("Pipelines against raw libdvbcsa, taking turns with it chunk by chunk:\n");
      for (const auto& [name, value] : interleaved_) std::printf("  %-28s %.2f x raw libdvbcsa\n", name.c_str(), value);
      std::printf("Timed one after the other (on a shared machine these move with its load from one benchmark to the next):\n");
    }
    ratio("headend_pipeline", "raw_libdvbcsa_encrypt");
    ratio("stb_pipeline", "raw_libdvbcsa_decrypt");
    ratio("headend_cbr_replace", "headend_cbr_add");  // the constant-bitrate path's cost (same CBR input)
    if (rates_.contains("history_settled") && rates_.contains("history_signature_check")) {
      std::printf("%-18s %8.0f records/s settled = %.2f x history_signature_check (%.0f records/s)\n", "history_settled",
                  rates_["history_settled"], rates_["history_settled"] / rates_["history_signature_check"],
                  rates_["history_signature_check"]);
    }
    // Round trips through ZeroMQ against one empty request/reply on it: what the service and its
    // store add to the wire (purchase_round_trip/B: the engine's store on backend B, store_backends_bench.cc).
    for (const char* n : {"relay_round_trip", "purchase_round_trip/0", "purchase_round_trip/1"}) {
      const char* base = "zmq_echo_round_trip";
      if (!seconds_.contains(n) || !seconds_.contains(base)) continue;
      std::printf("%-26s %8.2f ms per round = %.0f x %s (%.0f us)\n", n, seconds_[n] * 1e3, seconds_[n] / seconds_[base], base,
                  seconds_[base] * 1e6);
    }
    // A purchase on PostgreSQL sends its statements one after the other, each a round trip.
    if (seconds_.contains("purchase_round_trip/1") && seconds_.contains("postgres_statement_round_trip")) {
      std::printf("%-26s %8.2f ms per round = %.0f x postgres_statement_round_trip (%.0f us)\n", "purchase_round_trip/1",
                  seconds_["purchase_round_trip/1"] * 1e3, seconds_["purchase_round_trip/1"] / seconds_["postgres_statement_round_trip"],
                  seconds_["postgres_statement_round_trip"] * 1e6);
    }
    if (!latency_.empty()) {
      std::printf("\nLatency added by the CSA batches (stream time, max hold %.0f ms), and zap time (tune to the first\n"
                  "clear packet; its floor is the wait for the ECM, repeated every %.0f ms):\n",
                  latency_["max_hold_ms"], latency_["ecm_interval_ms"]);
      std::printf("  %-13s %12s %10s %12s %10s %18s\n", "service", "headend p99", "STB p99", "zap median", "zap max",
                  "CSA batches full");
      for (const char* rate : {"20M", "2M", "0.128M"}) {
        const std::string r = rate;
        std::printf("  %-13s %9.1f ms %7.1f ms %9.1f ms %7.1f ms %17.0f%%\n", (r + "bit/s").c_str(), latency_["head_p99_ms_" + r],
                    latency_["stb_p99_ms_" + r], latency_["zap_median_ms_" + r], latency_["zap_max_ms_" + r],
                    latency_["batch_fill_pct_" + r]);
      }
    }
    for (const char* n : {"settlements_concurrent/8", "settlements_concurrent/32"}) {
      const char* base = "settlements_concurrent/1";
      if (!rates_.contains(n) || !rates_.contains(base)) continue;
      std::printf("%-26s %6.0f settlements/s = %.2f x %s (%.0f/s)\n", n, rates_[n], rates_[n] / rates_[base], base, rates_[base]);
    }
    if (!turns_.empty()) {
      std::printf("The engine's store on each backend, taking turns round by round (the same moments for all three):\n");
      for (const char* clients : {"1", "8", "32"}) {
        const std::string name = std::string("purchases_backend_turns/") + clients;
        if (!turns_.contains(name)) continue;
        auto& c = turns_[name];
        std::printf("  %-28s SQLite %4.0f/s; PostgreSQL: one engine %4.0f/s = %.2f x SQLite, two engines %4.0f/s = %.2f x SQLite\n",
                    name.c_str(), c["sqlite_per_s"], c["pg1_per_s"], c["pg1_ratio"], c["pg2_per_s"], c["pg2_ratio"]);
      }
    }
    // The engine's store on PostgreSQL (one engine, two engines on one database) against SQLite,
    // with as many clients.
    for (const char* what : {"purchases", "settlements"}) {
      for (const char* clients : {"1", "8", "32"}) {
        const std::string base = std::string(what) + "_backend/0/" + clients;
        for (const char* backend : {"1", "2"}) {
          const std::string n = std::string(what) + "_backend/" + backend + "/" + clients;
          if (!rates_.contains(n) || !rates_.contains(base)) continue;
          std::printf("%-26s %6.0f %s/s = %.2f x %s (%.0f/s)\n", n.c_str(), rates_[n], what, rates_[n] / rates_[base], base.c_str(),
                      rates_[base]);
        }
      }
    }    print_stb();
  }

  // The STB's EMM costs (stb_bench.cc).
  void print_stb() {
    if (stb_.contains("stb_emm_apply_by_tickets")) {
      auto& c = stb_["stb_emm_apply_by_tickets"];
      std::printf("%-26s %6.0f us per EMM holding 4000 tickets = %.2f x holding none (%.0f us), taking turns\n", "stb_emm_apply_by_tickets",
                  c["us_4000_tickets"], c["tickets_ratio"], c["us_0_tickets"]);
      std::printf("%-26s %6.0f us of CPU per EMM holding 4000 tickets = %.2f x holding none (%.0f us)\n", "", c["cpu_us_4000_tickets"],
                  c["cpu_tickets_ratio"], c["cpu_us_0_tickets"]);
    }
    for (const char* n : {"stb_emm_filter", "stb_emm_filter_ts"}) {
      if (!stb_.contains(n)) continue;
      auto& c = stb_[n];
      std::printf("%-26s %6.0f ns per EMM for others = %.3f %% of one core at 1 Mbit/s of EMMs (%.0f EMMs/s)\n", n, c["ns_per_emm"],
                  c["core_pct_at_1Mbps"], 1e6 / (188 * 8));
    }
  }

  // Some benchmark was skipped because no PostgreSQL server could start.
  [[nodiscard]] bool postgres_missing() const { return postgres_missing_; }

 private:
  bool postgres_missing_ = false;
  std::map<std::string, double> rates_;
  std::map<std::string, double> seconds_;  // round trips: seconds per iteration
  std::set<std::string> medians_;
  std::map<std::string, double> latency_;      // pipeline_latency's counters
  std::map<std::string, double> interleaved_;  // *_interleaved: ratio to raw measured inside the benchmark
  std::map<std::string, std::map<std::string, double>> turns_;  // purchases_backend_turns/C: its counters
  std::map<std::string, std::map<std::string, double>> stb_;    // stb_bench.cc: its counters
};

}  // namespace

int main(int argc, char** argv) {
  usher::set_log_level(usher::LogLevel::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  // Where PostgreSQL must run (CI sets USHER_REQUIRE_POSTGRES=1), its benchmarks may not pass by skipping.
  const char* required = std::getenv("USHER_REQUIRE_POSTGRES");
  if (reporter.postgres_missing() && required != nullptr && std::string(required) == "1") {
    std::fprintf(stderr, "usher_bench: PostgreSQL is required (USHER_REQUIRE_POSTGRES=1) and could not be started\n");
    return 1;
  }
  return 0;
}
