// usher headend run: scramble a transport stream.
#include <cstdio>
#include <sstream>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/headend/scrambler.h"

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher headend: the scrambler

  usher headend run --in SRC --out DST [options]
      SRC, DST: a file, - (stdin/stdout), or udp://host:port (multicast joined; UDP output is
      paced by the stream's PCRs).
    --entitlement-home DIR   operator store with service keys and EMMs (default usher-data/entitlement)
    --services 1,2           service_ids (program_numbers) to scramble (default: all in the PAT)
    --crypto-period SECONDS  control word lifetime in stream time (default 10)
    --ecm-interval MS        ECM repetition (default 100)
    --emm-pid PID --ecm-pid PID   CA PIDs (defaults 0x1FF0, 0x1FE0 downwards; moved if in use)
    --start-time TIME        broadcast time of the first packet, carried in ECMs (default now)
    --cw-file FILE           test mode: fixed control words (16 hex digits per line: even, odd)
    --bitrate BPS            rate assumed until PCRs are seen
    --idle-timeout MS        a UDP input ends after this much silence (default: never)
)";

}  // namespace

int cmd_headend(const std::vector<std::string>& argv) {
  std::string sub;
  std::optional<Args> parsed;
  if (auto code = start_command(argv, kUsage, sub, parsed)) return *code;
  const Args& a = *parsed;
  if (sub != "run") throw UsageError("unknown subcommand '" + sub + "' (run)");
  Logger log("headend");
  headend::ScramblerConfig config;
  if (a.has("services")) {
    std::stringstream ss(a.get("services"));
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        config.services.insert(static_cast<std::uint16_t>(std::stoul(item, nullptr, 0)));
      } catch (const std::exception&) {
        throw UsageError("--services expects comma-separated service ids, got '" + a.get("services") + "'");
      }
    }
  }
  const auto period = a.number("crypto-period", 10);
  if (period <= 0) throw UsageError("--crypto-period must be positive");
  config.crypto_period_ms = static_cast<std::uint32_t>(period * 1000);
  config.ecm_interval_ms = static_cast<std::uint32_t>(a.number("ecm-interval", 100));
  config.emm_pid = static_cast<std::uint16_t>(a.number("emm-pid", 0x1FF0));
  config.ecm_pid_base = static_cast<std::uint16_t>(a.number("ecm-pid", 0x1FE0));
  config.assumed_bitrate = static_cast<std::uint64_t>(a.number("bitrate", 10'000'000));
  if (a.has("start-time")) config.start_unix = parse_time(a.get("start-time"));
  if (a.has("cw-file")) {
    auto cws = read_cw_file(a.get("cw-file"));
    if (!cws) throw std::runtime_error(cws.error().message);
    config.fixed_cws = std::move(cws.value());
    log.warn("fixed control words from ", a.get("cw-file"), ": test mode, not for broadcast");
  }
  auto store_result = entitlement::EntitlementStore::open(a.get("entitlement-home", "usher-data/entitlement"));
  if (!store_result) throw std::runtime_error(store_result.error().message);
  auto& store = store_result.value();
  headend::StoreKeySource keys(store);

  config.ca_system_id = store.ca_system_id();
  auto in = streams::open_source(a.require("in"), {std::chrono::milliseconds(a.number("idle-timeout", 0))});
  auto out = streams::open_sink(a.require("out"));
  headend::Scrambler scrambler(std::move(config), keys);
  pump(
      *in, *out, [&](auto input, auto& output) { scrambler.process(input, output); },
      [&](auto& output) { scrambler.finish(output); },
      [&] {
        scrambler.refresh_emms();
        const auto s = scrambler.stats();
        log.debug("stream time ", scrambler.clock().seconds(), " s, ", s.packets_scrambled, " packets scrambled");
      });
  const auto s = scrambler.stats();
  const auto& clock = scrambler.clock();
  if (!clock.bitrate_measured()) log.warn("no PCR found: stream time was estimated at an assumed bitrate");
  std::fprintf(stderr,
               "{\"packets_in\":%llu,\"packets_out\":%llu,\"packets_scrambled\":%llu,\"services_scrambled\":%llu,"
               "\"crypto_periods\":%llu,\"ecm_sections\":%llu,\"emm_sections\":%llu,\"pmts_rewritten\":%llu,"
               "\"nulls_replaced\":%llu,\"packets_added\":%llu,\"csa_full_batches\":%llu,\"csa_partial_batches\":%llu,"
               "\"bitrate\":%llu,\"stream_seconds\":%.3f,\"input_bytes_skipped\":%llu}\n",
               static_cast<unsigned long long>(s.packets_in), static_cast<unsigned long long>(s.packets_out),
               static_cast<unsigned long long>(s.packets_scrambled), static_cast<unsigned long long>(s.services_scrambled),
               static_cast<unsigned long long>(s.crypto_periods), static_cast<unsigned long long>(s.ecm_sections),
               static_cast<unsigned long long>(s.emm_sections), static_cast<unsigned long long>(s.pmts_rewritten),
               static_cast<unsigned long long>(s.nulls_replaced), static_cast<unsigned long long>(s.packets_added),
               static_cast<unsigned long long>(s.csa_full_batches), static_cast<unsigned long long>(s.csa_partial_batches),
               static_cast<unsigned long long>(clock.bitrate()), clock.seconds(),
               static_cast<unsigned long long>(in->discarded_bytes()));
  if (s.services_scrambled == 0) {
    log.error("no service was scrambled (no PAT/PMT found, or --services matched nothing)");
    return 1;
  }
  return 0;
}

}  // namespace usher::cli
