// usher entitlement: the operator's catalogue, set-top boxes, grants and revocations.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli.h"
#include "usher/core/log.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/provisioning.h"
#include "usher/entitlement/store.h"
#include "usher/headend/engine_link.h"

namespace usher::cli {
namespace {

struct EntitlementOptions {
  std::string home;
  std::string database_url;
  MonitorOptions monitor;
  std::uint16_t ca_system_id = entitlement::kDefaultCaSystemId;
  std::uint64_t collect_within_s = 0;
  std::uint16_t service_id = 0;
  std::uint16_t package_id = 0;
  std::string name;
  std::int64_t per_day = 0;
  std::int64_t price = 0;
  std::int64_t limit = 0;
  std::string currency;
  std::vector<std::uint16_t> services;
  std::string stb_file;
  std::string account;
  std::uint32_t stb = 0;
  std::uint64_t from = 0;
  std::uint64_t until = 0;
  std::uint32_t days = 30;
  std::uint64_t emm_repeat = 0;
  std::uint64_t emm_kbps = 0;
  std::uint32_t event_id = 0;
  std::uint64_t start = 0;
  std::uint64_t duration = 0;
  std::string title;
  std::uint8_t min_age = 0;
  std::string file;
  std::string out;
  std::uint64_t ticket = 0;
  bool refund = false;
  std::string text;
  std::string bind = "tcp://127.0.0.1:7700";
  // Bulk provisioning (device import, grant to many boxes).
  std::string format;
  std::string stbs_file;
  std::string stb_range;
  bool all_stbs = false;
  std::size_t per_transaction = entitlement::EntitlementStore::kBulkTransactionRows;
};

constexpr const char* kHomeDefault = "usher-data/entitlement";

entitlement::EntitlementStore open(const EntitlementOptions& a) { return need(entitlement::EntitlementStore::open(a.home)); }

entitlement::Currency currency(const EntitlementOptions& a) { return need(entitlement::parse_currency(a.currency)); }

void fail_on(const Status& s) {
  if (!s) throw std::runtime_error(s.error().message);
}

// A whole input file, or stdin for "-".
std::string read_input(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return text.str();
}

// Bulk commands: a status line per committed transaction, and a stop between two on Ctrl-C.
entitlement::EntitlementStore::BulkProgress bulk_progress(std::size_t total, const char* what) {
  install_stop_handlers();
  return [total, what](const entitlement::EntitlementStore::BulkCounts& c) {
    print_status("entitlement", std::to_string(c.added + c.skipped) + " of " + std::to_string(total) + " " + what + " done (" +
                                    std::to_string(c.added) + " added, " + std::to_string(c.skipped) + " skipped)");
    return !stop_requested();
  };
}

}  // namespace

void add_entitlement(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<EntitlementOptions>();
  auto* ent = add_group(root, "entitlement", "the operator: init, services, set-top boxes, grants and revocations");
  ent->footer(
      "DIR defaults to ./usher-data/entitlement. TIME: unix seconds, now, now+2h, 2026-12-01T20:00:00Z.\n"
      "Grants and revocations reach the STB as EMMs, carouselled by `usher headend run`.");
  auto leaf = [&](CLI::App* parent, const std::string& name, const std::string& description) {
    auto* app = parent->add_subcommand(name, description);
    add_home(*app, o->home, kHomeDefault);
    return app;
  };
  auto service_id = [&](CLI::App* app, const std::string& help) {
    return add_integer<std::uint16_t>(*app, "--id", o->service_id, help, 1, 0xFFFF)->required();
  };
  auto stb_id = [&](CLI::App* app) { return add_integer<std::uint32_t>(*app, "--stb", o->stb, "the STB's id", 1, 0xFFFFFFFF); };
  auto currency_option = [&](CLI::App* app) {
    return app->add_option("--currency", o->currency, "ISO 4217 code, as EUR")->type_name("CODE")->required();
  };

  auto* init = leaf(ent, "init", "Creates the operator: its key pair and store, and DIR/operator.pub for STBs.");
  add_integer<std::uint16_t>(*init, "--ca-system-id", o->ca_system_id, "the CA_system_id in CA descriptors", 1, 0xFFFF, true)
      ->default_str("0x4AFF");
  init->add_option("--db", o->database_url,
                   "keep the store on this PostgreSQL server (postgresql://USER:PASSWORD@HOST:PORT/DATABASE) instead of a "
                   "SQLite file in the home; the home keeps the URL and the operator's keys, and a copy of it runs "
                   "another engine on the same database")
      ->type_name("URL");
  commands.on(init, [o] {
    auto store = need(entitlement::EntitlementStore::create(o->home, o->ca_system_id, o->database_url));
    std::printf("operator created in %s (CA_system_id 0x%04x); STBs are initialised with %s/operator.pub\n", o->home.c_str(),
                o->ca_system_id, o->home.c_str());
    if (!o->database_url.empty()) {
      std::printf("its store is on PostgreSQL at %s; %s/operator.key holds its private keys: copy the home to run more engines\n",
                  store.where().c_str(), o->home.c_str());
    }
    return 0;
  });

  auto* service = add_group(*ent, "service", "the services (programs) the operator scrambles");
  auto* service_add = leaf(service, "add", "Adds a service with its first key.");
  service_id(service_add, "the service_id (program_number)");
  service_add->add_option("--name", o->name, "its name")->required();
  commands.on(service_add, [o] {
    auto store = open(*o);
    auto s = need(store.add_service(o->service_id, o->name));
    std::printf("service %u '%s' added (key version %u)\n", s.service_id, s.name.c_str(), s.key_version);
    return 0;
  });
  auto* service_price = leaf(service, "price", "Sells the service by the day (passes bought with `usher wallet buy --service`).");
  service_id(service_price, "the service_id");
  add_amount(*service_price, "--per-day", o->per_day, "the price of a day, as 2.00")->required();
  currency_option(service_price);
  commands.on(service_price, [o] {
    auto store = open(*o);
    const entitlement::Money per_day{o->per_day, currency(*o)};
    fail_on(store.set_pass_price(o->service_id, per_day));
    std::printf("service %u sold by the day at %s\n", o->service_id, entitlement::format_money(per_day).c_str());
    return 0;
  });
  auto* service_rotate = leaf(service, "rotate-key",
                              "Makes the service's next key, used by ECMs from --at on, and announces it at once in the group EMMs "
                              "of its subscribers (one rotation pending at a time).");
  add_integer<std::uint16_t>(*service_rotate, "--service", o->service_id, "the service_id", 1, 0xFFFF)->required();
  add_time(*service_rotate, "--at", o->start, "when the next key comes into use (broadcast time, after now)")->required();
  commands.on(service_rotate, [o] {
    auto store = open(*o);
    const auto next = need(store.rotate_service_key(o->service_id, o->start, unix_now()));
    std::printf("service %u: key version %u in use from %s; announced in group EMMs\n", o->service_id, next.key_version,
                format_utc(next.starts).c_str());
    return 0;
  });
  auto* service_list = leaf(service, "list", "Lists the services.");
  commands.on(service_list, [o] {
    auto store = open(*o);
    for (const auto& s : store.services()) std::printf("%5u  %s key version %u\n", s.service_id, pad_right(s.name, 24).c_str(), s.key_version);
    return 0;
  });

  auto* package = add_group(*ent, "package", "packages: services granted together");
  auto* package_add = leaf(package, "add", "Adds a package of services.");
  add_integer<std::uint16_t>(*package_add, "--id", o->package_id, "the package id", 1, 0xFFFF)->required();
  package_add->add_option("--name", o->name, "its name")->required();
  add_id_list(*package_add, "--services", o->services, "its services, as 1,2,3")->required();
  commands.on(package_add, [o] {
    auto store = open(*o);
    fail_on(store.add_package(o->package_id, o->name, o->services));
    std::printf("package %u '%s' with %zu services\n", o->package_id, o->name.c_str(), o->services.size());
    return 0;
  });
  auto* package_list = leaf(package, "list", "Lists the packages.");
  commands.on(package_list, [o] {
    auto store = open(*o);
    for (const auto& [id, name] : store.packages()) {
      std::string list;
      for (auto s : need(store.package_services(id))) list += (list.empty() ? "" : ",") + std::to_string(s);
      std::printf("%5u  %s services %s\n", id, pad_right(name, 20).c_str(), list.c_str());
    }
    return 0;
  });

  auto* device = add_group(*ent, "device", "the set-top boxes");
  auto* device_add = leaf(device, "add", "Registers an STB from the file `usher stb init` wrote.");
  device_add->add_option("--stb-file", o->stb_file, "STB_HOME/stb.pub")->type_name("FILE")->required();
  device_add->add_option("--account", o->account, "the account it belongs to")->type_name("NAME");
  commands.on(device_add, [o] {
    auto store = open(*o);
    auto f = need(entitlement::StbPublicFile::read(o->stb_file));
    fail_on(store.register_stb({f.stb_id, f.x25519_public, f.ed25519_public}));
    if (!o->account.empty()) fail_on(store.set_stb_account(f.stb_id, o->account));
    std::printf("STB %u registered%s\n", f.stb_id, o->account.empty() ? "" : (" for account " + o->account).c_str());
    return 0;
  });
  auto* device_import = leaf(device, "import",
                             "Registers many STBs from a file a subscriber-management system exports (docs/provisioning.md): CSV lines "
                             "stb_id,x25519_hex,ed25519_hex[,account] (a header line may name the columns) or JSON lines "
                             "{\"stb_id\":N,\"x25519\":\"hex\",\"ed25519\":\"hex\",\"account\":\"name\"}. The whole file is checked first "
                             "and nothing is imported if a line is bad; boxes already registered with the same keys are skipped, so "
                             "running the same command again resumes an interrupted import.");
  device_import->add_option("--file", o->file, "the file, - for stdin")->type_name("FILE")->required();
  device_import->add_option("--format", o->format, "csv or jsonl (default: from the file's extension)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"csv", "jsonl"}));
  add_integer<std::size_t>(*device_import, "--batch", o->per_transaction, "boxes per transaction (default 10000)", 1, 1000000);
  commands.on(device_import, [o] {
    auto format = o->format.empty() ? entitlement::stb_file_format_for(o->file) : entitlement::parse_stb_file_format(o->format);
    if (!format) throw UsageError("say --format csv or --format jsonl: the name " + o->file + " does not tell");
    auto store = open(*o);
    const auto file = entitlement::parse_stb_file(read_input(o->file), *format);
    if (!file.problems.empty()) {
      std::string list;
      for (const auto& p : file.problems) list += "\n  " + o->file + ":" + std::to_string(p.line) + ": " + p.message;
      throw std::runtime_error(std::to_string(file.problems.size()) + " bad lines in " + o->file + ", nothing imported:" + list);
    }
    const auto counts = need(store.register_stbs(file.rows, o->per_transaction, bulk_progress(file.rows.size(), "STBs")));
    std::printf("%zu STBs added, %zu already registered (skipped)\n", counts.added, counts.skipped);
    if (counts.added + counts.skipped < file.rows.size()) {
      std::printf("interrupted: %zu STBs not imported yet; run the same command again to finish\n",
                  file.rows.size() - counts.added - counts.skipped);
      return 1;
    }
    return 0;
  });
  auto* device_assign = leaf(device, "assign", "Gives an STB to an account.");
  stb_id(device_assign)->required();
  device_assign->add_option("--account", o->account, "the account")->type_name("NAME")->required();
  commands.on(device_assign, [o] {
    auto store = open(*o);
    fail_on(store.set_stb_account(o->stb, o->account));
    std::printf("STB %u belongs to account %s\n", o->stb, o->account.c_str());
    return 0;
  });
  auto* device_list = leaf(device, "list", "Lists the STBs.");
  commands.on(device_list, [o] {
    auto store = open(*o);
    for (const auto& s : store.stbs()) std::printf("STB %u\n", s.stb_id);
    return 0;
  });

  for (const bool granting : {true, false}) {
    auto* cmd = leaf(ent, granting ? "grant" : "revoke",
                     granting ? "Grants a service or package to an STB, or to many with --stbs-file, --all or --stb-range (sent as "
                                "EMMs; a bulk grant skips boxes that already hold the same window, so running it again resumes it)."
                              : "Withdraws a service or package from an STB (by EMM).");
    auto* one_stb = stb_id(cmd);
    CLI::Option* stbs_file = nullptr;
    CLI::Option* all_stbs = nullptr;
    CLI::Option* stb_range = nullptr;
    if (granting) {
      stbs_file = cmd->add_option("--stbs-file", o->stbs_file,
                                  "grant to the STBs listed in FILE (an id per line, or the file `device import` read; - for stdin)")
                      ->type_name("FILE");
      all_stbs = cmd->add_flag("--all", o->all_stbs, "grant to every registered STB");
      stb_range = cmd->add_option("--stb-range", o->stb_range, "grant to the registered STBs with ids FIRST to LAST")->type_name("FIRST-LAST");
      for (auto* a : {one_stb, stbs_file, all_stbs, stb_range}) {
        for (auto* b : {one_stb, stbs_file, all_stbs, stb_range}) {
          if (a != b) a->excludes(b);
        }
      }
      add_integer<std::size_t>(*cmd, "--batch", o->per_transaction, "STBs per transaction in a bulk grant (default 10000)", 1, 1000000);
    } else {
      one_stb->required();
    }
    auto* by_service = add_integer<std::uint16_t>(*cmd, "--service", o->service_id, "the service_id", 1, 0xFFFF);
    auto* by_package = add_integer<std::uint16_t>(*cmd, "--package", o->package_id, "the package id", 1, 0xFFFF);
    by_service->excludes(by_package);
    CLI::Option* from = nullptr;
    CLI::Option* until = nullptr;
    if (granting) {
      from = add_time(*cmd, "--from", o->from, "start (default now)");
      until = add_time(*cmd, "--until", o->until, "end");
      add_integer<std::uint32_t>(*cmd, "--days", o->days, "length instead of --until (default 30)", 1, 36500)->excludes(until);
    }
    commands.on(cmd, [o, granting, by_service, by_package, from, until, one_stb, stbs_file, all_stbs, stb_range] {
      if (by_service->count() + by_package->count() != 1) throw UsageError("say what: --service N or --package P");
      const bool is_package = by_package->count() == 1;
      const auto id = is_package ? o->package_id : o->service_id;
      const bool bulk = granting && stbs_file->count() + all_stbs->count() + stb_range->count() > 0;
      if (granting && !bulk && one_stb->count() == 0) throw UsageError("say which STBs: --stb N, --stbs-file FILE, --all or --stb-range FIRST-LAST");
      if (bulk) {
        std::optional<std::pair<std::uint32_t, std::uint32_t>> range;
        if (stb_range->count() > 0) {
          auto parsed = entitlement::parse_stb_range(o->stb_range);
          if (!parsed) throw UsageError("--stb-range: " + parsed.error().message);
          range = *parsed;
        }
        std::vector<std::uint32_t> listed;
        if (stbs_file->count() > 0) listed = need(entitlement::parse_stb_id_list(read_input(o->stbs_file)));
        auto store = open(*o);
        const auto services = is_package ? need(store.package_services(id)) : std::vector<std::uint16_t>{id};
        std::vector<std::uint32_t> stbs;
        if (stbs_file->count() > 0) {
          stbs = std::move(listed);
        } else if (range) {
          stbs = store.stb_ids(range->first, range->second);
        } else {
          stbs = store.stb_ids();
        }
        if (stbs.empty()) throw std::runtime_error("no registered STB to grant to");
        // Without --from the window starts at the day's start (UTC), so that the same command run
        // again the same day names the same window and skips the boxes it already reached.
        const auto not_before = from->count() > 0 ? o->from : unix_now() / 86400 * 86400;
        const auto not_after = until->count() > 0 ? o->until : not_before + std::uint64_t{o->days} * 86400;
        const auto counts = need(store.grant_many(stbs, services, not_before, not_after, o->per_transaction, bulk_progress(stbs.size(), "STBs")));
        std::printf("%s %u granted from %s until %s to %zu STBs; %zu already held it (skipped); EMMs queued\n",
                    is_package ? "package" : "service", id, format_utc(not_before).c_str(), format_utc(not_after).c_str(), counts.added,
                    counts.skipped);
        if (counts.added + counts.skipped < stbs.size()) {
          std::printf("interrupted: %zu STBs not granted yet; run again with --from %llu --until %llu to finish\n",
                      stbs.size() - counts.added - counts.skipped, static_cast<unsigned long long>(not_before),
                      static_cast<unsigned long long>(not_after));
          return 1;
        }
        return 0;
      }
      auto store = open(*o);
      if (!granting) {
        fail_on(is_package ? store.revoke_package(o->stb, id) : store.revoke(o->stb, id));
        std::printf("STB %u: %s %u revoked; EMM queued\n", o->stb, is_package ? "package" : "service", id);
        return 0;
      }
      const auto not_before = from->count() > 0 ? o->from : unix_now();
      const auto not_after = until->count() > 0 ? o->until : not_before + std::uint64_t{o->days} * 86400;
      fail_on(is_package ? store.grant_package(o->stb, id, not_before, not_after) : store.grant(o->stb, id, not_before, not_after));
      std::printf("STB %u granted %s %u from %s until %s; EMM queued\n", o->stb, is_package ? "package" : "service", id,
                  format_utc(not_before).c_str(), format_utc(not_after).c_str());
      return 0;
    });
  }
  auto* cut_off = leaf(device, "cut-off", "Cuts off a cloned or stolen STB: revokes its grants and re-keys its group without it.");
  stb_id(cut_off)->required();
  commands.on(cut_off, [o] {
    auto store = open(*o);
    const auto group = store.group_of(o->stb);
    fail_on(store.cut_off(o->stb));
    if (group) {
      std::printf("STB %u cut off: group %u re-keyed (key version %u); key EMMs queued for its other members\n", o->stb,
                  group->group_id, group->key_version + 1);
    } else {
      std::printf("STB %u cut off\n", o->stb);
    }
    return 0;
  });

  auto* renew = leaf(ent, "renew", "Renews every current grant of a package, in group EMMs (one per group of boxes).");
  add_integer<std::uint16_t>(*renew, "--package", o->package_id, "the package id", 1, 0xFFFF)->required();
  auto* renew_until = add_time(*renew, "--until", o->until, "the new end");
  auto* renew_days = add_integer<std::uint32_t>(*renew, "--days", o->days, "the new end, this many days from now", 1, 36500);
  renew_days->excludes(renew_until);
  commands.on(renew, [o, renew_until, renew_days] {
    if (renew_until->count() + renew_days->count() != 1) throw UsageError("say until when: --until TIME or --days N");
    const auto now = unix_now();
    const auto not_after = renew_until->count() > 0 ? o->until : now + std::uint64_t{o->days} * 86400;
    auto store = open(*o);
    const auto renewed = need(store.renew_package(o->package_id, not_after, now));
    std::printf("package %u renewed until %s for %zu STBs; group EMMs queued\n", o->package_id, format_utc(not_after).c_str(), renewed);
    return 0;
  });

  auto* message = leaf(ent, "message", "Sends a text to every STB, in a global EMM.");
  message->add_option("--text", o->text, "the text (UTF-8, at most 200 bytes)")->required();
  add_integer<std::uint32_t>(*message, "--days", o->days, "how long it is carried (default 30)", 1, 36500);
  commands.on(message, [o] {
    auto store = open(*o);
    const auto until = unix_now() + std::uint64_t{o->days} * 86400;
    const auto id = need(store.send_message(o->text, until));
    std::printf("message %llu queued for every STB until %s\n", static_cast<unsigned long long>(id), format_utc(until).c_str());
    return 0;
  });

  auto* global_key = add_group(*ent, "global-key", "the operator's global key (global EMMs are sealed under it)");
  auto* global_rotate = leaf(global_key, "rotate", "Announces the next global key to every STB, under the current one.");
  commands.on(global_rotate, [o] {
    auto store = open(*o);
    const auto version = need(store.rotate_global_key());
    std::printf("global key version %u announced; global EMMs are sealed under it from now on\n", version);
    return 0;
  });

  auto* grants = leaf(ent, "grants", "Lists the grants.");
  commands.on(grants, [o] {
    auto store = open(*o);
    for (const auto& g : store.grants()) {
      std::printf("STB %u service %u %s .. %s%s\n", g.stb_id, g.service_id, format_utc(g.not_before).c_str(),
                  format_utc(g.not_after).c_str(), g.revoked ? " (revoked)" : "");
    }
    return 0;
  });

  auto* config = leaf(ent, "config",
                      "Shows (or sets) how long the headends repeat each EMM after it is first sent, and their EMM bandwidth.");
  auto* repeat = add_duration(*config, "--emm-repeat", o->emm_repeat, "repetition after first sending, 0: while it lasts");
  auto* emm_kbps = add_integer<std::uint64_t>(*config, "--emm-kbps", o->emm_kbps,
                                              "the EMM bandwidth of headends run with no --emm-kbps/--emm-bitrate, in kbit/s (0: "
                                              "their default)",
                                              0, 100'000);
  commands.on(config, [o, repeat, emm_kbps] {
    auto store = open(*o);
    if (repeat->count() > 0) fail_on(store.set_emm_repeat_seconds(o->emm_repeat));
    if (emm_kbps->count() > 0) fail_on(store.set_emm_kbps(o->emm_kbps));
    const auto seconds = store.emm_repeat_seconds();
    std::printf("EMM repetition: %s\n",
                seconds == 0 ? "while each entitlement lasts" : (std::to_string(seconds) + " s after first sending").c_str());
    const auto kbps = store.emm_kbps();
    std::printf("EMM bandwidth of headends given none: %s\n", kbps == 0 ? "their default" : (std::to_string(kbps) + " kbit/s").c_str());
    return 0;
  });

  auto* event = add_group(*ent, "event", "pay-per-view events");
  auto* event_add = leaf(event, "add", "Adds a PPV event to the schedule.");
  add_integer<std::uint32_t>(*event_add, "--id", o->event_id, "the event id (the EIT event_id)", 1, 0xFFFF)->required();
  add_integer<std::uint16_t>(*event_add, "--service", o->service_id, "the service it is on", 1, 0xFFFF)->required();
  add_time(*event_add, "--start", o->start, "when it starts")->required();
  add_duration(*event_add, "--duration", o->duration, "how long")->required();
  event_add->add_option("--title", o->title, "its title")->required();
  add_amount(*event_add, "--price", o->price, "its price, as 12.50")->required();
  currency_option(event_add);
  add_integer<std::uint8_t>(*event_add, "--min-age", o->min_age, "parental rating (0: none)", 0, 255);
  commands.on(event_add, [o] {
    auto store = open(*o);
    if (o->duration == 0 || o->duration > 0xFFFFFFFFULL) throw UsageError("--duration must be from 1 s to 136 years");
    entitlement::EventInfo e;
    e.event_id = o->event_id;
    e.service_id = o->service_id;
    e.start = o->start;
    e.duration = static_cast<std::uint32_t>(o->duration);
    e.title = o->title;
    e.min_age = o->min_age;
    e.price = {o->price, currency(*o)};
    auto added = need(store.add_event(e));
    std::printf("event %u '%s' on service %u, %s for %u s, %s\n", added.event_id, added.title.c_str(), added.service_id,
                format_utc(added.start).c_str(), added.duration, entitlement::format_money(added.price).c_str());
    return 0;
  });
  auto* event_list = leaf(event, "list", "Lists the events.");
  commands.on(event_list, [o] {
    auto store = open(*o);
    for (const auto& e : store.events()) {
      std::printf("%6u  service %-5u %s  %6u s  %-12s %s\n", e.event_id, e.service_id, format_utc(e.start).c_str(), e.duration,
                  entitlement::format_money(e.price).c_str(), e.title.c_str());
    }
    return 0;
  });

  auto* headend = add_group(*ent, "headend", "the headends allowed to take keys from the engine");
  auto* headend_add = leaf(headend, "add", "Registers a headend from the file `usher headend init` wrote.");
  headend_add->add_option("--file", o->file, "HEADEND_HOME/headend.pub")->type_name("FILE")->required();
  commands.on(headend_add, [o] {
    auto store = open(*o);
    auto f = need(headend::HeadendPublicFile::read(o->file));
    fail_on(store.register_headend(f.headend_id, f.x25519_public));
    std::printf("headend %u registered\n", f.headend_id);
    return 0;
  });

  auto* billing_group = add_group(*ent, "billing", "the billing services the operator certifies");
  auto* billing_add = leaf(billing_group, "add",
                           "Certifies a billing service's keys from the file `usher billing init` wrote (BILLING_HOME/billing.pub) and "
                           "writes its certificate, which billing installs with `usher billing certify --certificate`.");
  billing_add->add_option("--public-file", o->file, "BILLING_HOME/billing.pub")->type_name("FILE")->required();
  billing_add->add_option("--out", o->out, "where to write the certificate (default billing-ID.cert)")->type_name("FILE");
  commands.on(billing_add, [o] {
    auto store = open(*o);
    auto f = need(entitlement::BillingPublicFile::read(o->file));
    const auto cert = store.certify_billing(f.billing_id, f.ed25519_public, f.x25519_public, unix_now());
    const auto out = o->out.empty() ? "billing-" + std::to_string(f.billing_id) + ".cert" : o->out;
    fail_on(entitlement::write_billing_certificate(cert, out));
    std::printf("billing %u certified; give it %s (usher billing certify --certificate %s)\n", f.billing_id, out.c_str(), out.c_str());
    return 0;
  });

  auto* credit = leaf(ent, "credit", "A credit line for impulse purchases on the STB (sent by EMM with offers for coming events).");
  stb_id(credit)->required();
  add_amount(*credit, "--limit", o->limit, "the limit, as 20.00")->required();
  currency_option(credit);
  auto* collect_within = add_duration(*credit, "--collect-within", o->collect_within_s,
                                      "purchases not relayed that long after they were made stop impulse buys on the STB "
                                      "until they are (0 removes the deadline; absent: the box keeps its deadline)");
  commands.on(credit, [o, collect_within] {
    auto store = open(*o);
    const entitlement::Money limit{o->limit, currency(*o)};
    std::optional<std::uint64_t> within;
    if (collect_within->count() > 0) within = o->collect_within_s;
    fail_on(store.set_credit(o->stb, limit, unix_now(), within));
    std::printf("STB %u: credit line %s; EMM queued\n", o->stb, entitlement::format_money(limit).c_str());
    return 0;
  });

  auto* tickets = leaf(ent, "tickets", "Lists the PPV tickets sold.");
  commands.on(tickets, [o] {
    auto store = open(*o);
    for (const auto& t : store.tickets()) {
      std::printf("ticket %llu: event %u, STB %u, card %llu, %s\n", static_cast<unsigned long long>(t.ticket_id), t.event_id, t.stb_id,
                  static_cast<unsigned long long>(t.card_id), entitlement::to_string(t.status));
    }
    return 0;
  });
  auto* ticket = add_group(*ent, "ticket", "one PPV ticket");
  auto* ticket_revoke = leaf(ticket, "revoke", "Withdraws a PPV ticket or a pass (refund, fraud) by EMM; a pass's grant goes with it. --refund "
                           "gives the card back what it paid.");
  add_integer<std::uint64_t>(*ticket_revoke, "--ticket", o->ticket, "the ticket id", 1, std::numeric_limits<std::int64_t>::max())->required();
  ticket_revoke->add_flag("--refund", o->refund, "give the card back what it paid for the ticket");
  commands.on(ticket_revoke, [o] {
    auto store = open(*o);
    fail_on(store.revoke_ticket(o->ticket, o->refund));
    std::printf("ticket %llu revoked%s; EMM queued\n", static_cast<unsigned long long>(o->ticket), o->refund ? " and refunded" : "");
    return 0;
  });

  auto* serve = leaf(ent, "serve",
                     "The engine as a ZeroMQ service for handsets (docs/protocol.md). Top-ups go to a test acquirer (declines "
                     "references starting with \"decline\"). Stops on Ctrl-C / SIGTERM (exit status 0) after a JSON line of counters on stderr.");
  serve->add_option("--bind", o->bind, "the ZeroMQ endpoint")->type_name("ENDPOINT")->capture_default_str();
  add_monitor_options(*serve, o->monitor, "a status line on stderr this often while requests come: served, refused, by kind");
  commands.on(serve, [o] {
    install_stop_handlers();
    entitlement::RequestCounters counters(entitlement::engine_message_kind);
    const auto metrics = start_metrics(o->monitor, [&counters] { return service_metrics("entitlement", counters.snapshot()); });
    auto store = open(*o);
    entitlement::TestAcquirer acquirer;
    entitlement::EngineService engine(store, acquirer);
    net::ReplyServer server(o->bind, net::ReplyServer::BatchHandler([&](const auto& requests) {
                              auto replies = engine.handle_batch(requests);
                              counters.count_batch(requests, replies);
                              return replies;
                            }),
                            entitlement::kEngineServerLimits);
    Logger("entitlement").info("serving on ", server.endpoint(), " (test acquirer for top-ups)");
    serve_until_stopped("entitlement", server, counters, o->monitor);
    return 0;
  });
}

}  // namespace usher::cli
