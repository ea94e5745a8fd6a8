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

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher billing: settles viewing histories and hotel folios

  usher billing init --engine-home ENT_HOME [--id 1] [--home DIR]
      Makes billing's signing key; the operator (ENT_HOME) certifies it, so STBs trust its receipts.
  usher billing serve [--bind tcp://127.0.0.1:7720] [--pms HOST:PORT] [--sync 5s] [--home DIR]
      Billing as a ZeroMQ service: handsets relay STB histories and pay (`usher wallet relay`),
      buy prepaid credit (`usher wallet prepay`); hotel room STBs report their purchases. Finishes
      any settlement a crash left half done before serving. Every --sync period it delivers room
      states the room STBs have not taken yet. With --pms it also runs the hotel PMS link (as
      `usher billing pms`). Stops on Ctrl-C / SIGTERM.
  usher billing statement (--account NAME | --stb S) [--csv] [--home DIR]
      What an account or an STB bought and how it was paid: cash (bought with the handset),
      deferred (impulse purchases settled through the handset), prepayment, prepaid, folio.

  Hotels (F6):
  usher billing hotel config --credit 100.00 --currency EUR [--home DIR]
      What a guest may buy on the room between two collections.
  usher billing hotel room add --room 102 --stb S --link tcp://ROOM-STB:7801 [--home DIR]
  usher billing hotel rooms [--home DIR]
  usher billing hotel checkin --room 102 --guest-id 12345 --name "Koehler, Andreas"
                              [--report-to tcp://127.0.0.1:7720] [--home DIR]
      Opens the guest's folio; the room STB may buy from now on and reports to --report-to.
  usher billing hotel checkout --room 102 [--force] [--out DIR] [--home DIR]
      Collects the room STB's last purchases, closes the folio, clears the STB's tickets and
      history, prints the statement and writes DIR/folio-N.txt, .csv and .pdf (DIR: HOME/folios).
      Refused while the room STB does not answer, unless --force.
  usher billing hotel folio --stay N [--csv | --pdf FILE] [--home DIR]
  usher billing hotel stays [--home DIR]
  usher billing hotel postings [--retry N] [--home DIR]
      Charges sent to the PMS: ok, pending (to send or resend) or refused (for the front desk);
      --retry N sends refused posting N again.
  usher billing pms --pms HOST:PORT [--report-to ENDPOINT] [--home DIR]
      The PMS link (FIAS-style records over TCP): guest in/out from the PMS become check-in and
      check-out; each folio charge is posted and resent until the PMS answers it.

  DIR defaults to ./usher-data/billing.
)";

std::string home(const Args& a) { return a.get("home", "usher-data/billing"); }
billing::BillingStore open(const Args& a) { return need(billing::BillingStore::open(home(a))); }

billing::PmsLink::Options pms_options(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) throw UsageError("--pms must be HOST:PORT, got '" + spec + "'");
  billing::PmsLink::Options o;
  o.host = spec.substr(0, colon);
  o.port = static_cast<std::uint16_t>(std::stoi(spec.substr(colon + 1)));
  return o;
}

void print_statement(const billing::Statement& s, bool csv) { std::fputs(csv ? s.csv().c_str() : s.text().c_str(), stdout); }

int hotel(const std::string& what, const std::string& object, const Args& a) {
  auto store = open(a);
  billing::HotelDesk desk(store, a.get("report-to", "tcp://127.0.0.1:7720"));
  if (what == "config") {
    const auto limit = need(entitlement::parse_amount(a.require("credit")));
    const auto cur = need(entitlement::parse_currency(a.require("currency")));
    need(store.set_hotel_credit({limit, cur}));
    std::printf("guests may buy up to %s on the room\n", entitlement::format_money({limit, cur}).c_str());
    return 0;
  }
  if (what == "room" && object == "add") {
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    const bool told = need(desk.add_room(a.require("room"), stb, a.require("link")));
    std::printf("room %s: STB %u on %s (vacant)%s\n", a.get("room").c_str(), stb, a.get("link").c_str(),
                told ? "" : "; the STB did not answer and is told when it does (billing serve)");
    return 0;
  }
  if (what == "rooms") {
    for (const auto& r : store.rooms()) {
      std::printf("room %s: STB %u on %s, %s%s\n", r.room.c_str(), r.stb_id, r.link_endpoint.c_str(),
                  r.stay_id == 0 ? "vacant" : ("stay " + std::to_string(r.stay_id)).c_str(), r.state_pending ? " (STB not told yet)" : "");
    }
    return 0;
  }
  if (what == "checkin") {
    const auto in = need(desk.check_in(a.require("room"), a.require("guest-id"), a.require("name"), unix_now()));
    std::printf("%s checked in to room %s: folio %llu open%s\n", in.stay.guest_name.c_str(), in.stay.room.c_str(),
                static_cast<unsigned long long>(in.stay.stay_id),
                in.stb_told ? "" : "; the room STB did not answer and is told when it does (billing serve)");
    return 0;
  }
  if (what == "checkout") {
    const auto out = need(desk.check_out(a.require("room"), unix_now(), a.has("force")));
    print_statement(out.folio, false);
    const std::filesystem::path dir = a.get("out", (std::filesystem::path(home(a)) / "folios").string());
    std::filesystem::create_directories(dir);
    const auto base = dir / ("folio-" + std::to_string(out.stay.stay_id));
    std::ofstream(base.string() + ".txt") << out.folio.text();
    std::ofstream(base.string() + ".csv") << out.folio.csv();
    std::ofstream(base.string() + ".pdf", std::ios::binary) << out.folio.pdf();
    std::printf("folio %llu closed; statement in %s.txt, .csv and .pdf; room STB %s\n", static_cast<unsigned long long>(out.stay.stay_id),
                base.string().c_str(), out.stb_cleared ? "cleared" : "not answering: cleared when it does");
    return 0;
  }
  if (what == "folio") {
    const auto folio = need(store.folio(static_cast<std::uint64_t>(a.require_number("stay"))));
    if (a.has("pdf")) {
      std::ofstream(a.get("pdf"), std::ios::binary) << folio.pdf();
      std::printf("folio written to %s\n", a.get("pdf").c_str());
    } else {
      print_statement(folio, a.has("csv"));
    }
    return 0;
  }
  if (what == "stays") {
    for (const auto& s : store.stays()) {
      std::printf("stay %llu: %s (guest %s), room %s, in %s%s\n", static_cast<unsigned long long>(s.stay_id), s.guest_name.c_str(),
                  s.guest_id.c_str(), s.room.c_str(), format_utc(s.checkin).c_str(),
                  s.checkout == 0 ? ", checked in" : (", out " + format_utc(s.checkout)).c_str());
    }
    return 0;
  }
  if (what == "postings") {
    if (a.has("retry")) {
      need(store.pms_retry(static_cast<std::uint64_t>(a.require_number("retry"))));
      std::printf("posting %s will be sent to the PMS again\n", a.get("retry").c_str());
      return 0;
    }
    for (const auto& p : store.pms_postings(false)) {
      std::printf("posting %llu: room %s guest %s %s '%s' %s (%d attempt%s%s%s)\n", static_cast<unsigned long long>(p.posting_id),
                  p.room.c_str(), p.guest_id.c_str(), entitlement::format_money(p.amount).c_str(), p.description.c_str(), p.state.c_str(),
                  p.attempts, p.attempts == 1 ? "" : "s", p.answer.empty() ? "" : ", last answer ", p.answer.c_str());
    }
    return 0;
  }
  throw UsageError("unknown hotel subcommand '" + what + "' (config, room add, rooms, checkin, checkout, folio, stays, postings)");
}

// The background round of `billing serve`: settlements a crash left half done, and room states the
// room STBs have not taken yet. Its own connections: the stores are not shared between threads.
void sync_rooms(const std::string& home_dir, const std::string& report_to, std::chrono::seconds period) {
  Logger log("billing");
  auto store = billing::BillingStore::open(home_dir);
  if (!store) return;
  billing::HotelDesk desk(*store, report_to);
  while (!stop_requested()) {
    for (const auto& r : store->rooms()) {
      if (!r.state_pending) continue;
      if (auto s = desk.sync(r.room, unix_now()); s) log.info("room ", r.room, ": STB brought up to date");
    }
    for (auto waited = std::chrono::milliseconds(0); waited < period && !stop_requested(); waited += std::chrono::milliseconds(100)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void run_pms(const std::string& home_dir, const std::string& report_to, const billing::PmsLink::Options& options) {
  auto store = billing::BillingStore::open(home_dir);
  if (!store) throw std::runtime_error(store.error().message);
  billing::HotelDesk desk(*store, report_to);
  billing::PmsLink link(*store, desk, options);
  Logger("pms").info("PMS link to ", options.host, ":", options.port);
  link.run(stop_requested());
}

}  // namespace

int cmd_billing(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(kUsage, stdout);
    return argv.empty() ? 2 : 0;
  }
  const std::string sub = argv[0];
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  std::string what;
  std::string object;
  if (sub == "hotel" && !rest.empty() && rest[0].rfind("--", 0) != 0) {
    what = rest[0];
    rest.erase(rest.begin());
    if (what == "room" && !rest.empty() && rest[0].rfind("--", 0) != 0) {
      object = rest[0];
      rest.erase(rest.begin());
    }
  }
  const Args a(rest, {"csv", "force"});
  if (a.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (sub == "init") {
    auto store = need(billing::BillingStore::create(home(a), a.require("engine-home"), static_cast<std::uint32_t>(a.number("id", 1))));
    std::printf("billing %u initialised in %s, certified by the operator in %s\n", store.certificate().billing_id, home(a).c_str(),
                a.get("engine-home").c_str());
    return 0;
  }
  if (sub == "serve") {
    auto store = open(a);
    Logger log("billing");
    if (const auto n = store.recover(unix_now()); n > 0) log.info("finished ", n, " settlements a stop left half done");
    billing::BillingService service(store);
    net::ReplyServer server(a.get("bind", "tcp://127.0.0.1:7720"),
                            net::ReplyServer::BatchHandler([&](const auto& requests) { return service.handle_batch(requests); }),
                            billing::kBillingServerLimits);
    log.info("serving on ", server.endpoint());
    install_stop_handlers();
    const auto report_to = a.get("report-to", server.endpoint());
    std::thread rooms(sync_rooms, home(a), report_to, std::chrono::seconds(parse_duration(a.get("sync", "5s"))));
    std::thread pms;
    if (a.has("pms")) pms = std::thread(run_pms, home(a), report_to, pms_options(a.get("pms")));
    server.run(stop_requested());
    rooms.join();
    if (pms.joinable()) pms.join();
    log.info("stopped after ", server.requests_served(), " requests");
    return 0;
  }
  if (sub == "pms") {
    install_stop_handlers();
    run_pms(home(a), a.get("report-to", "tcp://127.0.0.1:7720"), pms_options(a.require("pms")));
    return 0;
  }
  if (sub == "statement") {
    auto store = open(a);
    if (a.has("account")) print_statement(need(store.account_statement(a.get("account"))), a.has("csv"));
    else print_statement(need(store.stb_statement(static_cast<std::uint32_t>(a.require_number("stb")))), a.has("csv"));
    return 0;
  }
  if (sub == "hotel") return hotel(what, object, a);
  throw UsageError("unknown subcommand '" + sub + "' (init, serve, statement, hotel, pms)");
}

}  // namespace usher::cli
