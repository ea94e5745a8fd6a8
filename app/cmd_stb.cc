// usher stb: a set-top box.
#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/stb/descrambler.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/player.h"
#include "usher/stb/qr.h"
#include "usher/stb/local_link.h"
#include "usher/stb/room_report.h"
#include "usher/stb/shown_code.h"

namespace usher::cli {
namespace {

struct StbOptions {
  std::string home;
  std::uint32_t id = 0;
  std::string operator_file;
  std::string in;
  std::string out;
  std::string cw_file;
  std::uint64_t idle_timeout_ms = 0;
  std::string pin;
  std::vector<std::uint16_t> services;  // stb run: what the viewer asked for (empty: every service of the stream)
  std::uint32_t event = 0;
  bool pay_by_handset = false;
  std::uint64_t valid = 600;
  std::string current_pin;
  std::uint8_t max_age = 0;
  std::string bind = "tcp://127.0.0.1:7801";
  std::uint64_t max_hold_ms = 20;
  MonitorOptions monitor;
};

// `stb run`'s exit status when a service asked for (or, none named, any service of the stream) is
// neither descrambled nor clear in the stream.
constexpr int kExitNotDescrambled = 3;

// A service's state in a status line: descrambling, no entitlement (why), no ECM yet, clear.
std::string service_state(const stb::ServiceStatus& s, bool fixed_cws) {
  if (fixed_cws) return "fixed control words";  // test mode: no ECMs, every scrambled packet takes them
  if (s.descrambling) return "descrambling";
  if (s.outcome == stb::ServiceOutcome::not_scrambled) return "clear";
  if (s.outcome == stb::ServiceOutcome::no_ecm) return "no ECM yet";
  return std::string("not descrambled (") + stb::to_string(s.outcome) + ")";
}

std::string stb_status(const stb::Descrambler& d, bool fixed_cws, const stb::DescramblerStats& now, const stb::DescramblerStats& before,
                       double seconds) {
  std::string services;
  for (const auto& svc : d.services()) {
    if (!services.empty()) services += ", ";
    services += std::to_string(svc.service_id) + " " + service_state(svc, fixed_cws);
  }
  char buf[200];
  std::snprintf(buf, sizeof(buf), "in %.2f Mbit/s, out %.2f Mbit/s; ECMs %llu accepted, %llu denied; CC errors %llu; services: ",
                packet_mbps(now.packets_in - before.packets_in, seconds), packet_mbps(now.packets_out - before.packets_out, seconds),
                static_cast<unsigned long long>(now.ecm_accepted), static_cast<unsigned long long>(now.ecm_denied),
                static_cast<unsigned long long>(now.cc_errors));
  return buf + (services.empty() ? std::string("none yet (no PAT/PMT)") : services);
}

std::string stb_metrics(const stb::Descrambler& d, bool fixed_cws, const stb::DescramblerStats& s) {
  PrometheusText m;
  m.counter("usher_stb_packets_in_total", "TS packets read from the input.", static_cast<double>(s.packets_in));
  m.counter("usher_stb_packets_out_total", "TS packets written to the output.", static_cast<double>(s.packets_out));
  m.counter("usher_stb_packets_descrambled_total", "TS packets descrambled.", static_cast<double>(s.packets_descrambled));
  m.counter("usher_stb_packets_left_scrambled_total", "TS packets left scrambled (no key for them).",
            static_cast<double>(s.packets_left_scrambled));
  m.counter("usher_stb_ecm_accepted_total", "Distinct ECMs opened.", static_cast<double>(s.ecm_accepted));
  m.counter("usher_stb_ecm_denied_total", "Distinct ECMs refused.", static_cast<double>(s.ecm_denied));
  m.counter("usher_stb_emm_taken_total", "EMMs for this STB taken.", static_cast<double>(s.emm_taken));
  m.counter("usher_stb_emm_refused_total", "EMMs refused.", static_cast<double>(s.emm_refused));
  m.counter("usher_stb_continuity_errors_total", "Continuity counter errors in the input.", static_cast<double>(s.cc_errors));
  for (const auto& svc : d.services()) {
    m.gauge("usher_stb_service_descrambling", "1 while the service is descrambled.", svc.descrambling ? 1 : 0,
            {{"service_id", std::to_string(svc.service_id)}, {"state", service_state(svc, fixed_cws)}});
  }
  return m.str();
}

int run(const StbOptions& a) {
  Logger log("stb");
  install_stop_handlers();  // a stop finishes the run as its input's end would
  MetricsSnapshot snapshot;
  const auto metrics = start_metrics(a.monitor, [&snapshot] { return snapshot.read(); });
  std::optional<stb::SecureElement> se;
  stb::DescramblerConfig config;
  config.max_hold_ms = static_cast<std::uint32_t>(a.max_hold_ms);
  if (!a.cw_file.empty()) {
    auto cws = read_cw_file(a.cw_file);
    if (!cws) throw std::runtime_error(cws.error().message);
    config.fixed_cws = std::move(cws.value());
    log.warn("fixed control words from ", a.cw_file, ": test mode");
  } else {
    auto opened = stb::SecureElement::open(a.home);
    if (!opened) throw std::runtime_error(opened.error().message);
    se.emplace(std::move(opened.value()));
    if (!a.pin.empty()) {
      if (!se->verify_pin(a.pin)) throw std::runtime_error("wrong PIN: rated events stay locked");
      config.parental_unlocked = true;
    }
  }
  auto in = streams::open_source(a.in, live_source_options(std::chrono::milliseconds(a.idle_timeout_ms)));
  const bool live = is_live_input(a.in) && in->size_bytes() == 0;  // stdin redirected from a file has a size: progress
  const std::string& out_name = a.out;
  auto out = out_name == "play" ? stb::open_player() : streams::open_sink(out_name);
  const bool fixed_cws = config.fixed_cws.has_value();
  stb::Descrambler d(se ? &*se : nullptr, std::move(config));
  StatusTimer status(a.monitor.status_interval_ms);
  const auto started = std::chrono::steady_clock::now();
  auto last_status = d.stats();
  snapshot.publish(stb_metrics(d, fixed_cws, last_status));
  pump(
      *in, *out,
      [&](auto input, auto& output) { d.process(input, output); },
      [&](auto& output) { d.finish(output); },
      [&] {
        const auto s = d.stats();
        if (metrics) snapshot.publish(stb_metrics(d, fixed_cws, s));
        if (!status.due()) return;
        if (live) {
          print_status("stb", stb_status(d, fixed_cws, s, last_status, status.elapsed_seconds()) + transport_status(*in, *out));
        } else {
          const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          print_status("stb", progress_text(s.packets_in * 188 + in->discarded_bytes(), in->size_bytes(), d.clock().seconds(), wall));  // the descrambler's stream time: "x real time"
        }
        last_status = s;
      });
  const bool stopped = stop_requested();
  if (stopped) log.info("stopped by signal ", stop_signals().signal_number(), ": the output ends here, on a whole packet");
  const auto s = d.stats();
  if (metrics) snapshot.publish(stb_metrics(d, fixed_cws, s));
  auto services = nlohmann::ordered_json::array();
  // Each service asked for (every one in the stream when none was named): its outcome, and a line
  // on stderr for each one the viewer does not get.
  int exit_status = 0;
  for (const auto& svc : d.services(a.services)) {
    nlohmann::ordered_json service{{"service_id", svc.service_id}, {"descrambling", svc.descrambling},
                                   {"outcome", stb::to_string(svc.outcome)}, {"packets_descrambled", svc.packets_descrambled},
                                   {"packets_left_scrambled", svc.packets_left_scrambled}};
    if (!svc.descrambling) service["reason"] = svc.reason;
    services.push_back(std::move(service));
    if (svc.outcome == stb::ServiceOutcome::not_scrambled) {
      log.info(svc.reason);
    } else if (!stb::watchable(svc.outcome)) {
      log.error("service ", svc.service_id, " not descrambled (", stb::to_string(svc.outcome), "): ", svc.reason);
      exit_status = kExitNotDescrambled;
    }
  }
  nlohmann::ordered_json line{{"stb_id", se ? se->stb_id() : 0},
                           {"packets_in", s.packets_in},
                           {"packets_out", s.packets_out},
                           {"packets_descrambled", s.packets_descrambled},
                           {"packets_left_scrambled", s.packets_left_scrambled},
                           {"ecm_accepted", s.ecm_accepted},
                           {"ecm_denied", s.ecm_denied},
                           {"ecm_stale", s.ecm_stale},
                           {"emm_taken", s.emm_taken},
                           {"emm_duplicate", s.emm_duplicate},
                           {"emm_refused", s.emm_refused},
                           {"emm_other_stb", s.emm_other_stb},
                           {"emm_nothing_for_stb", s.emm_nothing_for_stb},
                           {"emm_items_skipped", se ? se->emm_items_skipped() : 0},
                           {"store_failures", s.store_failures},
                           {"cc_errors", s.cc_errors},
                           {"sections_dropped", s.sections_dropped},
                           {"input_bytes_skipped", in->discarded_bytes()},
                           {"stopped", stopped},
                           {"services", std::move(services)}};
  add_transport_counters(line, *in, *out);
  print_json_line(stderr, line);
  return exit_status;
}

}  // namespace

void add_stb(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<StbOptions>();
  auto* stb = add_group(root, "stb", "a set-top box: init, descramble what it is entitled to, local link, tickets");
  stb->footer("DIR defaults to ./usher-data/stb.");
  auto leaf = [&](const std::string& name, const std::string& description) {
    auto* app = stb->add_subcommand(name, description);
    add_home(*app, o->home, "usher-data/stb");
    return app;
  };
  auto open = [](const StbOptions& a) {
    auto se = stb::SecureElement::open(a.home);
    if (!se) throw std::runtime_error(se.error().message);
    return std::move(se.value());
  };
  // Commands that only show what the STB holds never write to its store (not even a schema).
  auto open_read_only = [](const StbOptions& a) {
    auto se = stb::SecureElement::open(a.home, stb::SecureElement::Access::read_only);
    if (!se) throw std::runtime_error(se.error().message);
    return std::move(se.value());
  };

  auto* init = leaf("init",
                    "Makes the STB's identity and keys; writes DIR/stb.pub for the operator (`usher entitlement device add "
                    "--stb-file DIR/stb.pub`).");
  add_integer<std::uint32_t>(*init, "--id", o->id, "the STB's id", 1, 0xFFFFFFFF)->required();
  init->add_option("--operator", o->operator_file, "ENT_HOME/operator.pub")->type_name("FILE")->required();
  commands.on(init, [o] {
    auto op = entitlement::OperatorPublicFile::read(o->operator_file);
    if (!op) throw std::runtime_error(op.error().message);
    auto se = stb::SecureElement::init(o->home, o->id, *op);
    if (!se) throw std::runtime_error(se.error().message);
    std::printf("STB %u initialised in %s; register it with: usher entitlement device add --stb-file %s/stb.pub\n", o->id,
                o->home.c_str(), o->home.c_str());
    return 0;
  });

  auto* run_cmd = leaf("run",
                       "Descrambles what this STB is entitled to. Ends with a JSON line of counters on stderr, with each "
                       "service's outcome; exits 3 when a service asked for (--services; default: every service of the "
                       "stream) is neither descrambled nor clear in the stream, saying why on stderr.");
  run_cmd->add_option("--in", o->in, "file, -, udp:// or rtp:// (HOST:PORT, @GROUP:PORT, SOURCE@GROUP:PORT)")->type_name("SRC")->required();
  run_cmd->add_option("--out", o->out, "file, -, udp://HOST:PORT, rtp://HOST:PORT, or `play` to watch it through GStreamer")->type_name("DST")->required();
  run_cmd->add_option("--cw-file", o->cw_file, "test mode: fixed control words")->type_name("FILE");
  add_duration_ms(*run_cmd, "--idle-timeout", o->idle_timeout_ms, "a UDP input ends after this much silence");
  run_cmd->add_option("--pin", o->pin, "the parental PIN: rated events play");
  add_id_list(*run_cmd, "--services", o->services, "the services to watch, as 1,2 (default: every service of the stream)");
  add_monitor_options(*run_cmd, o->monitor,
                      "a status line on stderr this often: rates, each service's state, continuity errors (UDP or stdin "
                      "input); progress on a file");
  run_cmd->footer("SIGINT (Ctrl-C) or SIGTERM ends the run as the end of its input does: the output is flushed and ends on a "
                  "whole packet, the JSON counters are printed, exit status 0 (a second signal exits at once).");
  add_duration_ms(*run_cmd, "--max-hold", o->max_hold_ms,
                  "longest wait of a packet for its CSA batch, in stream time (default 20ms, 1ms..2s): latency against CPU");
  commands.on(run_cmd, [o] {
    if (o->max_hold_ms < 1 || o->max_hold_ms > 2000) throw UsageError("--max-hold must be from 1ms to 2s");
    return run(*o);
  });

  auto* entitlements = leaf("entitlements", "The services this STB holds, from the EMMs it took.");
  commands.on(entitlements, [o, open_read_only] {
    auto se = open_read_only(*o);
    std::printf("STB %u\n", se.stb_id());
    for (const auto& e : se.entitlements()) {
      std::string versions;
      for (auto v : e.key_versions) versions += (versions.empty() ? ", key version " : " and ") + std::to_string(v);
      std::printf("  service %u: %s .. %s%s%s (EMM %llu)\n", e.service_id, format_utc(e.not_before).c_str(),
                  format_utc(e.not_after).c_str(), e.revoked ? " revoked" : "", versions.c_str(), static_cast<unsigned long long>(e.sequence));
    }
    if (const auto g = se.group()) std::printf("  group %u, position %u, group key version %u\n", g->group_id, g->position, g->key_version);
    for (auto v : se.global_key_versions()) std::printf("  global key version %u\n", v);
    return 0;
  });

  auto* messages = leaf("messages", "The last operator messages this STB received (global EMMs), newest first.");
  commands.on(messages, [o, open_read_only] {
    auto se = open_read_only(*o);
    for (const auto& m : se.messages()) {
      // Shown as text, never as terminal control sequences (UTF-8 beyond ASCII passes as it is).
      std::string text = m.text;
      for (auto& c : text) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
      }
      std::printf("%s  %s\n", format_utc(m.issued).c_str(), text.c_str());
    }
    return 0;
  });

  auto* buy = leaf("buy",
                   "Impulse purchase of event E with the remote: recorded in the STB's signed viewing history and allowed "
                   "while the credit line (set by the operator) covers what is not yet settled. With --pay-by-handset: "
                   "shows a request code (also left in purchase-code in its home) and a QR code; the viewer's handset pays "
                   "with `usher wallet approve CODE` and the "
                   "ticket comes to this STB. Codes expire and work once.");
  auto* event_at = add_integer<std::uint32_t>(*buy, "E", o->event, "the event id", 1, 0xFFFF);
  auto* event_named = add_integer<std::uint32_t>(*buy, "--event", o->event, "the event id (or as the argument E)", 1, 0xFFFF);
  event_at->excludes(event_named);
  buy->add_flag("--pay-by-handset", o->pay_by_handset, "pay on the handset instead of the STB's credit");
  add_duration(*buy, "--valid", o->valid, "how long the request code is valid (default 10m)");
  commands.on(buy, [o, open, event_at, event_named] {
    if (event_at->count() + event_named->count() == 0) throw UsageError("which event? usher stb buy E (or --event E)");
    auto se = open(*o);
    const auto event = o->event;
    if (!o->pay_by_handset) {
      auto rec = se.impulse_buy(event, unix_now());
      if (!rec) throw std::runtime_error(rec.error().message);
      std::printf("bought event %u for %s %s (history record %llu)\n", event, entitlement::format_money(rec->price).c_str(),
                  rec->payment == entitlement::kPaymentPrepaid ? "from prepaid credit"
                  : rec->stay_id != 0                          ? "on the room's bill"
                                                               : "on this STB's credit",
                  static_cast<unsigned long long>(rec->sequence));
      // A hotel room STB reports at once; if billing is away the purchase goes with the next report.
      if (const auto billing = se.billing_endpoint(); !billing.empty()) {
        auto reported = stb::report_to_billing(se, billing);
        if (reported) std::printf("reported to the hotel's billing: posted to the guest's folio\n");
        else std::printf("not reported yet (%s): it will be with the next report or at check-out\n", reported.error().message.c_str());
      }
      return 0;
    }
    const auto expires = unix_now() + o->valid;
    const auto code = se.handset_purchase_code(static_cast<std::uint16_t>(event), expires);
    if (!code) throw std::runtime_error(code.error().message);
    // Also in the STB's home, as the pairing code is: what a script hands the handset.
    const auto written = stb::write_shown_code(o->home, stb::kPurchaseCodeName, *code);
    if (!written) throw std::runtime_error(written.error().message);
    std::printf("%s\nPay for event %u on your handset: usher wallet approve %s\n(code valid until %s; also in %s/%s)\n",
                stb::render_qr(stb::purchase_qr_text(*code)).c_str(), event, code->c_str(), format_utc(expires).c_str(),
                o->home.c_str(), stb::kPurchaseCodeName);
    return 0;
  });

  auto* history = leaf("history",
                       "The viewing history: each purchase, signed and hash-chained; credit used and left, what is not yet "
                       "collected and when the last relay was. A hotel room STB reports each purchase to the hotel's billing by itself.");
  commands.on(history, [o, open_read_only] {
    auto se = open_read_only(*o);
    const auto unsettled = se.history(true);
    for (const auto& r : se.history()) {
      const bool open_record = std::any_of(unsettled.begin(), unsettled.end(), [&](const auto& u) { return u.sequence == r.sequence; });
      std::printf("%4llu  %s  event %u on service %u  %s%s%s\n", static_cast<unsigned long long>(r.sequence),
                  format_utc(r.time).c_str(), r.event_id, r.service_id, entitlement::format_money(r.price).c_str(),
                  r.payment == entitlement::kPaymentPrepaid ? "  prepaid" : "", open_record ? "  (not yet settled)" : "");
    }
    const auto st = se.settlement_status();
    if (st.hotel_room) {
      std::printf("hotel room: %s\n", st.stay_id == 0 ? "vacant (no purchases)" : ("stay " + std::to_string(st.stay_id)).c_str());
    }
    if (st.credit_limit) {
      std::printf("credit: %s used of %s\n", entitlement::format_money(st.unsettled).c_str(), entitlement::format_money(*st.credit_limit).c_str());
    } else if (!st.hotel_room) {
      std::printf("no credit line for impulse purchases\n");
    }
    if (st.prepaid) std::printf("prepaid credit: %s\n", entitlement::format_money(*st.prepaid).c_str());
    std::printf("%llu purchase%s not yet collected, last relay %s\n", static_cast<unsigned long long>(st.unsettled_records),
                st.unsettled_records == 1 ? "" : "s", st.last_settled == 0 ? "never" : ("on " + format_utc(st.last_settled)).c_str());
    if (st.collect_by != 0) std::printf("purchases must be relayed by %s\n", format_utc(st.collect_by).c_str());
    return 0;
  });

  auto* parental = leaf("parental", "Events rated above the limit play only after `stb run --pin`.");
  parental->add_option("--pin", o->pin, "the new PIN")->required();
  add_integer<std::uint8_t>(*parental, "--max-age", o->max_age, "the age limit", 0, 255)->required();
  parental->add_option("--current-pin", o->current_pin, "the PIN set before, if any");
  commands.on(parental, [o, open] {
    auto se = open(*o);
    if (auto s = se.set_parental(o->pin, o->max_age, o->current_pin); !s) throw std::runtime_error(s.error().message);
    std::printf("parental limit %u; rated events above it need the PIN\n", unsigned{o->max_age});
    return 0;
  });

  auto* tickets = leaf("tickets", "The PPV tickets this STB holds.");
  commands.on(tickets, [o, open_read_only] {
    auto se = open_read_only(*o);
    for (const auto& t : se.tickets()) {
      std::printf("ticket %llu: event %u '%s' %s to %s, %s\n", static_cast<unsigned long long>(t.ticket_id), t.event_id,
                  t.title.c_str(), format_utc(t.valid_from).c_str(), format_utc(t.valid_until).c_str(),
                  se.ticket_status(t.ticket_id).c_str());
    }
    if (se.rows_refused() != 0) {
      std::printf("%llu stored rows refused: they do not verify (edited or added outside this STB)\n",
                  static_cast<unsigned long long>(se.rows_refused()));
    }
    return 0;
  });

  auto* link = leaf("link",
                    "The local link a handset uses to hand over tickets, collect the history and bring back billing's "
                    "receipts (Bluetooth or NFC in a product). A hotel room STB serves it on the hotel network for billing's front desk.");
  link->add_option("--bind", o->bind, "the ZeroMQ endpoint")->type_name("ENDPOINT")->capture_default_str();
  commands.on(link, [o, open] {
    auto se = open(*o);
    Logger log("stb");
    stb::LocalLink local(se, o->home);
    net::ReplyServer server(o->bind, [&](std::span<const std::uint8_t> r) { return local.handle(r); },
                            entitlement::kLinkServerLimits);
    log.info("STB ", se.stb_id(), " local link on ", server.endpoint());
    std::printf("pairing code %s (usher wallet pair --link %s --code %s; also in %s/pairing-code)\n", local.pairing_code().c_str(),
                server.endpoint().c_str(), local.pairing_code().c_str(), o->home.c_str());
    std::fflush(stdout);
    install_stop_handlers();
    server.run(stop_requested());
    return 0;
  });
}

}  // namespace usher::cli
