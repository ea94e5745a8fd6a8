// usher wallet: a viewer's handset.
#include <cstdio>

#include "cli.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher::cli {
namespace {

struct WalletOptions {
  std::string home;
  std::string account;
  std::string currency;
  std::string operator_file;
  std::string engine = "tcp://127.0.0.1:7700";
  std::int64_t amount = 0;
  std::string funding = "test-visa";
  std::uint32_t event = 0;
  std::uint16_t service = 0;
  std::uint16_t days = 0;
  std::uint32_t stb = 0;
  std::string to_account;
  std::string link;
  std::uint64_t deliver_at = 0;
  std::string code;
  bool yes = false;
  std::string billing = "tcp://127.0.0.1:7720";
};

void print_ticket(const wallet::OwnedTicket& t) {
  const std::string what = t.ticket.type == entitlement::kAssetTypeServicePass
                               ? "service " + std::to_string(t.ticket.service_id) + " " + t.ticket.title
                               : "event " + std::to_string(t.ticket.event_id) + " '" + t.ticket.title + "'";
  std::printf("ticket %llu: %s for STB %u, %s to %s%s%s\n", static_cast<unsigned long long>(t.ticket.ticket_id), what.c_str(),
              t.ticket.stb_id, format_utc(t.ticket.valid_from).c_str(), format_utc(t.ticket.valid_until).c_str(),
              t.gift ? " (gift)" : "", t.delivered ? ", delivered" : "");
}

void deliver_over_link(wallet::Wallet& w, const wallet::OwnedTicket& t, const std::string& link) {
  if (link.empty()) return;
  if (auto s = w.deliver(t.ticket.ticket_id, link, unix_now()); !s) {
    std::printf("not delivered over the local link (%s); the STB will receive it on the broadcast\n", s.error().message.c_str());
  } else {
    std::printf("delivered to STB %u over the local link: the STB has stored it\n", t.ticket.stb_id);
  }
}

}  // namespace

void add_wallet(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<WalletOptions>();
  auto* wallet_group = add_group(root, "wallet", "a viewer's handset: prepaid card, buy pay-per-view for an STB or as a gift, relay history");
  wallet_group->footer("DIR defaults to ./usher-data/wallet.");
  auto leaf = [&](const std::string& name, const std::string& description) {
    auto* app = wallet_group->add_subcommand(name, description);
    add_home(*app, o->home, "usher-data/wallet");
    return app;
  };
  auto stb_option = [&](CLI::App* app, const std::string& help) {
    return add_integer<std::uint32_t>(*app, "--stb", o->stb, help, 1, 0xFFFFFFFF);
  };
  auto link_option = [&](CLI::App* app, const std::string& help) {
    return app->add_option("--link", o->link, help)->type_name("ENDPOINT");
  };
  auto billing_option = [&](CLI::App* app) {
    return app->add_option("--billing", o->billing, "billing's endpoint")->type_name("ENDPOINT")->capture_default_str();
  };
  // Every command but init works on the wallet made before.
  auto with_wallet = [](const std::shared_ptr<WalletOptions>& opts, std::function<int(wallet::Wallet&)> body) {
    return [opts, body = std::move(body)] {
      auto w = need(wallet::Wallet::open(opts->home));
      return body(w);
    };
  };

  auto* init = leaf("init", "Makes the handset's key pair and registers it with the engine, which issues a prepaid card.");
  init->add_option("--account", o->account, "the viewer's account")->type_name("NAME")->required();
  init->add_option("--currency", o->currency, "the card's currency, as EUR")->type_name("CODE")->required();
  init->add_option("--operator", o->operator_file, "ENT_HOME/operator.pub")->type_name("FILE")->required();
  init->add_option("--engine", o->engine, "the engine's endpoint")->type_name("ENDPOINT")->capture_default_str();
  commands.on(init, [o] {
    auto op = need(entitlement::OperatorPublicFile::read(o->operator_file));
    auto currency = need(entitlement::parse_currency(o->currency));
    auto w = need(wallet::Wallet::init(o->home, o->account, currency, o->engine, op));
    std::printf("wallet for '%s' in %s: prepaid card %llu (%s)\n", w.account().c_str(), o->home.c_str(),
                static_cast<unsigned long long>(w.card_id()), o->currency.c_str());
    return 0;
  });

  auto* topup = leaf("topup", "Tops up the prepaid card.");
  add_amount(*topup, "--amount", o->amount, "how much, as 20.00")->required();
  topup->add_option("--funding", o->funding, "the funding source's reference")->capture_default_str();
  commands.on(topup, with_wallet(o, [o](wallet::Wallet& w) {
    auto balance = need(w.top_up(o->amount, o->funding));
    std::printf("card %llu topped up; balance %s\n", static_cast<unsigned long long>(w.card_id()), entitlement::format_money(balance).c_str());
    return 0;
  }));

  auto* card = leaf("card", "The prepaid card's certificate (issuer-signed holder binding), verified.");
  commands.on(card, with_wallet(o, [](wallet::Wallet& w) {
    auto cert = need(w.card_certificate());
    std::printf("prepaid card %llu (%s) issued %s by issuer %u of provider 0x%04x to this handset; certificate verified\n",
                static_cast<unsigned long long>(cert.card_id), entitlement::to_string(cert.currency).c_str(), format_utc(cert.issued).c_str(),
                cert.issuer_id, cert.provider_id);
    return 0;
  }));

  auto* balance = leaf("balance", "The prepaid card's balance.");
  commands.on(balance, with_wallet(o, [](wallet::Wallet& w) {
    std::printf("card %llu: %s\n", static_cast<unsigned long long>(w.card_id()), entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }));

  auto* events = leaf("events", "The PPV events on sale.");
  commands.on(events, with_wallet(o, [](wallet::Wallet& w) {
    for (const auto& e : need(w.events())) {
      std::printf("%6u  service %-5u %s  %6u s  %-12s %s\n", e.event_id, e.service_id, format_utc(e.start).c_str(), e.duration,
                  entitlement::format_money(e.price).c_str(), e.title.c_str());
    }
    return 0;
  }));

  for (const bool gift : {false, true}) {
    auto* cmd = leaf(gift ? "gift" : "buy",
                     gift ? "The same as buy for a friend's STB, by its id or the friend's account. The friend's handset relays "
                            "the STB's signed acknowledgement (relay-acks); `tickets` then shows it delivered."
                          : "Pays for event E for your STB S (or a pass: service N for D days from now). The ticket reaches S on "
                            "the broadcast (as an EMM); with --link it is also handed to S at once over its local link (`usher "
                            "stb link`). With --deliver-at (F5) the ticket is bought now and reaches S at that time.");
    auto* event = add_integer<std::uint32_t>(*cmd, "--event", o->event, "the event", 1, 0xFFFF);
    auto* service = add_integer<std::uint16_t>(*cmd, "--service", o->service, "a pass for this service", 1, 0xFFFF);
    auto* days = add_integer<std::uint16_t>(*cmd, "--days", o->days, "the pass's length in days", 1, 366);
    service->needs(days);
    days->needs(service);
    event->excludes(service);
    auto* stb = stb_option(cmd, "the STB");
    CLI::Option* to_account = nullptr;
    if (gift) {
      to_account = cmd->add_option("--to-account", o->to_account, "the friend's account (instead of --stb)")->type_name("NAME");
      to_account->excludes(stb);
    }
    link_option(cmd, "the STB's local link: deliver at once");
    auto* deliver_at = add_time(*cmd, "--deliver-at", o->deliver_at, "F5: the ticket reaches the STB at this time");
    deliver_at->excludes(service);
    commands.on(cmd, with_wallet(o, [o, gift, event, service, stb, to_account](wallet::Wallet& w) {
      if (event->count() + service->count() != 1) throw UsageError("what to buy: --event E, or --service N --days D");
      std::uint32_t stb_id = o->stb;
      if (to_account != nullptr && to_account->count() > 0) {
        const auto stbs = need(w.account_stbs(o->to_account));
        if (stbs.empty()) throw std::runtime_error("account '" + o->to_account + "' has no STB");
        if (stbs.size() > 1) {
          std::string list;
          for (auto id : stbs) list += (list.empty() ? "" : ", ") + std::to_string(id);
          throw UsageError("account '" + o->to_account + "' has STBs " + list + ": choose one with --stb");
        }
        stb_id = stbs[0];
      } else if (stb->count() == 0) {
        throw UsageError(gift ? "for which STB? --stb S or --to-account NAME" : "for which STB? --stb S");
      }
      wallet::OwnedTicket t = service->count() > 0 ? need(w.buy_pass(o->service, o->days, stb_id, gift))
                                                   : need(w.buy(o->event, stb_id, gift, o->deliver_at));
      print_ticket(t);
      std::printf("balance %s\n", entitlement::format_money(need(w.balance())).c_str());
      if (o->deliver_at > unix_now()) std::printf("scheduled: delivered to STB %u at %s\n", stb_id, format_utc(o->deliver_at).c_str());
      deliver_over_link(w, t, o->link);
      return 0;
    }));
  }

  auto* pair = leaf("pair",
                    "Pairs this handset with the STB at ENDPOINT using the code it shows (`usher stb link` prints it). Once "
                    "paired, relay-acks, relay and prepay can use its link.");
  link_option(pair, "the STB's local link")->required();
  pair->add_option("--code", o->code, "the pairing code the STB shows")->type_name("CODE")->required();
  commands.on(pair, with_wallet(o, [o](wallet::Wallet& w) {
    const auto stb = need(w.pair(o->link, o->code));
    std::printf("paired with STB %u at %s\n", stb, o->link.c_str());
    return 0;
  }));

  auto* relay_acks = leaf("relay-acks", "Collects the delivery acknowledgements of your STB and passes them to the engine.");
  link_option(relay_acks, "the STB's local link")->required();
  commands.on(relay_acks, with_wallet(o, [o](wallet::Wallet& w) {
    const auto n = need(w.relay_acks(o->link));
    std::printf("relayed %zu delivery acknowledgement%s to the engine\n", n, n == 1 ? "" : "s");
    return 0;
  }));

  auto* approve = leaf("approve",
                       "Pays for what an STB's request code asks (`usher stb buy --pay-by-handset`): shows the event and price, "
                       "asks to confirm (or --yes), pays; the ticket goes to that STB.");
  approve->add_option("CODE", o->code, "the code the STB shows")->required();
  approve->add_flag("--yes", o->yes, "pay without asking");
  link_option(approve, "the STB's local link: deliver at once");
  commands.on(approve, with_wallet(o, [o](wallet::Wallet& w) {
    auto [request, ev] = need(w.describe_code(o->code));
    std::printf("STB %u asks for event %u '%s' (%s, %u s): %s\n", request.stb_id, ev.event_id, ev.title.c_str(),
                format_utc(ev.start).c_str(), ev.duration, entitlement::format_money(ev.price).c_str());
    if (!o->yes) {
      std::printf("Pay %s from card %llu? [y/N] ", entitlement::format_money(ev.price).c_str(), static_cast<unsigned long long>(w.card_id()));
      std::fflush(stdout);
      char answer[8] = {};
      if (std::fgets(answer, sizeof(answer), stdin) == nullptr || (answer[0] != 'y' && answer[0] != 'Y')) {
        std::printf("not paid\n");
        return 1;
      }
    }
    auto t = need(w.approve(o->code));
    print_ticket(t);
    std::printf("balance %s\n", entitlement::format_money(need(w.balance())).c_str());
    deliver_over_link(w, t, o->link);
    return 0;
  }));

  auto* tickets = leaf("tickets", "The tickets this handset bought, and which STBs confirmed delivery.");
  commands.on(tickets, with_wallet(o, [](wallet::Wallet& w) {
    auto confirmed = w.confirmed_deliveries();  // best effort: the list is local, confirmations come from the engine
    for (const auto& t : w.tickets()) {
      print_ticket(t);
      if (!confirmed) continue;
      for (const auto& [id, when] : *confirmed) {
        if (id == t.ticket.ticket_id) std::printf("  delivery confirmed by STB %u at %s\n", t.ticket.stb_id, format_utc(when).c_str());
      }
    }
    if (!confirmed) std::printf("(engine unreachable: delivery confirmations not shown: %s)\n", confirmed.error().message.c_str());
    return 0;
  }));

  auto* relay = leaf("relay",
                     "F4: collects STB S's unsettled impulse purchases (sealed: the handset cannot read them), relays them to "
                     "billing, pays what billing asks with your prepaid card, and gives the signed receipt back to the STB, which "
                     "frees its credit. Run it again after any failure: billing charges once and hands back the same receipt. The "
                     "STB's local link is the one paired (`usher wallet pair`); --link alone relays the paired STB there.");
  auto* relay_stb = stb_option(relay, "the STB");
  auto* relay_link = link_option(relay, "the STB's local link (`usher stb link`)");
  billing_option(relay);
  commands.on(relay, with_wallet(o, [o, relay_stb, relay_link](wallet::Wallet& w) {
    std::uint32_t stb_id = 0;
    std::string link = o->link;
    if (relay_stb->count() > 0) {
      stb_id = o->stb;
      if (relay_link->count() == 0) link = need(w.link_of(stb_id));
    } else if (relay_link->count() == 0) {
      throw UsageError("say which STB: --stb S (its link remembered) or --link ENDPOINT");
    }
    const auto out = need(w.relay_history(link, o->billing, stb_id));
    if (stb_id != 0) need(w.remember_link(stb_id, link));
    for (const auto& rc : out.receipts) {
      std::printf("receipt %llu (%s): records %llu-%llu of STB %u, %s\n", static_cast<unsigned long long>(rc.receipt_id),
                  entitlement::to_string(rc.kind), static_cast<unsigned long long>(rc.first_sequence),
                  static_cast<unsigned long long>(rc.last_sequence), rc.stb_id, entitlement::format_money(rc.amount).c_str());
    }
    std::printf("STB %u: %llu purchase%s settled, paid %s now; card balance %s\n", out.stb_id,
                static_cast<unsigned long long>(out.records_settled), out.records_settled == 1 ? "" : "s",
                entitlement::format_money(out.paid).c_str(), entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }));

  auto* prepay = leaf("prepay",
                      "Prepayment: buys credit for STB S ahead of its purchases; loaded into S over its link (or at your next relay).");
  stb_option(prepay, "the STB")->required();
  add_amount(*prepay, "--amount", o->amount, "how much, as 20.00")->required();
  auto* prepay_link = link_option(prepay, "the STB's local link");
  billing_option(prepay);
  commands.on(prepay, with_wallet(o, [o, prepay_link](wallet::Wallet& w) {
    std::string link = o->link;
    if (prepay_link->count() == 0) {
      if (auto known = w.link_of(o->stb)) link = *known;
    } else {
      need(w.remember_link(o->stb, link));
    }
    const auto out = need(w.prepay(o->stb, o->amount, o->billing, link));
    std::printf("prepaid %s for STB %u (receipt %llu)%s; card balance %s\n", entitlement::format_money(out.receipt.amount).c_str(), o->stb,
                static_cast<unsigned long long>(out.receipt.receipt_id), out.delivered ? ", loaded into the STB" : ", to load at the next relay",
                entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }));

  auto* receipts = leaf("receipts", "Billing's receipts, and whether each was given to its STB.");
  commands.on(receipts, with_wallet(o, [](wallet::Wallet& w) {
    for (const auto& r : w.receipts()) {
      const auto& rc = r.receipt;
      std::printf("receipt %llu: %s, STB %u, records %llu-%llu, %s, %s%s\n", static_cast<unsigned long long>(rc.receipt_id),
                  entitlement::to_string(rc.kind), rc.stb_id, static_cast<unsigned long long>(rc.first_sequence),
                  static_cast<unsigned long long>(rc.last_sequence), entitlement::format_money(rc.amount).c_str(),
                  format_utc(rc.issued).c_str(), r.delivered ? ", given to the STB" : ", not yet given to the STB");
    }
    return 0;
  }));
}

}  // namespace usher::cli
