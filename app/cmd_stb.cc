// usher stb: a set-top box.
#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/stb/descrambler.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/player.h"
#include "usher/stb/local_link.h"
#include "usher/stb/room_report.h"

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher stb: a set-top box

  usher stb init --id N --operator ENT_HOME/operator.pub [--home DIR]
      Makes the STB's identity and keys; writes DIR/stb.pub for the operator
      (`usher entitlement device add --stb-file DIR/stb.pub`).
  usher stb run --in SRC --out DST [--home DIR] [--cw-file FILE] [--idle-timeout MS] [--pin PIN]
      Descrambles what this STB is entitled to. SRC: file, - or udp://host:port.
      DST: file, -, udp://host:port, or `play` to watch it through GStreamer.
      Ends with a JSON line of counters on stderr.
  usher stb entitlements [--home DIR]
  usher stb tickets [--home DIR]
  usher stb buy E [--home DIR]       (or --event E)
      Impulse purchase with the remote: recorded in the STB's signed viewing history and allowed
      while the credit line (set by the operator) covers what is not yet settled.
  usher stb buy --event E --pay-by-handset [--valid 10m] [--home DIR]
      Shows a request code and a QR code for event E; the viewer's handset pays for it with
      `usher wallet approve CODE` and the ticket comes to this STB. Codes expire and work once.
  usher stb history [--home DIR]
      The viewing history: each purchase, signed and hash-chained; credit used and left, what is
      not yet collected and when the last relay was. A hotel room STB reports each purchase to
      the hotel's billing by itself.
  usher stb parental --pin NEW --max-age 12 [--current-pin OLD] [--home DIR]
      Events rated above the limit play only after `stb run --pin`.
  usher stb link [--bind tcp://127.0.0.1:7801] [--home DIR]
      The local link a handset uses to hand over tickets, collect the history and bring back
      billing's receipts (Bluetooth or NFC in a product). A hotel room STB serves it on the hotel
      network for billing's front desk.

  DIR defaults to ./usher-data/stb.
)";

std::string home(const Args& a) { return a.get("home", "usher-data/stb"); }

int run(const Args& a) {
  Logger log("stb");
  std::optional<stb::SecureElement> se;
  stb::DescramblerConfig config;
  if (a.has("cw-file")) {
    auto cws = read_cw_file(a.get("cw-file"));
    if (!cws) throw std::runtime_error(cws.error().message);
    config.fixed_cws = std::move(cws.value());
    log.warn("fixed control words from ", a.get("cw-file"), ": test mode");
  } else {
    auto opened = stb::SecureElement::open(home(a));
    if (!opened) throw std::runtime_error(opened.error().message);
    se.emplace(std::move(opened.value()));
    if (a.has("pin")) {
      if (!se->verify_pin(a.get("pin"))) throw std::runtime_error("wrong PIN: rated events stay locked");
      config.parental_unlocked = true;
    }
  }
  auto in = streams::open_source(a.require("in"), {std::chrono::milliseconds(a.number("idle-timeout", 0))});
  const std::string out_name = a.require("out");
  auto out = out_name == "play" ? stb::open_player() : streams::open_sink(out_name);
  stb::Descrambler d(se ? &*se : nullptr, std::move(config));
  pump(
      *in, *out, [&](auto input, auto& output) { d.process(input, output); }, [&](auto& output) { d.finish(output); },
      [] {});
  const auto s = d.stats();
  std::string services;
  for (const auto& svc : d.services()) {
    if (!services.empty()) services += ",";
    services += "{\"service_id\":" + std::to_string(svc.service_id) + ",\"descrambling\":" + (svc.descrambling ? "true" : "false");
    if (!svc.descrambling) {
      std::string reason;
      for (char c : svc.reason) reason += (c == '"' || c == '\\') ? '\'' : c;
      services += ",\"reason\":\"" + reason + "\"";
    }
    services += "}";
    if (!svc.descrambling && !config.fixed_cws) log.warn("service ", svc.service_id, " not descrambled: ", svc.reason);
  }
  std::fprintf(stderr,
               "{\"stb_id\":%u,\"packets_in\":%llu,\"packets_out\":%llu,\"packets_descrambled\":%llu,"
               "\"packets_left_scrambled\":%llu,\"ecm_accepted\":%llu,\"ecm_denied\":%llu,\"emm_taken\":%llu,"
               "\"emm_duplicate\":%llu,\"emm_refused\":%llu,\"emm_other_stb\":%llu,\"store_failures\":%llu,\"cc_errors\":%llu,"
               "\"sections_dropped\":%llu,\"input_bytes_skipped\":%llu,\"services\":[%s]}\n",
               se ? se->stb_id() : 0, static_cast<unsigned long long>(s.packets_in),
               static_cast<unsigned long long>(s.packets_out), static_cast<unsigned long long>(s.packets_descrambled),
               static_cast<unsigned long long>(s.packets_left_scrambled), static_cast<unsigned long long>(s.ecm_accepted),
               static_cast<unsigned long long>(s.ecm_denied), static_cast<unsigned long long>(s.emm_taken),
               static_cast<unsigned long long>(s.emm_duplicate), static_cast<unsigned long long>(s.emm_refused),
               static_cast<unsigned long long>(s.emm_other_stb), static_cast<unsigned long long>(s.store_failures),
               static_cast<unsigned long long>(s.cc_errors),
               static_cast<unsigned long long>(s.sections_dropped), static_cast<unsigned long long>(in->discarded_bytes()),
               services.c_str());
  return 0;
}

}  // namespace

int cmd_stb(const std::vector<std::string>& argv) {
  std::string sub;
  std::optional<Args> parsed;
  if (auto code = start_command(argv, kUsage, sub, parsed, {"pay-by-handset"})) return *code;
  const Args& a = *parsed;
  if (sub == "init") {
    const auto id = a.require_number("id");
    if (id <= 0 || id > 0xFFFFFFFFLL) throw UsageError("--id must be from 1 to 4294967295");
    auto op = entitlement::OperatorPublicFile::read(a.require("operator"));
    if (!op) throw std::runtime_error(op.error().message);
    auto se = stb::SecureElement::init(home(a), static_cast<std::uint32_t>(id), *op);
    if (!se) throw std::runtime_error(se.error().message);
    std::printf("STB %lld initialised in %s; register it with: usher entitlement device add --stb-file %s/stb.pub\n",
                static_cast<long long>(id), home(a).c_str(), home(a).c_str());
    return 0;
  }
  if (sub == "run") return run(a);
  if (sub == "entitlements") {
    auto se = stb::SecureElement::open(home(a), stb::SecureElement::Access::read_only);
    if (!se) throw std::runtime_error(se.error().message);
    std::printf("STB %u\n", se->stb_id());
    for (const auto& e : se->entitlements()) {
      std::printf("  service %u: %s .. %s%s (EMM %llu)\n", e.service_id, format_utc(e.not_before).c_str(),
                  format_utc(e.not_after).c_str(), e.revoked ? " revoked" : "", static_cast<unsigned long long>(e.sequence));
    }
    return 0;
  }
  if (sub == "buy") {
    auto se = stb::SecureElement::open(home(a));
    if (!se) throw std::runtime_error(se.error().message);
    // `usher stb buy 7` or `usher stb buy --event 7`.
    std::int64_t event = 0;
    if (!a.has("event") && a.positional().size() == 1) {
      try {
        event = std::stoll(a.positional()[0]);
      } catch (const std::exception&) {
        throw UsageError("not an event id: '" + a.positional()[0] + "'");
      }
    } else {
      event = a.require_number("event");
    }
    if (event <= 0 || event > 0xFFFF) throw UsageError("--event must be an event id from 1 to 65535");
    if (!a.has("pay-by-handset")) {
      auto rec = se->impulse_buy(static_cast<std::uint32_t>(event), unix_now());
      if (!rec) throw std::runtime_error(rec.error().message);
      std::printf("bought event %lld for %s %s (history record %llu)\n", static_cast<long long>(event),
                  entitlement::format_money(rec->price).c_str(),
                  rec->payment == entitlement::kPaymentPrepaid ? "from prepaid credit"
                  : rec->stay_id != 0                          ? "on the room's bill"
                                                               : "on this STB's credit",
                  static_cast<unsigned long long>(rec->sequence));
      // A hotel room STB reports at once; if billing is away the purchase goes with the next report.
      if (const auto billing = se->billing_endpoint(); !billing.empty()) {
        auto reported = stb::report_to_billing(*se, billing);
        if (reported) std::printf("reported to the hotel's billing: posted to the guest's folio\n");
        else std::printf("not reported yet (%s): it will be with the next report or at check-out\n", reported.error().message.c_str());
      }
      return 0;
    }
    const auto expires = unix_now() + parse_duration(a.get("valid", "10m"));
    const auto code = se->request_code(static_cast<std::uint16_t>(event), expires);
    std::printf("%s\nPay for event %lld on your handset: usher wallet approve %s\n(code valid until %s)\n",
                stb::render_qr("usher:buy:" + code).c_str(), static_cast<long long>(event), code.c_str(),
                format_utc(expires).c_str());
    return 0;
  }
  if (sub == "history") {
    auto se = stb::SecureElement::open(home(a), stb::SecureElement::Access::read_only);
    if (!se) throw std::runtime_error(se.error().message);
    const auto unsettled = se->history(true);
    for (const auto& r : se->history()) {
      const bool open_record = std::any_of(unsettled.begin(), unsettled.end(), [&](const auto& u) { return u.sequence == r.sequence; });
      std::printf("%4llu  %s  event %u on service %u  %s%s%s\n", static_cast<unsigned long long>(r.sequence),
                  format_utc(r.time).c_str(), r.event_id, r.service_id, entitlement::format_money(r.price).c_str(),
                  r.payment == entitlement::kPaymentPrepaid ? "  prepaid" : "", open_record ? "  (not yet settled)" : "");
    }
    const auto st = se->settlement_status();
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
  }
  if (sub == "parental") {
    auto se = stb::SecureElement::open(home(a));
    if (!se) throw std::runtime_error(se.error().message);
    const auto age = a.require_number("max-age");
    if (age < 0 || age > 255) throw UsageError("--max-age must be from 0 to 255");
    if (auto s = se->set_parental(a.require("pin"), static_cast<std::uint8_t>(age), a.get("current-pin")); !s) {
      throw std::runtime_error(s.error().message);
    }
    std::printf("parental limit %lld; rated events above it need the PIN\n", static_cast<long long>(age));
    return 0;
  }
  if (sub == "tickets") {
    auto se = stb::SecureElement::open(home(a), stb::SecureElement::Access::read_only);
    if (!se) throw std::runtime_error(se.error().message);
    for (const auto& t : se->tickets()) {
      std::printf("ticket %llu: event %u '%s' %s to %s, %s\n", static_cast<unsigned long long>(t.ticket_id), t.event_id,
                  t.title.c_str(), format_utc(t.valid_from).c_str(), format_utc(t.valid_until).c_str(),
                  se->ticket_status(t.ticket_id).c_str());
    }
    if (se->rows_refused() != 0) {
      std::printf("%llu stored rows refused: they do not verify (edited or added outside this STB)\n",
                  static_cast<unsigned long long>(se->rows_refused()));
    }
    return 0;
  }
  if (sub == "link") {
    auto se = stb::SecureElement::open(home(a));
    if (!se) throw std::runtime_error(se.error().message);
    Logger log("stb");
    stb::LocalLink link(*se);
    net::ReplyServer server(a.get("bind", "tcp://127.0.0.1:7801"), [&](std::span<const std::uint8_t> r) { return link.handle(r); });
    log.info("STB ", se->stb_id(), " local link on ", server.endpoint());
    install_stop_handlers();
    server.run(stop_requested());
    return 0;
  }
  throw UsageError("unknown subcommand '" + sub + "' (init, run, buy, history, entitlements, tickets, link, parental)");
}

}  // namespace usher::cli
