// usher headend run: scramble a transport stream.
#include <cstdio>
#include <sstream>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/headend/engine_link.h"
#include "usher/headend/scrambler.h"

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher headend: the scrambler

  usher headend init --id N --operator ENT_HOME/operator.pub [--home DIR]
      Makes the headend's key pair (DIR defaults to usher-data/headend); register DIR/headend.pub
      with `usher entitlement headend add --file DIR/headend.pub`.
  usher headend run --in SRC --out DST [options]
      SRC, DST: a file, - (stdin/stdout), or udp://host:port (multicast joined; UDP output is
      paced by the stream's PCRs).
    --engine ENDPOINT        take keys, PPV events and EMMs from a running engine (ZeroMQ), with
                             this headend's identity (--home DIR); keeps scrambling if it goes away
    --entitlement-home DIR   or read them from the operator's store directly
                             (default usher-data/entitlement)
    --services 1,2           service_ids (program_numbers) to scramble (default: all in the PAT)
    --crypto-period SECONDS  control word lifetime in stream time (default 10)
    --ecm-interval MS        ECM repetition (default 100)
    --emm-pid PID --ecm-pid PID   CA PIDs (defaults 0x1FF0, 0x1FE0 downwards; moved if the input
                             uses them; 0x0000-0x001F, 0x1FFF and the input's PSI PIDs refused)
    --pass-scrambled         pass packets of a chosen service that arrive already scrambled as
                             they are (otherwise such an input is refused)
    --start-time TIME        broadcast time of the first packet, carried in ECMs (default now)
    --cw-file FILE           test mode: fixed control words (16 hex digits per line: even, odd)
    --bitrate BPS            rate assumed until PCRs are seen
    --insert MODE            inserted packets (CAT, PMT, ECM, EMM, EIT): replace-nulls (never adds:
                             output rate = input rate), add (added where no null is at hand), or
                             auto (default: replace-nulls when the input's stuffing is enough)
    --emm-bitrate BPS        the EMMs' bandwidth share (default 128000)
    --network-id N           original_network_id in the SDT and EIT (default: the input SDT's,
                             else 0xFF01)
    --idle-timeout MS        a UDP input ends after this much silence (default: never)
)";

}  // namespace

int cmd_headend(const std::vector<std::string>& argv) {
  std::string sub;
  std::optional<Args> parsed;
  if (auto code = start_command(argv, kUsage, sub, parsed, {"pass-scrambled"})) return *code;
  const Args& a = *parsed;
  if (sub == "init") {
    const auto id = a.require_number("id");
    if (id <= 0 || id > 0x7FFFFFFF) throw UsageError("--id must be from 1 to 2147483647");
    auto op = entitlement::OperatorPublicFile::read(a.require("operator"));
    if (!op) throw std::runtime_error(op.error().message);
    const auto home = a.get("home", "usher-data/headend");
    auto identity = headend::HeadendIdentity::init(home, static_cast<std::uint32_t>(id), *op);
    if (!identity) throw std::runtime_error(identity.error().message);
    std::printf("headend %lld initialised in %s; register it with: usher entitlement headend add --file %s/headend.pub\n",
                static_cast<long long>(id), home.c_str(), home.c_str());
    return 0;
  }
  if (sub != "run") throw UsageError("unknown subcommand '" + sub + "' (init, run)");
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
  config.pass_scrambled = a.has("pass-scrambled");
  if (auto policy = headend::parse_insert_policy(a.get("insert", "auto")); policy) {
    config.insert_policy = *policy;
  } else {
    throw UsageError(policy.error().message);
  }
  const auto emm_bitrate = a.number("emm-bitrate", 128'000);
  if (emm_bitrate < 0) throw UsageError("--emm-bitrate must be 0 (no EMMs) or more");
  config.emm_bitrate = static_cast<std::uint64_t>(emm_bitrate);
  if (a.has("network-id")) {
    const auto onid = a.number("network-id", 0);
    if (onid < 0 || onid > 0xFFFF) throw UsageError("--network-id must be from 0 to 65535");
    config.original_network_id = static_cast<std::uint16_t>(onid);
  }
  if (a.has("start-time")) config.start_unix = parse_time(a.get("start-time"));
  if (a.has("cw-file")) {
    auto cws = read_cw_file(a.get("cw-file"));
    if (!cws) throw std::runtime_error(cws.error().message);
    config.fixed_cws = std::move(cws.value());
    log.warn("fixed control words from ", a.get("cw-file"), ": test mode, not for broadcast");
  }
  std::optional<entitlement::EntitlementStore> store;
  std::unique_ptr<headend::KeySource> keys;
  headend::EngineKeySource* engine = nullptr;
  if (a.has("engine")) {
    auto identity = headend::HeadendIdentity::open(a.get("home", "usher-data/headend"));
    if (!identity) throw std::runtime_error(identity.error().message);
    auto source = std::make_unique<headend::EngineKeySource>(a.get("engine"), *identity);
    if (auto s = source->fetch(); !s) {
      throw std::runtime_error("cannot get keys from the engine at " + a.get("engine") + ": " + s.error().message);
    }
    source->start();
    engine = source.get();
    config.ca_system_id = identity->ca_system_id();
    keys = std::move(source);
  } else {
    auto opened = entitlement::EntitlementStore::open(a.get("entitlement-home", "usher-data/entitlement"));
    if (!opened) throw std::runtime_error(opened.error().message);
    store.emplace(std::move(opened.value()));
    config.ca_system_id = store->ca_system_id();
    keys = std::make_unique<headend::StoreKeySource>(*store);
  }
  // Refusals come before anything is written: the output is created at the first packet out.
  streams::check_output_is_not_input(a.require("in"), a.require("out"));
  auto in = streams::open_source(a.require("in"), {std::chrono::milliseconds(a.number("idle-timeout", 0))});
  headend::Scrambler scrambler(std::move(config), *keys);
  auto refused = [&] {
    if (scrambler.refusal()) throw std::runtime_error(scrambler.refusal()->message);
  };
  refused();
  streams::SinkOptions sink_options;
  sink_options.open_on_first_write = true;
  auto out = streams::open_sink(a.require("out"), sink_options);
  pump(
      *in, *out,
      [&](auto input, auto& output) {
        scrambler.process(input, output);
        refused();
      },
      [&](auto& output) {
        scrambler.finish(output);
        refused();
      },
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
               "\"nulls_replaced\":%llu,\"packets_added\":%llu,\"packets_dropped\":%llu,\"already_scrambled\":%llu,\"csa_full_batches\":%llu,\"csa_partial_batches\":%llu,"
               "\"replacing_nulls\":%s,\"packets_borrowed\":%llu,\"inserts_late\":%llu,\"repetitions_skipped\":%llu,\"emm_packets\":%llu,"
               "\"bitrate\":%llu,\"stream_seconds\":%.3f,\"input_bytes_skipped\":%llu}\n",
               static_cast<unsigned long long>(s.packets_in), static_cast<unsigned long long>(s.packets_out),
               static_cast<unsigned long long>(s.packets_scrambled), static_cast<unsigned long long>(s.services_scrambled),
               static_cast<unsigned long long>(s.crypto_periods), static_cast<unsigned long long>(s.ecm_sections),
               static_cast<unsigned long long>(s.emm_sections), static_cast<unsigned long long>(s.pmts_rewritten),
               static_cast<unsigned long long>(s.nulls_replaced), static_cast<unsigned long long>(s.packets_added),
               static_cast<unsigned long long>(s.packets_dropped), static_cast<unsigned long long>(s.already_scrambled),
               static_cast<unsigned long long>(s.csa_full_batches), static_cast<unsigned long long>(s.csa_partial_batches),
               s.replacing_nulls ? "true" : "false", static_cast<unsigned long long>(s.packets_borrowed),
               static_cast<unsigned long long>(s.inserts_late), static_cast<unsigned long long>(s.repetitions_skipped),
               static_cast<unsigned long long>(s.emm_packets),
               static_cast<unsigned long long>(clock.bitrate()), clock.seconds(),
               static_cast<unsigned long long>(in->discarded_bytes()));
  if (engine != nullptr && !engine->engine_reachable()) log.warn("finished while the engine was unreachable");
  if (s.services_scrambled == 0) {
    log.error("no service was scrambled (no PAT/PMT found, or --services matched nothing)");
    return 1;
  }
  return 0;
}

}  // namespace usher::cli
