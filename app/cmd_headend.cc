// usher headend run: scramble a transport stream.
#include <cstdio>

#include <cmath>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/headend/engine_link.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"

namespace usher::cli {
namespace {

struct HeadendOptions {
  std::string home;
  std::uint32_t id = 0;
  std::string operator_file;
  std::string in;
  std::string out;
  std::string engine;
  std::string entitlement_home = "usher-data/entitlement";
  std::vector<std::uint16_t> services;
  std::uint64_t crypto_period_s = 10;
  std::uint64_t ecm_interval_ms = 100;
  std::uint16_t emm_pid = 0x1FF0;
  std::uint16_t ecm_pid = 0x1FE0;
  std::uint64_t start_time = 0;
  std::string cw_file;
  std::uint64_t bitrate = 10'000'000;
  std::uint64_t idle_timeout_ms = 0;
  bool pass_scrambled = false;
  std::string insert = "auto";
  std::uint64_t emm_bitrate = 128'000;
  std::uint64_t emm_kbps = 0;
  bool emm_budget_given = false;  // --emm-bitrate or --emm-kbps: else the engine's setting, else the default
  std::int32_t network_id = -1;  // -1: the input SDT's, else 0xFF01
  std::uint64_t max_hold_ms = 20;
  MonitorOptions monitor;
};

// One line of what the scrambler is doing (live input): rates over the last interval, each service,
// ECMs, the EMMs' share used, continuity errors in the input.
std::string headend_status(const headend::Scrambler& scrambler, const headend::ScramblerStats& now,
                           const headend::ScramblerStats& before, double seconds, double stream_seconds, std::uint64_t emm_bitrate) {
  std::string services;
  for (const auto& st : scrambler.service_states()) {
    if (!services.empty()) services += ", ";
    services += std::to_string(st.service_id) + " " + headend::to_string(st.mode);
    if (st.mode == headend::ServiceState::Mode::scrambled) services += " (period " + std::to_string(st.crypto_period) + ")";
  }
  const double emm_kbps = stream_seconds > 0 ? static_cast<double>(now.emm_packets - before.emm_packets) * 188.0 * 8.0 / stream_seconds / 1e3 : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "in %.2f Mbit/s, out %.2f Mbit/s; ECMs %llu; EMM %.1f of %.1f kbit/s; CC errors %llu; services: ",
                packet_mbps(now.packets_in - before.packets_in, seconds), packet_mbps(now.packets_out - before.packets_out, seconds),
                static_cast<unsigned long long>(now.ecm_sections), emm_kbps, static_cast<double>(emm_bitrate) / 1e3,
                static_cast<unsigned long long>(now.input_cc_errors));
  return buf + (services.empty() ? std::string("none yet (no PAT/PMT)") : services);
}

std::string headend_metrics(const headend::Scrambler& scrambler, const headend::ScramblerStats& s, std::uint64_t emm_bitrate) {
  PrometheusText m;
  m.counter("usher_headend_packets_in_total", "TS packets read from the input.", static_cast<double>(s.packets_in));
  m.counter("usher_headend_packets_out_total", "TS packets written to the output.", static_cast<double>(s.packets_out));
  m.counter("usher_headend_packets_scrambled_total", "TS packets scrambled with DVB-CSA2.", static_cast<double>(s.packets_scrambled));
  m.counter("usher_headend_packets_dropped_total", "Input packets dropped rather than sent in clear.", static_cast<double>(s.packets_dropped));
  m.counter("usher_headend_ecm_sections_total", "ECM sections sent.", static_cast<double>(s.ecm_sections));
  m.counter("usher_headend_emm_sections_total", "EMM sections sent.", static_cast<double>(s.emm_sections));
  m.counter("usher_headend_emm_packets_total", "TS packets of EMMs sent.", static_cast<double>(s.emm_packets));
  m.counter("usher_headend_crypto_periods_total", "Crypto periods started.", static_cast<double>(s.crypto_periods));
  m.counter("usher_headend_continuity_errors_total", "Continuity counter errors in the input.", static_cast<double>(s.input_cc_errors));
  m.counter("usher_headend_repetitions_skipped_total", "ECM/CAT/EIT repetitions skipped for want of room.",
            static_cast<double>(s.repetitions_skipped));
  m.gauge("usher_headend_emm_bitrate_share", "The EMMs' bandwidth share in bit/s.", static_cast<double>(emm_bitrate));
  m.gauge("usher_headend_emm_carousel_entries", "EMMs live on the carousel.", static_cast<double>(s.emm_carousel_entries));
  m.gauge("usher_headend_emm_carousel_cycle_seconds",
          "The longest a box switched on for the first time waits for its EMMs on the carousel (its key EMM, then the group and global ones).",
          scrambler.emm_carousel_cycle_seconds());
  m.gauge("usher_headend_emm_shared_pass_seconds",
          "One pass of the carousel's group and global EMMs: the longest a box that holds its group key waits for a renewal or a key.",
          scrambler.emm_carousel_passes().shared_seconds);
  m.gauge("usher_headend_stream_seconds", "Stream time processed, in seconds.", scrambler.clock().seconds());
  m.gauge("usher_headend_bitrate", "The stream's bit rate as measured from its PCRs (bit/s).", static_cast<double>(scrambler.clock().bitrate()));
  for (const auto& st : scrambler.service_states()) {
    m.gauge("usher_headend_service_scrambled", "1 when the service's packets go out scrambled.",
            st.mode == headend::ServiceState::Mode::scrambled ? 1 : 0,
            {{"service_id", std::to_string(st.service_id)}, {"state", headend::to_string(st.mode)}});
  }
  return m.str();
}

int run(const HeadendOptions& a, bool start_time_given) {
  Logger log("headend");
  install_stop_handlers();  // before any thread starts: a stop finishes the run as its input's end would
  MetricsSnapshot snapshot;
  const auto metrics = start_metrics(a.monitor, [&snapshot] { return snapshot.read(); });
  headend::ScramblerConfig config;
  config.services.insert(a.services.begin(), a.services.end());
  config.crypto_period_ms = static_cast<std::uint32_t>(a.crypto_period_s * 1000);
  config.ecm_interval_ms = static_cast<std::uint32_t>(a.ecm_interval_ms);
  config.emm_pid = a.emm_pid;
  config.ecm_pid_base = a.ecm_pid;
  config.assumed_bitrate = a.bitrate;
  config.pass_scrambled = a.pass_scrambled;
  auto policy = headend::parse_insert_policy(a.insert);
  if (!policy) throw UsageError(policy.error().message);
  config.insert_policy = *policy;
  config.emm_bitrate = a.emm_kbps > 0 ? a.emm_kbps * 1000 : a.emm_bitrate;
  config.max_hold_ms = static_cast<std::uint32_t>(a.max_hold_ms);
  if (a.network_id >= 0) config.original_network_id = static_cast<std::uint16_t>(a.network_id);
  if (start_time_given) config.start_unix = a.start_time;
  if (!a.cw_file.empty()) {
    auto cws = read_cw_file(a.cw_file);
    if (!cws) throw std::runtime_error(cws.error().message);
    config.fixed_cws = std::move(cws.value());
    log.warn("fixed control words from ", a.cw_file, ": test mode, not for broadcast");
  }
  std::optional<entitlement::EntitlementStore> store;
  std::unique_ptr<headend::KeySource> keys;
  headend::EngineKeySource* engine = nullptr;
  if (!a.engine.empty()) {
    auto identity = headend::HeadendIdentity::open(a.home);
    if (!identity) throw std::runtime_error(identity.error().message);
    auto source = std::make_unique<headend::EngineKeySource>(a.engine, *identity);
    if (auto s = source->fetch(); !s) {
      throw std::runtime_error("cannot get keys from the engine at " + a.engine + ": " + s.error().message);
    }
    source->start();
    engine = source.get();
    if (!a.emm_budget_given && source->engine_emm_bitrate() > 0) {
      config.emm_bitrate = source->engine_emm_bitrate();
      log.info("EMM budget ", config.emm_bitrate / 1000, " kbit/s, as set on the engine");
    }
    config.ca_system_id = identity->ca_system_id();
    keys = std::move(source);
  } else {
    auto opened = entitlement::EntitlementStore::open(a.entitlement_home);
    if (!opened) throw std::runtime_error(opened.error().message);
    store.emplace(std::move(opened.value()));
    config.ca_system_id = store->ca_system_id();
    keys = std::make_unique<headend::StoreKeySource>(*store);
  }
  // Refusals come before anything is written: the output is created at the first packet out.
  streams::check_output_is_not_input(a.in, a.out);
  auto in = streams::open_source(a.in, live_source_options(std::chrono::milliseconds(a.idle_timeout_ms)));
  const bool live = is_live_input(a.in) && in->size_bytes() == 0;  // stdin redirected from a file has a size: progress
  const std::uint64_t emm_bitrate = config.emm_bitrate;
  headend::Scrambler scrambler(std::move(config), *keys);
  auto refused = [&] {
    if (scrambler.refusal()) throw std::runtime_error(scrambler.refusal()->message);
  };
  refused();
  streams::SinkOptions sink_options;
  sink_options.open_on_first_write = true;
  auto out = streams::open_sink(a.out, sink_options);
  StatusTimer status(a.monitor.status_interval_ms);
  const auto started = std::chrono::steady_clock::now();
  auto last_status = scrambler.stats();
  double last_stream_seconds = 0;
  snapshot.publish(headend_metrics(scrambler, last_status, emm_bitrate));
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
        if (metrics) snapshot.publish(headend_metrics(scrambler, s, emm_bitrate));
        if (!status.due()) return;
        const double stream_seconds = scrambler.clock().seconds();
        if (live) {
          print_status("headend", headend_status(scrambler, s, last_status, status.elapsed_seconds(),
                                                 stream_seconds - last_stream_seconds, emm_bitrate) +
                                  transport_status(*in, *out));
        } else {
          const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          print_status("headend", progress_text(s.packets_in * 188 + in->discarded_bytes(), in->size_bytes(), stream_seconds, wall));
        }
        last_status = s;
        last_stream_seconds = stream_seconds;
      });
  const bool stopped = stop_requested();
  if (stopped) log.info("stopped by signal ", stop_signals().signal_number(), ": the output ends here, on a whole packet");
  const auto s = scrambler.stats();
  const auto& clock = scrambler.clock();
  if (!clock.bitrate_measured()) log.warn("no PCR found: stream time was estimated at an assumed bitrate");
  nlohmann::ordered_json line{{"packets_in", s.packets_in},
                           {"packets_out", s.packets_out},
                           {"packets_scrambled", s.packets_scrambled},
                           {"services_scrambled", s.services_scrambled},
                           {"crypto_periods", s.crypto_periods},
                           {"ecm_sections", s.ecm_sections},
                           {"emm_sections", s.emm_sections},
                           {"pmts_rewritten", s.pmts_rewritten},
                           {"nulls_replaced", s.nulls_replaced},
                           {"packets_added", s.packets_added},
                           {"packets_dropped", s.packets_dropped},
                           {"already_scrambled", s.already_scrambled},
                           {"csa_full_batches", s.csa_full_batches},
                           {"csa_partial_batches", s.csa_partial_batches},
                           {"replacing_nulls", s.replacing_nulls},
                           {"packets_borrowed", s.packets_borrowed},
                           {"inserts_late", s.inserts_late},
                           {"repetitions_skipped", s.repetitions_skipped},
                           {"emm_packets", s.emm_packets},
                           {"bitrate", clock.bitrate()},
                           // Milliseconds are as close as the stream clock's estimate means anything.
                           {"stream_seconds", std::round(clock.seconds() * 1000.0) / 1000.0},
                           {"input_bytes_skipped", in->discarded_bytes()},
                           {"input_cc_errors", s.input_cc_errors},
                           {"stopped", stopped}};
  add_transport_counters(line, *in, *out);
  print_json_line(stderr, line);
  if (metrics) snapshot.publish(headend_metrics(scrambler, s, emm_bitrate));
  if (engine != nullptr && !engine->engine_reachable()) log.warn("finished while the engine was unreachable");
  if (s.services_scrambled == 0 && !stopped) {
    log.error("no service was scrambled (no PAT/PMT found, or --services matched nothing)");
    return 1;
  }
  return 0;
}

}  // namespace

void add_headend(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<HeadendOptions>();
  auto* headend = add_group(root, "headend", "scramble services with DVB-CSA2 and insert ECMs, EMMs, CA descriptors");

  auto* init = headend->add_subcommand("init",
                                       "Makes the headend's key pair; register DIR/headend.pub with `usher entitlement "
                                       "headend add --file DIR/headend.pub`.");
  add_home(*init, o->home, "usher-data/headend");
  add_integer<std::uint32_t>(*init, "--id", o->id, "the headend's id", 1, 0x7FFFFFFF)->required();
  init->add_option("--operator", o->operator_file, "ENT_HOME/operator.pub")->type_name("FILE")->required();
  commands.on(init, [o] {
    auto op = entitlement::OperatorPublicFile::read(o->operator_file);
    if (!op) throw std::runtime_error(op.error().message);
    auto identity = headend::HeadendIdentity::init(o->home, o->id, *op);
    if (!identity) throw std::runtime_error(identity.error().message);
    std::printf("headend %u initialised in %s; register it with: usher entitlement headend add --file %s/headend.pub\n", o->id,
                o->home.c_str(), o->home.c_str());
    return 0;
  });

  auto* run_cmd = headend->add_subcommand(
      "run", "Scrambles a transport stream. SRC, DST: a file, - (stdin/stdout), udp:// or rtp:// (HOST:PORT; to receive "
             "also @GROUP:PORT or SOURCE@GROUP:PORT; IPv6 in brackets; ?ttl=N&localaddr=IP). Network output leaves "
             "datagram by datagram at the times the stream's PCRs give.");
  run_cmd->add_option("--in", o->in, "the clear stream")->type_name("SRC")->required();
  run_cmd->add_option("--out", o->out, "the scrambled stream")->type_name("DST")->required();
  run_cmd->add_option("--engine", o->engine,
                      "take keys, PPV events and EMMs from a running engine (ZeroMQ), with this headend's identity "
                      "(--home DIR); keeps scrambling if it goes away")
      ->type_name("ENDPOINT");
  add_home(*run_cmd, o->home, "usher-data/headend");
  run_cmd->add_option("--entitlement-home", o->entitlement_home, "or read them from the operator's store directly")
      ->type_name("DIR")
      ->capture_default_str();
  add_id_list(*run_cmd, "--services", o->services, "service_ids (program_numbers) to scramble (default: all in the PAT)");
  auto* period = add_duration(*run_cmd, "--crypto-period", o->crypto_period_s, "control word lifetime in stream time (default 10)");
  auto* interval = add_duration_ms(*run_cmd, "--ecm-interval", o->ecm_interval_ms, "ECM repetition (default 100ms)");
  add_integer<std::uint16_t>(*run_cmd, "--emm-pid", o->emm_pid, "EMM PID (default 0x1FF0; moved if the input uses it; the input's PSI PIDs refused)", 0x20, 0x1FFE, true);
  add_integer<std::uint16_t>(*run_cmd, "--ecm-pid", o->ecm_pid, "first ECM PID, then downwards (default 0x1FE0; moved off PIDs the input uses)", 0x20, 0x1FFE, true);
  auto* start = add_time(*run_cmd, "--start-time", o->start_time, "broadcast time of the first packet, carried in ECMs (default now)");
  run_cmd->add_option("--cw-file", o->cw_file, "test mode: fixed control words (16 hex digits per line: even, odd)")->type_name("FILE");
  add_integer<std::uint64_t>(*run_cmd, "--bitrate", o->bitrate, "rate in bit/s assumed until PCRs are seen", 10'000, 10'000'000'000);
  run_cmd->add_flag("--pass-scrambled", o->pass_scrambled,
                    "pass packets of a chosen service that arrive already scrambled as they are (otherwise such an "
                    "input is refused)");
  run_cmd->add_option("--insert", o->insert,
                      "inserted packets (CAT, PMT, SDT, ECM, EMM, EIT): replace-nulls (never adds: output rate = input rate), "
                      "add (added where no null is at hand), or auto (replace-nulls when the input's stuffing is enough)")
      ->type_name("MODE")
      ->capture_default_str();
  auto* emm_bitrate = add_integer<std::uint64_t>(*run_cmd, "--emm-bitrate", o->emm_bitrate,
                                                 "the EMMs' bandwidth budget in bit/s, used to the full (0: no EMMs; default: the "
                                                 "engine's `entitlement settings --emm-kbps`, else 128000)",
                                                 0, 100'000'000);
  auto* emm_kbps = add_integer<std::uint64_t>(*run_cmd, "--emm-kbps", o->emm_kbps, "the EMMs' bandwidth budget in kbit/s (--emm-bitrate / 1000)",
                                              1, 100'000);
  emm_kbps->excludes(emm_bitrate);
  add_integer<std::int32_t>(*run_cmd, "--network-id", o->network_id,
                            "original_network_id in the SDT and EIT (default: the input SDT's, else 0xFF01)", 0, 0xFFFF, true);
  add_duration_ms(*run_cmd, "--idle-timeout", o->idle_timeout_ms, "a UDP input ends after this much silence (default: never)");
  add_duration_ms(*run_cmd, "--max-hold", o->max_hold_ms,
                  "longest wait of a packet for its CSA batch, in stream time (default 20ms, 1ms..2s): latency against CPU");
  add_monitor_options(*run_cmd, o->monitor,
                      "a status line on stderr this often: rates, services, ECMs, EMM share, continuity errors (UDP or stdin "
                      "input); progress on a file");
  run_cmd->footer("SIGINT (Ctrl-C) or SIGTERM ends the run as the end of its input does: the output is flushed and ends on a "
                  "whole packet, the JSON counters are printed, exit status 0 (a second signal exits at once).");
  commands.on(run_cmd, [o, period, interval, start, emm_bitrate, emm_kbps] {
    if (o->max_hold_ms < 1 || o->max_hold_ms > 2000) throw UsageError("--max-hold must be from 1ms to 2s");
    if (period->count() > 0 && (o->crypto_period_s == 0 || o->crypto_period_s > 3600)) {
      throw UsageError("--crypto-period must be from 1 s to 1 h");
    }
    if (interval->count() > 0 && (o->ecm_interval_ms < 10 || o->ecm_interval_ms > 60'000)) {
      throw UsageError("--ecm-interval must be from 10ms to 60s");
    }
    o->emm_budget_given = emm_bitrate->count() > 0 || emm_kbps->count() > 0;
    return run(*o, start->count() > 0);
  });
}

}  // namespace usher::cli
