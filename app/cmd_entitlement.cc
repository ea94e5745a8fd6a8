// usher entitlement: the operator's catalogue, set-top boxes, grants and revocations.
#include <cstdio>
#include <sstream>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/store.h"
#include "usher/headend/engine_link.h"

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher entitlement: the operator

  usher entitlement init [--home DIR] [--ca-system-id 0x4AFF]
      Creates the operator: its key pair and store, and DIR/operator.pub for STBs.
  usher entitlement service add --id N --name NAME [--home DIR]
  usher entitlement service list [--home DIR]
  usher entitlement service price --id N --per-day 2.00 --currency EUR [--home DIR]
      Sells the service by the day (passes bought with `usher wallet buy --service`).
  usher entitlement package add --id P --name NAME --services 1,2,3 [--home DIR]
  usher entitlement package list [--home DIR]
  usher entitlement device add --stb-file STB_HOME/stb.pub [--account NAME] [--home DIR]
  usher entitlement device assign --stb ID --account NAME [--home DIR]
  usher entitlement device list [--home DIR]
  usher entitlement grant --stb ID (--service N | --package P) [--from TIME] [--until TIME | --days 30] [--home DIR]
  usher entitlement revoke --stb ID (--service N | --package P) [--home DIR]
  usher entitlement grants [--home DIR]
  usher entitlement config --emm-repeat 72h [--home DIR]
      How long the headends repeat each EMM after it is first sent (0: while it lasts).
  usher entitlement event add --id E --service N --start TIME --duration 90m --title T
                              --price 12.50 --currency EUR [--min-age 0] [--home DIR]
  usher entitlement event list [--home DIR]
  usher entitlement headend add --file HEADEND_HOME/headend.pub [--home DIR]
  usher entitlement credit --stb ID --limit 20.00 --currency EUR [--collect-within 168h] [--home DIR]
      A credit line for impulse purchases on the STB (sent by EMM with offers for coming events).
      --collect-within: purchases not relayed that long after they were made stop impulse buys
      on the STB until they are (0 removes the deadline).
  usher entitlement tickets [--home DIR]
  usher entitlement ticket revoke --ticket N [--refund] [--home DIR]
      Withdraws a PPV ticket (refund, fraud) by EMM; --refund moves the price back to the card.
  usher entitlement serve [--bind tcp://127.0.0.1:7700] [--home DIR]
      The engine as a ZeroMQ service for handsets (docs/protocol.md). Top-ups go to a test
      acquirer (declines references starting with "decline"). Stops on Ctrl-C / SIGTERM.

  DIR defaults to ./usher-data/entitlement. TIME: unix seconds, now, now+2h, 2026-12-01T20:00:00Z.
  Grants and revocations reach the STB as EMMs, carouselled by `usher headend run`.
)";

std::string home(const Args& a) { return a.get("home", "usher-data/entitlement"); }

entitlement::EntitlementStore open(const Args& a) { return need(entitlement::EntitlementStore::open(home(a))); }

}  // namespace

int cmd_entitlement(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(kUsage, stdout);
    return argv.empty() ? 2 : 0;
  }
  const std::string sub = argv[0];
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  std::string object;
  if ((sub == "service" || sub == "device" || sub == "event" || sub == "headend" || sub == "ticket" ||
       sub == "package") && !rest.empty() && rest[0].rfind("--", 0) != 0) {
    object = rest[0];
    rest.erase(rest.begin());
  }
  const Args a(rest, {"refund"});
  if (a.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (sub == "init") {
    const auto ca = static_cast<std::uint16_t>(a.number("ca-system-id", entitlement::kDefaultCaSystemId));
    auto store = need(entitlement::EntitlementStore::create(home(a), ca));
    std::printf("operator created in %s (CA_system_id 0x%04x); STBs are initialised with %s/operator.pub\n",
                home(a).c_str(), ca, home(a).c_str());
    return 0;
  }
  if (sub == "service" && object == "add") {
    auto store = open(a);
    const auto id = a.require_number("id");
    if (id <= 0 || id > 0xFFFF) throw UsageError("--id must be a service_id (program_number) from 1 to 65535");
    auto s = need(store.add_service(static_cast<std::uint16_t>(id), a.require("name")));
    std::printf("service %u '%s' added (key version %u)\n", s.service_id, s.name.c_str(), s.key_version);
    return 0;
  }
  if (sub == "service" && object == "price") {
    auto store = open(a);
    const auto id = static_cast<std::uint16_t>(a.require_number("id"));
    const entitlement::Money per_day{need(entitlement::parse_amount(a.require("per-day"))),
                                     need(entitlement::parse_currency(a.require("currency")))};
    if (auto s = store.set_pass_price(id, per_day); !s) throw std::runtime_error(s.error().message);
    std::printf("service %u sold by the day at %s\n", id, entitlement::format_money(per_day).c_str());
    return 0;
  }
  if (sub == "service" && object == "list") {
    auto store = open(a);
    for (const auto& s : store.services()) std::printf("%5u  %-24s key version %u\n", s.service_id, s.name.c_str(), s.key_version);
    return 0;
  }
  if (sub == "package" && object == "add") {
    auto store = open(a);
    std::vector<std::uint16_t> services;
    std::stringstream ss(a.require("services"));
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        services.push_back(static_cast<std::uint16_t>(std::stoul(item)));
      } catch (const std::exception&) {
        throw UsageError("--services expects comma-separated service ids");
      }
    }
    const auto id = static_cast<std::uint16_t>(a.require_number("id"));
    if (auto s = store.add_package(id, a.require("name"), services); !s) throw std::runtime_error(s.error().message);
    std::printf("package %u '%s' with %zu services\n", id, a.get("name").c_str(), services.size());
    return 0;
  }
  if (sub == "package" && object == "list") {
    auto store = open(a);
    for (const auto& [id, name] : store.packages()) {
      std::string list;
      for (auto s : need(store.package_services(id))) list += (list.empty() ? "" : ",") + std::to_string(s);
      std::printf("%5u  %-20s services %s\n", id, name.c_str(), list.c_str());
    }
    return 0;
  }
  if (sub == "device" && object == "add") {
    auto store = open(a);
    auto f = need(entitlement::StbPublicFile::read(a.require("stb-file")));
    if (auto s = store.register_stb({f.stb_id, f.x25519_public, f.ed25519_public}); !s) throw std::runtime_error(s.error().message);
    if (a.has("account")) {
      if (auto s = store.set_stb_account(f.stb_id, a.get("account")); !s) throw std::runtime_error(s.error().message);
    }
    std::printf("STB %u registered%s\n", f.stb_id, a.has("account") ? (" for account " + a.get("account")).c_str() : "");
    return 0;
  }
  if (sub == "device" && object == "assign") {
    auto store = open(a);
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    if (auto s = store.set_stb_account(stb, a.require("account")); !s) throw std::runtime_error(s.error().message);
    std::printf("STB %u belongs to account %s\n", stb, a.get("account").c_str());
    return 0;
  }
  if (sub == "device" && object == "list") {
    auto store = open(a);
    for (const auto& s : store.stbs()) std::printf("STB %u\n", s.stb_id);
    return 0;
  }
  if (sub == "grant") {
    auto store = open(a);
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    const auto from = parse_time(a.get("from", "now"));
    const auto until = a.has("until") ? parse_time(a.get("until")) : from + static_cast<std::uint64_t>(a.number("days", 30)) * 86400;
    const bool package = a.has("package");
    const auto id = static_cast<std::uint16_t>(a.require_number(package ? "package" : "service"));
    auto s = package ? store.grant_package(stb, id, from, until) : store.grant(stb, id, from, until);
    if (!s) throw std::runtime_error(s.error().message);
    std::printf("STB %u granted %s %u from %s until %s; EMM queued\n", stb, package ? "package" : "service", id,
                format_utc(from).c_str(), format_utc(until).c_str());
    return 0;
  }
  if (sub == "revoke") {
    auto store = open(a);
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    const bool package = a.has("package");
    const auto id = static_cast<std::uint16_t>(a.require_number(package ? "package" : "service"));
    auto s = package ? store.revoke_package(stb, id) : store.revoke(stb, id);
    if (!s) throw std::runtime_error(s.error().message);
    std::printf("STB %u: %s %u revoked; EMM queued\n", stb, package ? "package" : "service", id);
    return 0;
  }
  if (sub == "event" && object == "add") {
    auto store = open(a);
    entitlement::EventInfo e;
    const auto id = a.require_number("id");
    if (id <= 0 || id > 0xFFFFFFFFLL) throw UsageError("--id must be from 1 to 4294967295");
    e.event_id = static_cast<std::uint32_t>(id);
    e.service_id = static_cast<std::uint16_t>(a.require_number("service"));
    e.start = parse_time(a.require("start"));
    e.duration = static_cast<std::uint32_t>(parse_duration(a.require("duration")));
    e.title = a.require("title");
    e.min_age = static_cast<std::uint8_t>(a.number("min-age", 0));
    e.price.minor = need(entitlement::parse_amount(a.require("price")));
    e.price.currency = need(entitlement::parse_currency(a.require("currency")));
    auto added = need(store.add_event(e));
    std::printf("event %u '%s' on service %u, %s for %u s, %s\n", added.event_id, added.title.c_str(), added.service_id,
                format_utc(added.start).c_str(), added.duration, entitlement::format_money(added.price).c_str());
    return 0;
  }
  if (sub == "event" && object == "list") {
    auto store = open(a);
    for (const auto& e : store.events()) {
      std::printf("%6u  service %-5u %s  %6u s  %-12s %s\n", e.event_id, e.service_id, format_utc(e.start).c_str(),
                  e.duration, entitlement::format_money(e.price).c_str(), e.title.c_str());
    }
    return 0;
  }
  if (sub == "headend" && object == "add") {
    auto store = open(a);
    auto f = need(headend::HeadendPublicFile::read(a.require("file")));
    if (auto s = store.register_headend(f.headend_id, f.x25519_public); !s) throw std::runtime_error(s.error().message);
    std::printf("headend %u registered\n", f.headend_id);
    return 0;
  }
  if (sub == "credit") {
    auto store = open(a);
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    const entitlement::Money limit{need(entitlement::parse_amount(a.require("limit"))),
                                   need(entitlement::parse_currency(a.require("currency")))};
    std::optional<std::uint64_t> collect_within;
    if (a.has("collect-within")) collect_within = parse_duration(a.get("collect-within"));
    if (auto s = store.set_credit(stb, limit, unix_now(), collect_within); !s) throw std::runtime_error(s.error().message);
    std::printf("STB %u: credit line %s; EMM queued\n", stb, entitlement::format_money(limit).c_str());
    return 0;
  }
  if (sub == "tickets") {
    auto store = open(a);
    for (const auto& t : store.tickets()) {
      std::printf("ticket %llu: event %u, STB %u, card %llu, %s\n", static_cast<unsigned long long>(t.ticket_id), t.event_id,
                  t.stb_id, static_cast<unsigned long long>(t.card_id), t.status.c_str());
    }
    return 0;
  }
  if (sub == "ticket" && object == "revoke") {
    auto store = open(a);
    const auto id = static_cast<std::uint64_t>(a.require_number("ticket"));
    if (auto s = store.revoke_ticket(id, a.has("refund")); !s) throw std::runtime_error(s.error().message);
    std::printf("ticket %llu revoked%s; EMM queued\n", static_cast<unsigned long long>(id), a.has("refund") ? " and refunded" : "");
    return 0;
  }
  if (sub == "serve") {
    auto store = open(a);
    entitlement::TestAcquirer acquirer;
    entitlement::EngineService service(store, acquirer);
    net::ReplyServer server(a.get("bind", "tcp://127.0.0.1:7700"),
                            net::ReplyServer::BatchHandler([&](const auto& requests) { return service.handle_batch(requests); }));
    Logger("entitlement").info("serving on ", server.endpoint(), " (test acquirer for top-ups)");
    install_stop_handlers();
    server.run(stop_requested());
    Logger("entitlement").info("stopped after ", server.requests_served(), " requests");
    return 0;
  }
  if (sub == "config") {
    auto store = open(a);
    if (a.has("emm-repeat")) {
      const auto seconds = a.get("emm-repeat") == "0" ? 0 : parse_duration(a.get("emm-repeat"));
      if (auto s = store.set_emm_repeat_seconds(seconds); !s) throw std::runtime_error(s.error().message);
    }
    const auto repeat = store.emm_repeat_seconds();
    std::printf("EMM repetition: %s\n", repeat == 0 ? "while each entitlement lasts" : (std::to_string(repeat) + " s after first sending").c_str());
    return 0;
  }
  if (sub == "grants") {
    auto store = open(a);
    for (const auto& g : store.grants()) {
      std::printf("STB %u service %u %s .. %s%s\n", g.stb_id, g.service_id, format_utc(g.not_before).c_str(),
                  format_utc(g.not_after).c_str(), g.revoked ? " (revoked)" : "");
    }
    return 0;
  }
  throw UsageError("unknown subcommand '" + sub + (object.empty() ? "" : " " + object) + "' (see --help)");
}

}  // namespace usher::cli
