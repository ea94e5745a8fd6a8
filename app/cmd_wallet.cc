// usher wallet: a viewer's handset.
#include <cstdio>

#include "cli.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher::cli {
namespace {

constexpr const char* kUsage = R"(usher wallet: a viewer's handset

  usher wallet init --account NAME --currency EUR --operator ENT_HOME/operator.pub
                    [--engine tcp://127.0.0.1:7700] [--home DIR]
      Makes the handset's key pair and registers it with the engine, which issues a prepaid card.
  usher wallet topup --amount 20.00 [--funding test-visa] [--home DIR]
  usher wallet balance [--home DIR]
  usher wallet card [--home DIR]
      The prepaid card's certificate (issuer-signed holder binding), verified.
  usher wallet events [--home DIR]
  usher wallet buy --event E --stb S [--link ENDPOINT] [--deliver-at TIME] [--home DIR]
  usher wallet buy --service N --days D --stb S [--link ENDPOINT] [--home DIR]
      A pass: service N for D days from now (a ticket for a period).
      Pays for event E for your STB S. The ticket reaches S on the broadcast (as an EMM); with
      --link it is also handed to S at once over its local link (`usher stb link`). With
      --deliver-at (F5) the ticket is bought now and reaches S at that time.
  usher wallet gift --event E (--stb S | --to-account NAME) [--link ENDPOINT] [--deliver-at TIME] [--home DIR]
      The same for a friend's STB, by its id or the friend's account. The friend's handset
      relays the STB's signed acknowledgement (relay-acks); `tickets` then shows it delivered.
  usher wallet pair --link ENDPOINT --code CODE [--home DIR]
      Pairs this handset with the STB at ENDPOINT using the code it shows (`usher stb link` prints
      it). Once paired, relay-acks, relay and prepay can use its link.
  usher wallet relay-acks --link ENDPOINT [--home DIR]
      Collects the delivery acknowledgements of your STB and passes them to the engine.
  usher wallet approve CODE [--yes] [--link ENDPOINT] [--home DIR]
      Pays for what an STB's request code asks (`usher stb buy --pay-by-handset`): shows the
      event and price, asks to confirm (or --yes), pays; the ticket goes to that STB.
  usher wallet tickets [--home DIR]
  usher wallet relay --stb S [--link ENDPOINT] [--billing tcp://127.0.0.1:7720] [--home DIR]
      F4: collects STB S's unsettled impulse purchases (sealed: the handset cannot read them),
      relays them to billing, pays what billing asks with your prepaid card, and gives the signed
      receipt back to the STB, which frees its credit. Run it again after any failure: billing
      charges once and hands back the same receipt. The STB's local link is the one paired
      (`usher wallet pair`); --link alone relays the paired STB there.
  usher wallet prepay --stb S --amount 20.00 [--link ENDPOINT] [--billing ENDPOINT] [--home DIR]
      Prepayment: buys credit for STB S ahead of its purchases; loaded into S over its link (or at
      your next relay).
  usher wallet receipts [--home DIR]

  DIR defaults to ./usher-data/wallet.
)";

std::string home(const Args& a) { return a.get("home", "usher-data/wallet"); }

void print_ticket(const wallet::OwnedTicket& t) {
  const std::string what = t.ticket.type == entitlement::kAssetTypeServicePass
                               ? "service " + std::to_string(t.ticket.service_id) + " " + t.ticket.title
                               : "event " + std::to_string(t.ticket.event_id) + " '" + t.ticket.title + "'";
  std::printf("ticket %llu: %s for STB %u, %s to %s%s%s\n", static_cast<unsigned long long>(t.ticket.ticket_id), what.c_str(),
              t.ticket.stb_id, format_utc(t.ticket.valid_from).c_str(), format_utc(t.ticket.valid_until).c_str(),
              t.gift ? " (gift)" : "", t.delivered ? ", delivered" : "");
}

}  // namespace

int cmd_wallet(const std::vector<std::string>& argv) {
  std::string sub;
  std::optional<Args> parsed;
  if (auto code = start_command(argv, kUsage, sub, parsed, {"yes"})) return *code;
  const Args& a = *parsed;
  if (sub == "init") {
    auto op = need(entitlement::OperatorPublicFile::read(a.require("operator")));
    auto currency = need(entitlement::parse_currency(a.require("currency")));
    auto w = need(wallet::Wallet::init(home(a), a.require("account"), currency, a.get("engine", "tcp://127.0.0.1:7700"), op));
    std::printf("wallet for '%s' in %s: prepaid card %llu (%s)\n", w.account().c_str(), home(a).c_str(),
                static_cast<unsigned long long>(w.card_id()), a.get("currency").c_str());
    return 0;
  }
  auto w = need(wallet::Wallet::open(home(a)));
  if (sub == "topup") {
    const auto amount = need(entitlement::parse_amount(a.require("amount")));
    auto balance = need(w.top_up(amount, a.get("funding", "test-visa")));
    std::printf("card %llu topped up; balance %s\n", static_cast<unsigned long long>(w.card_id()),
                entitlement::format_money(balance).c_str());
    return 0;
  }
  if (sub == "card") {
    auto cert = need(w.card_certificate());
    std::printf("prepaid card %llu (%s) issued %s by issuer %u of provider 0x%04x to this handset; certificate verified\n",
                static_cast<unsigned long long>(cert.card_id), entitlement::to_string(cert.currency).c_str(),
                format_utc(cert.issued).c_str(), cert.issuer_id, cert.provider_id);
    return 0;
  }
  if (sub == "balance") {
    std::printf("card %llu: %s\n", static_cast<unsigned long long>(w.card_id()), entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }
  if (sub == "events") {
    for (const auto& e : need(w.events())) {
      std::printf("%6u  service %-5u %s  %6u s  %-12s %s\n", e.event_id, e.service_id, format_utc(e.start).c_str(),
                  e.duration, entitlement::format_money(e.price).c_str(), e.title.c_str());
    }
    return 0;
  }
  if (sub == "buy" || sub == "gift") {
    std::uint32_t stb = 0;
    if (a.has("to-account")) {
      const auto stbs = need(w.account_stbs(a.get("to-account")));
      if (stbs.empty()) throw std::runtime_error("account '" + a.get("to-account") + "' has no STB");
      if (stbs.size() > 1) {
        std::string list;
        for (auto id : stbs) list += (list.empty() ? "" : ", ") + std::to_string(id);
        throw UsageError("account '" + a.get("to-account") + "' has STBs " + list + ": choose one with --stb");
      }
      stb = stbs[0];
    } else {
      stb = static_cast<std::uint32_t>(a.require_number("stb"));
    }
    const std::uint64_t deliver_at = a.has("deliver-at") ? parse_time(a.get("deliver-at")) : 0;
    wallet::OwnedTicket t;
    if (a.has("service")) {
      const auto days = a.require_number("days");
      if (days <= 0 || days > 366) throw UsageError("--days must be from 1 to 366");
      t = need(w.buy_pass(static_cast<std::uint16_t>(a.require_number("service")), static_cast<std::uint16_t>(days), stb,
                          sub == "gift"));
    } else {
      t = need(w.buy(static_cast<std::uint32_t>(a.require_number("event")), stb, sub == "gift", deliver_at));
    }
    print_ticket(t);
    std::printf("balance %s\n", entitlement::format_money(need(w.balance())).c_str());
    if (deliver_at > unix_now()) std::printf("scheduled: delivered to STB %u at %s\n", stb, format_utc(deliver_at).c_str());
    if (a.has("link")) {
      if (auto s = w.deliver(t.ticket.ticket_id, a.get("link"), unix_now()); !s) {
        std::printf("not delivered over the local link (%s); the STB will receive it on the broadcast\n",
                    s.error().message.c_str());
      } else {
        std::printf("delivered to STB %u over the local link: the STB has stored it\n", stb);
      }
    }
    return 0;
  }
  if (sub == "approve") {
    if (a.positional().empty()) throw UsageError("which code? usher wallet approve CODE");
    const auto code = a.positional()[0];
    auto [request, ev] = need(w.describe_code(code));
    std::printf("STB %u asks for event %u '%s' (%s, %u s): %s\n", request.stb_id, ev.event_id, ev.title.c_str(),
                format_utc(ev.start).c_str(), ev.duration, entitlement::format_money(ev.price).c_str());
    if (!a.has("yes")) {
      std::printf("Pay %s from card %llu? [y/N] ", entitlement::format_money(ev.price).c_str(),
                  static_cast<unsigned long long>(w.card_id()));
      std::fflush(stdout);
      char answer[8] = {};
      if (std::fgets(answer, sizeof(answer), stdin) == nullptr || (answer[0] != 'y' && answer[0] != 'Y')) {
        std::printf("not paid\n");
        return 1;
      }
    }
    auto t = need(w.approve(code));
    print_ticket(t);
    std::printf("balance %s\n", entitlement::format_money(need(w.balance())).c_str());
    if (a.has("link")) {
      if (auto s = w.deliver(t.ticket.ticket_id, a.get("link"), unix_now()); !s) {
        std::printf("not delivered over the local link (%s); the STB will receive it on the broadcast\n",
                    s.error().message.c_str());
      } else {
        std::printf("delivered to STB %u over the local link: the STB has stored it\n", t.ticket.stb_id);
      }
    }
    return 0;
  }
  if (sub == "relay") {
    std::uint32_t stb = 0;
    std::string link = a.get("link");
    if (a.has("stb")) {
      stb = static_cast<std::uint32_t>(a.require_number("stb"));
      if (link.empty()) link = need(w.link_of(stb));
    } else if (link.empty()) {
      throw UsageError("say which STB: --stb S (its link remembered) or --link ENDPOINT");
    }
    const auto out = need(w.relay_history(link, a.get("billing", "tcp://127.0.0.1:7720"), stb));
    if (stb != 0) need(w.remember_link(stb, link));
    for (const auto& rc : out.receipts) {
      std::printf("receipt %llu (%s): records %llu-%llu of STB %u, %s\n", static_cast<unsigned long long>(rc.receipt_id),
                  entitlement::to_string(rc.kind), static_cast<unsigned long long>(rc.first_sequence),
                  static_cast<unsigned long long>(rc.last_sequence), rc.stb_id, entitlement::format_money(rc.amount).c_str());
    }
    std::printf("STB %u: %llu purchase%s settled, paid %s now; card balance %s\n", out.stb_id,
                static_cast<unsigned long long>(out.records_settled), out.records_settled == 1 ? "" : "s",
                entitlement::format_money(out.paid).c_str(), entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }
  if (sub == "prepay") {
    const auto stb = static_cast<std::uint32_t>(a.require_number("stb"));
    const auto amount = need(entitlement::parse_amount(a.require("amount")));
    std::string link = a.get("link");
    if (link.empty()) {
      if (auto known = w.link_of(stb)) link = *known;
    } else {
      need(w.remember_link(stb, link));
    }
    const auto out = need(w.prepay(stb, amount, a.get("billing", "tcp://127.0.0.1:7720"), link));
    std::printf("prepaid %s for STB %u (receipt %llu)%s; card balance %s\n", entitlement::format_money(out.receipt.amount).c_str(), stb,
                static_cast<unsigned long long>(out.receipt.receipt_id), out.delivered ? ", loaded into the STB" : ", to load at the next relay",
                entitlement::format_money(need(w.balance())).c_str());
    return 0;
  }
  if (sub == "receipts") {
    for (const auto& r : w.receipts()) {
      const auto& rc = r.receipt;
      std::printf("receipt %llu: %s, STB %u, records %llu-%llu, %s, %s%s\n", static_cast<unsigned long long>(rc.receipt_id),
                  entitlement::to_string(rc.kind), rc.stb_id, static_cast<unsigned long long>(rc.first_sequence),
                  static_cast<unsigned long long>(rc.last_sequence), entitlement::format_money(rc.amount).c_str(),
                  format_utc(rc.issued).c_str(), r.delivered ? ", given to the STB" : ", not yet given to the STB");
    }
    return 0;
  }
  if (sub == "pair") {
    const auto stb = need(w.pair(a.require("link"), a.require("code")));
    std::printf("paired with STB %u at %s\n", stb, a.get("link").c_str());
    return 0;
  }
  if (sub == "relay-acks") {
    const auto n = need(w.relay_acks(a.require("link")));
    std::printf("relayed %zu delivery acknowledgement%s to the engine\n", n, n == 1 ? "" : "s");
    return 0;
  }
  if (sub == "tickets") {
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
  }
  throw UsageError("unknown subcommand '" + sub + "' (see --help)");
}

}  // namespace usher::cli
