// usher billing: the billing service (F4 settlements through the handset, prepayment, hotels).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli.h"
#include "usher/billing/billing_service.h"
#include "usher/billing/fias.h"
#include "usher/billing/hotel_desk.h"
#include "usher/core/log.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/store.h"

namespace usher::cli {
namespace {

struct BillingOptions {
  std::string home;
  std::string engine_home;
  std::string engine;  // the engine's endpoint ("" : the one in billing's identity)
  std::string operator_file;
  std::string certificate_file;
  std::string database_url;
  std::uint32_t id = 1;
  std::string bind = "tcp://127.0.0.1:7720";
  std::string pms;
  std::uint64_t sync_s = 5;
  std::string report_to;
  std::string account;
  std::uint32_t stb = 0;
  bool csv = false;
  std::int64_t credit = 0;
  std::string currency;
  std::string hotel_name;
  std::string room;
  std::string link;
  std::string guest_id;
  std::string name;
  bool force = false;
  std::string out;
  std::uint64_t stay = 0;
  std::string pdf;
  std::uint64_t retry = 0;
  MonitorOptions monitor;
};

billing::BillingStore open(const BillingOptions& a) { return need(billing::BillingStore::open(a.home, a.engine)); }

// One machine: the operator's store, opened for this only, certifies billing's keys (as `usher
// entitlement billing add` would) and billing installs the certificate. Billing keeps nothing of it.
void certify_here(billing::BillingStore& store, const std::string& engine_home) {
  auto engine = need(entitlement::EntitlementStore::open(engine_home));
  const auto pub = store.public_file();
  (void)need(store.install_certificate(engine.certify_billing(pub.billing_id, pub.ed25519_public, pub.x25519_public, unix_now())));
}

billing::PmsLink::Options pms_options(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) throw UsageError("--pms must be HOST:PORT, got '" + spec + "'");
  billing::PmsLink::Options o;
  o.host = spec.substr(0, colon);
  auto port = parse_integer<std::uint16_t>(spec.substr(colon + 1), 1, 65535);
  if (!port) throw UsageError("--pms port: " + port.error().message);
  o.port = *port;
  return o;
}

void print_statement(const billing::Statement& s, bool csv) { std::fputs(csv ? s.csv().c_str() : s.text().c_str(), stdout); }

// The background round of `billing serve`: settlements a crash or an engine that was down left half
// done, and room states the room STBs have not taken yet. Its own connections: the stores are not
// shared between threads.
void sync_rooms(const std::string& home_dir, const std::string& engine, const std::string& report_to, std::chrono::seconds period) {
  Logger log("billing");
  auto store = billing::BillingStore::open(home_dir, engine);
  if (!store) return;
  billing::HotelDesk desk(*store, report_to);
  while (!stop_requested()) {
    if (const auto n = store->recover(unix_now()); n > 0) log.info("finished ", n, " settlements left half done");
    for (const auto& r : store->rooms()) {
      if (!r.state_pending) continue;
      if (auto s = desk.sync(r.room, unix_now()); s) log.info("room ", r.room, ": STB brought up to date");
    }
    for (auto waited = std::chrono::milliseconds(0); waited < period && !stop_requested(); waited += std::chrono::milliseconds(100)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void run_pms(const std::string& home_dir, const std::string& engine, const std::string& report_to, const billing::PmsLink::Options& options) {
  auto store = billing::BillingStore::open(home_dir, engine);
  if (!store) throw std::runtime_error(store.error().message);
  billing::HotelDesk desk(*store, report_to);
  billing::PmsLink link(*store, desk, options);
  Logger("pms").info("PMS link to ", options.host, ":", options.port);
  link.run(stop_requested());
}

}  // namespace

void add_billing(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<BillingOptions>();
  auto* billing_group = add_group(root, "billing", "settles STB viewing histories relayed by handsets, prepayments, hotel folios and the PMS link");
  billing_group->footer("DIR defaults to ./usher-data/billing.");
  auto leaf = [&](CLI::App* parent, const std::string& name, const std::string& description) {
    auto* app = parent->add_subcommand(name, description);
    add_home(*app, o->home, "usher-data/billing");
    return app;
  };
  auto report_to = [&](CLI::App* app, const std::string& help) {
    return app->add_option("--report-to", o->report_to, help)->type_name("ENDPOINT");
  };

  auto* init = leaf(billing_group, "init",
                    "Makes billing's keys (Ed25519 to sign receipts and room states, X25519 that STBs seal their history for) and "
                    "writes DIR/billing.pub for the operator to certify (`usher entitlement billing add --public-file`); `usher billing "
                    "certify --certificate` installs what it gives back. Billing keeps the engine's endpoint and the operator's public "
                    "identity, never the engine's home nor a key of the operator's. On the operator's machine --engine-home certifies "
                    "at once.");
  init->add_option("--operator", o->operator_file, "the operator's public identity")->type_name("ENT_HOME/operator.pub");
  init->add_option("--engine-home", o->engine_home, "one machine: the operator's directory, read once to certify billing (and for operator.pub)")
      ->type_name("ENT_HOME");
  init->add_option("--engine", o->engine, "where billing asks the engine (default tcp://127.0.0.1:7700)")->type_name("ENDPOINT");
  add_integer<std::uint32_t>(*init, "--id", o->id, "billing's id (default 1)", 1, 0xFFFFFFFF);
  init->add_option("--db", o->database_url,
                   "keep billing's store on this PostgreSQL server (postgresql://USER:PASSWORD@HOST:PORT/DATABASE) instead of a "
                   "SQLite file in the home; the home keeps the URL and billing's keys, and a copy of it runs another billing on "
                   "the same database")
      ->type_name("URL");
  commands.on(init, [o] {
    if (o->operator_file.empty() && o->engine_home.empty()) throw UsageError("give --operator ENT_HOME/operator.pub (or, on the operator's machine, --engine-home ENT_HOME)");
    const auto operator_file = !o->operator_file.empty() ? o->operator_file
                                                         : (std::filesystem::path(o->engine_home) / entitlement::OperatorPublicFile::kFileName).string();
    const auto op = need(entitlement::OperatorPublicFile::read(operator_file));
    auto store = need(billing::BillingStore::create(o->home, o->id, op,
                                                    o->engine.empty() ? std::string(billing::kDefaultEngineEndpoint) : o->engine,
                                                    o->database_url));
    const auto pub = (std::filesystem::path(o->home) / billing::BillingStore::kPublicName).string();
    if (!o->engine_home.empty()) {
      certify_here(store, o->engine_home);
      std::printf("billing %u initialised in %s, certified by the operator in %s (public keys in %s)\n", store.certificate().billing_id,
                  o->home.c_str(), o->engine_home.c_str(), pub.c_str());
    } else {
      std::printf("billing %u initialised in %s; give %s to the operator (usher entitlement billing add --public-file) and install the "
                  "certificate it makes (usher billing certify --certificate FILE)\n",
                  store.certificate().billing_id, o->home.c_str(), pub.c_str());
    }
    return 0;
  });

  auto* certify = leaf(billing_group, "certify",
                       "Installs billing's certificate: the file `usher entitlement billing add` wrote from billing.pub (--certificate), "
                       "checked against the operator's key billing keeps, or, on the operator's machine, made from the operator's "
                       "directory (--engine-home). A billing made by an older Usher is certified again so (its X25519 key, made when "
                       "its store was brought forward, is in billing.pub). STBs then seal their history for it; receipts already "
                       "issued stay valid.");
  auto* certify_file = certify->add_option("--certificate", o->certificate_file, "from `usher entitlement billing add`")->type_name("FILE");
  auto* certify_engine = certify->add_option("--engine-home", o->engine_home, "one machine: the operator's directory, read once")
                             ->type_name("ENT_HOME");
  certify_engine->excludes(certify_file);
  commands.on(certify, [o] {
    auto store = open(*o);
    if (!o->certificate_file.empty()) {
      (void)need(store.install_certificate(need(entitlement::read_billing_certificate(o->certificate_file))));
    } else if (!o->engine_home.empty()) {
      certify_here(store, o->engine_home);
    } else {
      throw UsageError("give --certificate FILE (or, on the operator's machine, --engine-home ENT_HOME)");
    }
    std::printf("billing %u certified by the operator\n", store.certificate().billing_id);
    return 0;
  });

  auto* serve = leaf(billing_group, "serve",
                     "Billing as a ZeroMQ service: handsets relay STB histories and pay (`usher wallet relay`), buy prepaid "
                     "credit (`usher wallet prepay`); hotel room STBs report their purchases. Finishes any settlement a crash "
                     "left half done before serving. Every --sync period it delivers room states the room STBs have not taken "
                     "yet. With --pms it also runs the hotel PMS link (as `usher billing pms`). Stops on Ctrl-C / SIGTERM (exit status 0) "
                     "after a JSON line of counters on stderr.");
  serve->add_option("--bind", o->bind, "the ZeroMQ endpoint")->type_name("ENDPOINT")->capture_default_str();
  serve->add_option("--engine", o->engine, "the entitlement engine to ask (default: the one given at `billing init`)")->type_name("ENDPOINT");
  serve->add_option("--pms", o->pms, "also run the PMS link")->type_name("HOST:PORT");
  add_duration(*serve, "--sync", o->sync_s, "how often room states are delivered (default 5s)");
  report_to(serve, "where room STBs report (default: --bind)");
  add_monitor_options(*serve, o->monitor, "a status line on stderr this often while requests come: served, refused, by kind");
  commands.on(serve, [o] {
    std::optional<billing::PmsLink::Options> pms;
    if (!o->pms.empty()) pms = pms_options(o->pms);
    if (o->sync_s == 0) throw UsageError("--sync must be at least 1 s");
    install_stop_handlers();
    entitlement::RequestCounters counters(entitlement::billing_message_kind);
    const auto metrics = start_metrics(o->monitor, [&counters] { return service_metrics("billing", counters.snapshot()); });
    auto store = open(*o);
    (void)need(store.check_certified());
    Logger log("billing");
    if (const auto n = store.recover(unix_now()); n > 0) log.info("finished ", n, " settlements a stop left half done");
    billing::BillingService service(store);
    net::ReplyServer server(o->bind, net::ReplyServer::BatchHandler([&](const auto& requests) {
                              auto replies = service.handle_batch(requests);
                              counters.count_batch(requests, replies);
                              return replies;
                            }),
                            billing::kBillingServerLimits);
    log.info("serving on ", server.endpoint());
    const auto reports = o->report_to.empty() ? server.endpoint() : o->report_to;
    std::thread rooms(sync_rooms, o->home, o->engine, reports, std::chrono::seconds(o->sync_s));
    std::thread pms_thread;
    if (pms) pms_thread = std::thread(run_pms, o->home, o->engine, reports, *pms);
    serve_until_stopped("billing", server, counters, o->monitor);
    rooms.join();
    if (pms_thread.joinable()) pms_thread.join();
    return 0;
  });

  auto* pms = leaf(billing_group, "pms",
                   "The PMS link (FIAS-style records over TCP): guest in/out from the PMS become check-in and check-out; each "
                   "folio charge is posted and resent until the PMS answers it.");
  pms->add_option("--pms", o->pms, "the PMS")->type_name("HOST:PORT")->required();
  report_to(pms, "where room STBs report (default tcp://127.0.0.1:7720)");
  commands.on(pms, [o] {
    const auto options = pms_options(o->pms);
    install_stop_handlers();
    run_pms(o->home, o->engine, o->report_to.empty() ? "tcp://127.0.0.1:7720" : o->report_to, options);
    return 0;
  });

  auto* statement = leaf(billing_group, "statement",
                         "What an account or an STB bought and how it was paid: cash (bought with the handset), deferred (impulse "
                         "purchases settled through the handset), prepayment, prepaid, folio.");
  auto* account = statement->add_option("--account", o->account, "the account")->type_name("NAME");
  auto* stb = add_integer<std::uint32_t>(*statement, "--stb", o->stb, "the STB", 1, 0xFFFFFFFF);
  account->excludes(stb);
  statement->add_flag("--csv", o->csv, "as CSV");
  commands.on(statement, [o, account, stb] {
    if (account->count() + stb->count() == 0) throw UsageError("whose statement? --account NAME or --stb S");
    auto store = open(*o);
    if (account->count() > 0) print_statement(need(store.account_statement(o->account)), o->csv);
    else print_statement(need(store.stb_statement(o->stb)), o->csv);
    return 0;
  });

  auto* hotel = add_group(*billing_group, "hotel", "Hotels (F6): rooms, guests' stays, folios and the PMS postings");
  auto desk_for = [](const BillingOptions& a, billing::BillingStore& store) {
    return billing::HotelDesk(store, a.report_to.empty() ? "tcp://127.0.0.1:7720" : a.report_to);
  };
  auto* config = leaf(hotel, "config", "What a guest may buy on the room between two collections, and the hotel's name on folios.");
  auto* credit = add_amount(*config, "--credit", o->credit, "the limit, as 100.00");
  auto* currency = config->add_option("--currency", o->currency, "ISO 4217 code, as EUR")->type_name("CODE");
  credit->needs(currency);
  currency->needs(credit);
  auto* name = config->add_option("--name", o->hotel_name, "the hotel's name, printed at the head of each folio (UTF-8)")->type_name("NAME");
  commands.on(config, [o, credit, name] {
    if (credit->count() == 0 && name->count() == 0) throw UsageError("nothing to set: --credit AMOUNT --currency CODE, or --name NAME");
    auto store = open(*o);
    if (name->count() > 0) {
      need(store.set_hotel_name(o->hotel_name));
      std::printf("folios are headed \"%s\"\n", o->hotel_name.c_str());
    }
    if (credit->count() > 0) {
      const entitlement::Money limit{o->credit, need(entitlement::parse_currency(o->currency))};
      need(store.set_hotel_credit(limit));
      std::printf("guests may buy up to %s on the room\n", entitlement::format_money(limit).c_str());
    }
    return 0;
  });
  auto* room = add_group(*hotel, "room", "the hotel's rooms");
  auto* room_add = leaf(room, "add", "Adds a room with its STB and the STB's local link.");
  room_add->add_option("--room", o->room, "the room's number")->required();
  add_integer<std::uint32_t>(*room_add, "--stb", o->stb, "the room's STB", 1, 0xFFFFFFFF)->required();
  room_add->add_option("--link", o->link, "the room STB's link, as tcp://ROOM-STB:7801")->type_name("ENDPOINT")->required();
  report_to(room_add, "where the room STB reports");
  commands.on(room_add, [o, desk_for] {
    auto store = open(*o);
    auto desk = desk_for(*o, store);
    const bool told = need(desk.add_room(o->room, o->stb, o->link));
    std::printf("room %s: STB %u on %s (vacant)%s\n", o->room.c_str(), o->stb, o->link.c_str(),
                told ? "" : "; the STB did not answer and is told when it does (billing serve)");
    return 0;
  });
  auto* rooms = leaf(hotel, "rooms", "Lists the rooms.");
  commands.on(rooms, [o] {
    auto store = open(*o);
    for (const auto& r : store.rooms()) {
      std::printf("room %s: STB %u on %s, %s%s\n", r.room.c_str(), r.stb_id, r.link_endpoint.c_str(),
                  r.stay_id == 0 ? "vacant" : ("stay " + std::to_string(r.stay_id)).c_str(), r.state_pending ? " (STB not told yet)" : "");
    }
    return 0;
  });
  auto* checkin = leaf(hotel, "checkin", "Opens the guest's folio; the room STB may buy from now on and reports to --report-to.");
  checkin->add_option("--room", o->room, "the room")->required();
  checkin->add_option("--guest-id", o->guest_id, "the PMS's guest id")->required();
  checkin->add_option("--name", o->name, "the guest's name, as \"Koehler, Andreas\"")->required();
  report_to(checkin, "billing's endpoint for the room STB's reports (default tcp://127.0.0.1:7720)");
  commands.on(checkin, [o, desk_for] {
    auto store = open(*o);
    auto desk = desk_for(*o, store);
    const auto in = need(desk.check_in(o->room, o->guest_id, o->name, unix_now()));
    std::printf("%s checked in to room %s: folio %llu open%s\n", in.stay.guest_name.c_str(), in.stay.room.c_str(),
                static_cast<unsigned long long>(in.stay.stay_id),
                in.stb_told ? "" : "; the room STB did not answer and is told when it does (billing serve)");
    return 0;
  });
  auto* checkout = leaf(hotel, "checkout",
                        "Collects the room STB's last purchases, closes the folio, clears the STB's tickets and history, prints "
                        "the statement and writes DIR/folio-N.txt, .csv and .pdf (DIR: HOME/folios). Refused while the room "
                        "STB does not answer, unless --force.");
  checkout->add_option("--room", o->room, "the room")->required();
  checkout->add_flag("--force", o->force, "close the folio even if the room STB does not answer");
  checkout->add_option("--out", o->out, "where the folio files go (default HOME/folios)")->type_name("DIR");
  report_to(checkout, "billing's endpoint for the room STB's reports");
  commands.on(checkout, [o, desk_for] {
    auto store = open(*o);
    auto desk = desk_for(*o, store);
    const auto out = need(desk.check_out(o->room, unix_now(), o->force));
    print_statement(out.folio, false);
    const std::filesystem::path dir = o->out.empty() ? std::filesystem::path(o->home) / "folios" : std::filesystem::path(o->out);
    std::filesystem::create_directories(dir);
    const auto base = dir / ("folio-" + std::to_string(out.stay.stay_id));
    std::ofstream(base.string() + ".txt") << out.folio.text();
    std::ofstream(base.string() + ".csv") << out.folio.csv();
    std::ofstream(base.string() + ".pdf", std::ios::binary) << out.folio.pdf();
    std::printf("folio %llu closed; statement in %s.txt, .csv and .pdf; room STB %s\n", static_cast<unsigned long long>(out.stay.stay_id),
                base.string().c_str(), out.stb_cleared ? "cleared" : "not answering: cleared when it does");
    return 0;
  });
  auto* folio = leaf(hotel, "folio", "A stay's folio: text, CSV or PDF.");
  add_integer<std::uint64_t>(*folio, "--stay", o->stay, "the stay", 1, std::numeric_limits<std::int64_t>::max())->required();
  auto* csv = folio->add_flag("--csv", o->csv, "as CSV");
  folio->add_option("--pdf", o->pdf, "write it as PDF to FILE")->type_name("FILE")->excludes(csv);
  commands.on(folio, [o] {
    auto store = open(*o);
    const auto statement_of_stay = need(store.folio(o->stay));
    if (!o->pdf.empty()) {
      std::ofstream(o->pdf, std::ios::binary) << statement_of_stay.pdf();
      std::printf("folio written to %s\n", o->pdf.c_str());
    } else {
      print_statement(statement_of_stay, o->csv);
    }
    return 0;
  });
  auto* stays = leaf(hotel, "stays", "Lists the stays.");
  commands.on(stays, [o] {
    auto store = open(*o);
    for (const auto& s : store.stays()) {
      std::printf("stay %llu: %s (guest %s), room %s, in %s%s\n", static_cast<unsigned long long>(s.stay_id), s.guest_name.c_str(),
                  s.guest_id.c_str(), s.room.c_str(), format_utc(s.checkin).c_str(),
                  s.checkout == 0 ? ", checked in" : (", out " + format_utc(s.checkout)).c_str());
    }
    return 0;
  });
  auto* status = leaf(hotel, "status",
                      "The PMS link as the process running it (billing serve --pms, billing pms) last recorded it: up or "
                      "down and since when, the last error, and the postings waiting for the PMS.");
  commands.on(status, [o] {
    auto store = open(*o);
    std::uint64_t waiting = 0, refused = 0;
    for (const auto& p : store.pms_postings(false)) {
      waiting += p.state == billing::PmsPostingState::pending;
      refused += p.state == billing::PmsPostingState::refused;
    }
    if (const auto link = store.pms_link(); !link) {
      std::printf("PMS link: has not run here (billing serve --pms HOST:PORT, or billing pms)\n");
    } else {
      const char* condition = link->condition == billing::PmsLinkCondition::up     ? "up"
                              : link->condition == billing::PmsLinkCondition::down ? "down"
                                                                                   : "not running (stopped)";
      std::printf("PMS link to %s: %s since %s", link->pms.c_str(), condition, format_utc(link->since).c_str());
      if (link->condition == billing::PmsLinkCondition::down) {
        std::printf(" (%llu failed connect%s, retrying)", static_cast<unsigned long long>(link->failed_attempts),
                    link->failed_attempts == 1 ? "" : "s");
      }
      std::printf("\n");
      if (!link->last_error.empty()) std::printf("last error at %s: %s\n", format_utc(link->last_error_at).c_str(), link->last_error.c_str());
      std::printf("state recorded by the link at %s\n", format_utc(link->recorded).c_str());
    }
    std::printf("%llu posting%s waiting for the PMS, %llu refused (billing hotel postings)\n", static_cast<unsigned long long>(waiting),
                waiting == 1 ? "" : "s", static_cast<unsigned long long>(refused));
    return 0;
  });
  auto* postings = leaf(hotel, "postings",
                        "Charges sent to the PMS: ok, pending (to send or resend) or refused (for the front desk); --retry N "
                        "sends refused posting N again.");
  auto* retry = add_integer<std::uint64_t>(*postings, "--retry", o->retry, "a refused posting to send again", 1,
                                           std::numeric_limits<std::int64_t>::max());
  commands.on(postings, [o, retry] {
    auto store = open(*o);
    if (retry->count() > 0) {
      need(store.pms_retry(o->retry));
      std::printf("posting %llu will be sent to the PMS again\n", static_cast<unsigned long long>(o->retry));
      return 0;
    }
    for (const auto& p : store.pms_postings(false)) {
      std::printf("posting %llu: room %s guest %s %s '%s' %s (%d attempt%s%s%s)\n", static_cast<unsigned long long>(p.posting_id),
                  p.room.c_str(), p.guest_id.c_str(), entitlement::format_money(p.amount).c_str(), p.description.c_str(), billing::to_string(p.state),
                  p.attempts, p.attempts == 1 ? "" : "s", p.answer.empty() ? "" : ", last answer ", p.answer.c_str());
    }
    return 0;
  });
}

}  // namespace usher::cli
