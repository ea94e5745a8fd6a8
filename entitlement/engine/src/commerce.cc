// The engine's commerce: PPV events, handsets and prepaid cards, the double-entry ledger, ticket
// purchase, and once-only request handling.
#include <chrono>
#include <string>

#include "usher/core/bytes.h"
#include "usher/entitlement/request_code.h"
#include "usher/entitlement/store.h"
#include "usher/core/clock.h"
#include "columns.h"

namespace usher::entitlement {

const char* to_string(TicketStatus status) { return stored_name(kTicketStatuses, status); }
const char* to_string(LedgerEntryKind kind) { return stored_name(kLedgerEntryKinds, kind); }
namespace {

constexpr const char* kRevenueAccount = "revenue:ppv";
constexpr const char* kAcquirerAccount = "funding:test-acquirer";
constexpr const char* kSettlementAccount = "revenue:settlements";

std::string card_account(std::uint64_t card_id) { return "card:" + std::to_string(card_id); }

std::int64_t now_unix() { return static_cast<std::int64_t>(unix_now()); }

crypto::PublicKey blob32(const std::vector<std::uint8_t>& b) {
  crypto::PublicKey k{};
  if (b.size() == 32) std::copy(b.begin(), b.end(), k.begin());
  return k;
}

}  // namespace

Result<std::string> TestAcquirer::charge(const Money& amount, const std::string& reference) {
  if (amount.minor <= 0) return make_error(Errc::invalid_argument, "top-up amount must be positive");
  if (amount.minor > 100'000) return make_error(Errc::not_entitled, "test acquirer: over the 1000.00 limit per charge");
  if (reference.rfind("decline", 0) == 0) return make_error(Errc::not_entitled, "test acquirer: declined");
  return "test-auth-" + std::to_string(now_unix());
}

void EntitlementStore::load_signing_key() {
  auto st = db_.prepare("SELECT ed25519_public FROM signing WHERE id = 1");
  if (st.step()) {
    signing_public_ = blob32(st.column_blob(0));
    return;
  }
  auto pair = crypto::Ed25519KeyPair::generate();
  auto ins = db_.prepare("INSERT INTO signing VALUES (1, ?, ?)");
  ins.bind(1, pair.private_key.bytes()).bind(2, pair.public_key);
  ins.run();
  signing_public_ = pair.public_key;
}

Status EntitlementStore::register_headend(std::uint32_t headend_id, const crypto::PublicKey& pub) {
  if (!crypto::x25519(operator_private(), pub)) return make_error(Errc::invalid_argument, "unusable headend key");
  auto st = db_.prepare("INSERT INTO headends VALUES (?, ?, ?)");
  st.bind(1, headend_id).bind(2, pub).bind(3, now_unix());
  try {
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::already_exists, "headend " + std::to_string(headend_id) + " is already registered");
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> EntitlementStore::sealed_key_bundle(std::uint32_t headend_id, std::uint64_t now,
                                                                      std::uint64_t horizon) {
  crypto::PublicKey pub{};
  {
    auto st = db_.prepare("SELECT x25519_public FROM headends WHERE headend_id = ?");
    st.bind(1, headend_id);
    if (!st.step()) return make_error(Errc::not_entitled, "headend " + std::to_string(headend_id) + " is not registered");
    pub = blob32(st.column_blob(0));
  }
  USHER_TRY(auto key, derive_emm_key(operator_private(), pub, ca_system_id_, headend_id | 0x80000000u));
  KeyBundle b;
  b.generated = now;
  for (const auto& service : services()) {
    USHER_TRY(auto keys, service_keys(service.service_id, now));
    b.services.push_back({service.service_id, keys.current.key_version, keys.current.key.clone()});
  }
  {
    auto st = db_.prepare(
        "SELECT event_id, service_id, start, duration, min_age, event_key, title, price_minor, currency FROM events "
        "WHERE start + duration > ? AND start < ? ORDER BY start");
    st.bind(1, static_cast<std::int64_t>(now)).bind(2, static_cast<std::int64_t>(now + horizon));
    while (st.step()) {
      const auto cur = st.column_text(8);
      KeyBundle::EventEntry e{static_cast<std::uint32_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)),
                              static_cast<std::uint64_t>(st.column_int(2)), static_cast<std::uint32_t>(st.column_int(3)),
                              static_cast<std::uint8_t>(st.column_int(4)), st.column_key(5),
                              st.column_text(6), Money{st.column_int(7), Currency{cur[0], cur[1], cur[2]}}};
      b.events.push_back(std::move(e));
    }
  }
  return seal_key_bundle(b, key, headend_id);
}

Result<std::vector<std::uint8_t>> EntitlementStore::sealed_key_versions(std::uint32_t headend_id, std::uint64_t now) {
  crypto::PublicKey pub{};
  {
    auto st = db_.prepare("SELECT x25519_public FROM headends WHERE headend_id = ?");
    st.bind(1, headend_id);
    if (!st.step()) return make_error(Errc::not_entitled, "headend " + std::to_string(headend_id) + " is not registered");
    pub = blob32(st.column_blob(0));
  }
  USHER_TRY(auto key, derive_emm_key(operator_private(), pub, ca_system_id_, headend_id | 0x80000000u));
  std::vector<KeyBundle::KeyVersionEntry> versions;
  for (const auto& service : services()) {
    USHER_TRY(auto keys, service_keys(service.service_id, now));
    versions.push_back({service.service_id, std::move(keys.current)});
    if (keys.next) versions.push_back({service.service_id, std::move(*keys.next)});
  }
  return seal_key_versions(versions, key, headend_id);
}

Status EntitlementStore::batch(const std::function<void()>& work) { return db_.atomically(work, "the engine could not store the change"); }

Secret<32> EntitlementStore::signing_private() {
  if (signing_private_) return signing_private_->clone();
  auto st = db_.prepare("SELECT ed25519_private FROM signing WHERE id = 1");
  st.step();
  return st.column_key(0);
}

Result<EventInfo> EntitlementStore::add_event(const EventInfo& e) {
  if (e.event_id == 0) return make_error(Errc::invalid_argument, "event id 0 means 'no event' in ECMs");
  if (e.event_id > 0xFFFF) return make_error(Errc::invalid_argument, "event ids are 1 to 65535 (the EIT's event_id is 16 bits)");
  if (e.duration == 0) return make_error(Errc::invalid_argument, "an event needs a duration");
  if (e.price.minor < 0) return make_error(Errc::invalid_argument, "a price cannot be negative");
  if (!service_key(e.service_id)) return make_error(Errc::not_found, "no service " + std::to_string(e.service_id));
  auto overlap = db_.prepare("SELECT event_id FROM events WHERE service_id = ? AND start < ? AND start + duration > ?");
  overlap.bind(1, e.service_id).bind(2, static_cast<std::int64_t>(e.end())).bind(3, static_cast<std::int64_t>(e.start));
  if (overlap.step()) {
    return make_error(Errc::already_exists, "service " + std::to_string(e.service_id) + " already has event " +
                                                std::to_string(overlap.column_int(0)) + " at that time");
  }
  Key256 key;
  crypto::random_bytes(key.mutable_bytes());
  auto st = db_.prepare("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, e.event_id).bind(2, e.service_id).bind(3, static_cast<std::int64_t>(e.start)).bind(4, e.duration)
      .bind(5, e.title).bind(6, e.min_age).bind(7, e.price.minor).bind(8, to_string(e.price.currency)).bind(9, key.bytes());
  sql::Transaction tx(db_);
  try {
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::already_exists, "event " + std::to_string(e.event_id) + " already exists");
  }
  // STBs with a credit line learn of it at once (F4 impulse purchase): one global EMM for all, not
  // one per box (the STB uses the offer only with a credit line, as before).
  USHER_TRY(auto offer, offer_for(e.event_id));
  std::vector<EmmItem> items;
  items.emplace_back(std::move(offer));
  USHER_CHECK(queue_global_emm(std::move(items), e.end(), "offer/" + std::to_string(e.event_id), 0));
  tx.commit();
  return e;
}

namespace {
EventInfo event_from(sql::Statement& st) {
  EventInfo e;
  e.event_id = static_cast<std::uint32_t>(st.column_int(0));
  e.service_id = static_cast<std::uint16_t>(st.column_int(1));
  e.start = static_cast<std::uint64_t>(st.column_int(2));
  e.duration = static_cast<std::uint32_t>(st.column_int(3));
  e.title = st.column_text(4);
  e.min_age = static_cast<std::uint8_t>(st.column_int(5));
  e.price.minor = st.column_int(6);
  const auto c = st.column_text(7);
  if (c.size() == 3) e.price.currency = {c[0], c[1], c[2]};
  return e;
}
constexpr const char* kEventColumns = "event_id, service_id, start, duration, title, min_age, price_minor, currency";
}  // namespace

std::vector<EventInfo> EntitlementStore::events() {
  std::vector<EventInfo> out;
  auto st = db_.prepare(std::string("SELECT ") + kEventColumns + " FROM events ORDER BY start, event_id");
  while (st.step()) out.push_back(event_from(st));
  return out;
}

std::vector<EventInfo> EntitlementStore::events_ending_after(std::uint16_t service_id, std::uint64_t time, std::size_t count) {
  std::vector<EventInfo> out;
  auto st = db_.prepare(std::string("SELECT ") + kEventColumns +
                        " FROM events WHERE service_id = ? AND start + duration > ? ORDER BY start, event_id LIMIT ?");
  st.bind(1, service_id).bind(2, static_cast<std::int64_t>(time)).bind(3, static_cast<std::int64_t>(count));
  while (st.step()) out.push_back(event_from(st));
  return out;
}

Result<EventInfo> EntitlementStore::event(std::uint32_t event_id) {
  auto st = db_.prepare(std::string("SELECT ") + kEventColumns + " FROM events WHERE event_id = ?");
  st.bind(1, event_id);
  if (!st.step()) return make_error(Errc::not_found, "no event " + std::to_string(event_id));
  return event_from(st);
}

std::optional<EventKey> EntitlementStore::current_event(std::uint16_t service_id, std::uint64_t time) {
  auto st = db_.prepare(
      "SELECT event_id, event_key, min_age FROM events WHERE service_id = ? AND start <= ? AND start + duration > ?");
  st.bind(1, service_id).bind(2, static_cast<std::int64_t>(time)).bind(3, static_cast<std::int64_t>(time));
  if (!st.step()) return std::nullopt;
  return EventKey{static_cast<std::uint32_t>(st.column_int(0)), st.column_key(1), static_cast<std::uint8_t>(st.column_int(2))};
}

Result<CardInfo> EntitlementStore::register_handset(const std::string& account, const crypto::PublicKey& handset_public,
                                                    const Currency& currency) {
  if (account.empty() || account.size() > 64) return make_error(Errc::invalid_argument, "account name must be 1 to 64 characters");
  auto exists = db_.prepare("SELECT card_id FROM cards WHERE handset_public = ?");
  exists.bind(1, handset_public);
  if (exists.step()) {
    return make_error(Errc::already_exists, "this handset already holds card " + std::to_string(exists.column_int(0)));
  }
  const auto issued = now_unix();
  auto st = db_.prepare("INSERT INTO cards (account, handset_public, currency, issued) VALUES (?, ?, ?, ?) RETURNING card_id");
  st.bind(1, account).bind(2, handset_public).bind(3, to_string(currency)).bind(4, issued);
  st.step();
  CardInfo info{static_cast<std::uint64_t>(st.column_int(0)), account, handset_public, currency, {}};
  st.run();
  info.certificate = {info.card_id, handset_public, currency, static_cast<std::uint64_t>(issued), 1, ca_system_id_, {}};
  info.certificate.sign(signing_private());
  return info;
}

Result<CardInfo> EntitlementStore::card(std::uint64_t card_id) {
  auto st = db_.prepare("SELECT account, handset_public, currency FROM cards WHERE card_id = ?");
  st.bind(1, static_cast<std::int64_t>(card_id));
  if (!st.step()) return make_error(Errc::not_found, "no prepaid card " + std::to_string(card_id));
  const auto c = st.column_text(2);
  return CardInfo{card_id, st.column_text(0), blob32(st.column_blob(1)), Currency{c[0], c[1], c[2]}, {}};
}

Result<Money> EntitlementStore::balance(std::uint64_t card_id) {
  USHER_TRY(auto c, card(card_id));
  // The running balance, kept with each posting in the same transaction (balances_match_ledger()
  // checks it against the postings).
  auto st = db_.prepare("SELECT balance FROM cards WHERE card_id = ?");
  st.bind(1, static_cast<std::int64_t>(card_id));
  st.step();
  return Money{st.column_int(0), c.currency};
}

namespace {
// One balanced journal entry: `amount` moves from `from` to `to`.
void post(sql::Database& db, LedgerEntryKind kind, const std::string& reference, const std::string& from,
          const std::string& to, const Money& amount) {
  auto j = db.prepare("INSERT INTO journal (kind, reference, created) VALUES (?, ?, ?) RETURNING tx_id");
  j.bind(1, std::string(to_string(kind))).bind(2, reference).bind(3, now_unix());
  j.step();
  const auto tx = j.column_int(0);
  j.run();
  auto p = db.prepare("INSERT INTO postings VALUES (?, ?, ?, ?)");
  p.bind(1, tx).bind(2, from).bind(3, -amount.minor).bind(4, to_string(amount.currency));
  p.run();
  p.reset();
  p.bind(1, tx).bind(2, to).bind(3, amount.minor).bind(4, to_string(amount.currency));
  p.run();
  auto card_delta = [&](const std::string& account, std::int64_t delta) {
    if (account.rfind("card:", 0) != 0) return;
    auto u = db.prepare("UPDATE cards SET balance = balance + ? WHERE card_id = ?");
    u.bind(1, delta).bind(2, std::stoll(account.substr(5)));
    u.run();
  };
  card_delta(from, -amount.minor);
  card_delta(to, amount.minor);
}
}  // namespace

Result<Money> EntitlementStore::top_up(std::uint64_t card_id, std::int64_t amount_minor, const std::string& reference,
                                       FundingSource& funding) {
  USHER_TRY(auto c, card(card_id));
  const Money amount{amount_minor, c.currency};
  USHER_TRY(auto auth, funding.charge(amount, reference));
  sql::Transaction tx(db_);
  post(db_, LedgerEntryKind::top_up, auth, kAcquirerAccount, card_account(card_id), amount);
  tx.commit();
  return balance(card_id);
}

Status EntitlementStore::check_spend(const SpendAuthorization& spend, const Money& price, const std::string& payee,
                                     std::uint32_t stb_id) {
  USHER_TRY(auto c, card(spend.card_id));
  if (!spend.verify(c.handset_public)) {
    return make_error(Errc::auth_failed, "spend authorization is not signed by the handset holding card " +
                                             std::to_string(spend.card_id));
  }
  if (spend.amount.currency != price.currency || spend.amount.minor != price.minor) {
    return make_error(Errc::invalid_argument,
                      "the price is " + format_money(price) + ", the authorization is for " + format_money(spend.amount));
  }
  if (spend.payee != payee) {
    return make_error(Errc::invalid_argument, "authorization is for '" + spend.payee + "', not for this purchase");
  }
  if (stb_id == 0) return ok_status();  // not for an STB (a settlement)
  // Scoped: a statement left open would hold a read snapshot into the caller's write transaction,
  // and SQLite then refuses the upgrade instead of waiting for the lock.
  auto stb = db_.prepare("SELECT 1 FROM stbs WHERE stb_id = ?");
  stb.bind(1, stb_id);
  if (!stb.step()) return make_error(Errc::not_found, "no STB " + std::to_string(stb_id));
  stb.reset();
  return check_not_cut_off(stb_id);
}

Status EntitlementStore::claim_spend(const SpendAuthorization& spend) {
  // Called inside the purchase's IMMEDIATE transaction: purchases are serialised, so the balance
  // check and the debit cannot interleave with another purchase from the same card.
  {
    auto nonce = db_.prepare("INSERT INTO spend_nonces VALUES (?, ?) ON CONFLICT DO NOTHING");
    nonce.bind(1, static_cast<std::int64_t>(spend.card_id)).bind(2, spend.nonce);
    nonce.run();
  }
  if (db_.changes() == 0) return make_error(Errc::replayed, "spend authorization already used (nonce seen before)");
  USHER_TRY(auto bal, balance(spend.card_id));
  if (bal.minor < spend.amount.minor) {
    return make_error(Errc::not_entitled, "balance " + format_money(bal) + " is less than the price " + format_money(spend.amount));
  }
  return ok_status();
}

std::optional<EntitlementStore::Holding> EntitlementStore::holding(std::uint32_t stb_id, std::uint32_t event_id) {
  {
    auto st = db_.prepare("SELECT ticket_id FROM tickets WHERE stb_id = ? AND event_id = ? AND status = " + sql_value(TicketStatus::valid) + " ORDER BY ticket_id");
    st.bind(1, stb_id).bind(2, event_id);
    if (st.step()) return Holding{static_cast<std::uint64_t>(st.column_int(0)), 0};
  }
  auto st = db_.prepare("SELECT sequence FROM impulse_purchases WHERE stb_id = ? AND event_id = ?");
  st.bind(1, stb_id).bind(2, event_id);
  if (st.step()) return Holding{0, static_cast<std::uint64_t>(st.column_int(0))};
  return std::nullopt;
}

void EntitlementStore::record_impulse_purchases(std::uint32_t stb_id, const std::vector<HistoryRecord>& records) {
  if (records.empty()) return;
  // Most relays repeat records already seen (a quote, then its payment): write only what is new,
  // so that a relay costs the engine no disk sync.
  std::vector<const HistoryRecord*> fresh;
  {
    auto seen = db_.prepare("SELECT 1 FROM impulse_purchases WHERE stb_id = ? AND event_id = ?");
    for (const auto& r : records) {
      seen.reset();
      seen.bind(1, stb_id).bind(2, r.event_id);
      if (!seen.step()) fresh.push_back(&r);
    }
  }
  if (fresh.empty()) return;
  sql::Transaction tx(db_);
  auto ins = db_.prepare("INSERT INTO impulse_purchases VALUES (?, ?, ?) ON CONFLICT DO NOTHING");
  for (const auto* r : fresh) {
    ins.reset();
    ins.bind(1, stb_id).bind(2, r->event_id).bind(3, static_cast<std::int64_t>(r->sequence));
    ins.run();
  }
  tx.commit();
}

Status EntitlementStore::check_not_held(const Ticket& draft) {
  const auto stb = "STB " + std::to_string(draft.stb_id);
  if (draft.type == kAssetTypeServicePass) {
    // One valid pass per service and period: a pass whose window overlaps one the STB holds is
    // refused (buy the next one when the current one ends).
    auto st = db_.prepare("SELECT ticket_id, ticket FROM tickets WHERE stb_id = ? AND event_id = 0 AND status = " + sql_value(TicketStatus::valid) + " "
                          "AND ticket IS NOT NULL ORDER BY ticket_id");
    st.bind(1, draft.stb_id);
    while (st.step()) {
      auto held = Ticket::decode(st.column_blob(1));
      if (!held || held->type != kAssetTypeServicePass || held->service_id != draft.service_id) continue;
      if (held->valid_from < draft.valid_until && draft.valid_from < held->valid_until) {
        return make_error(Errc::already_exists, stb + " already holds ticket " + std::to_string(st.column_int(0)) + ", a pass for service " +
                                                    std::to_string(draft.service_id) + " until " + format_utc(held->valid_until) +
                                                    ": nothing charged");
      }
    }
    // A pass is carried as the grant of its service, one per box and service: over a subscription
    // (or any live grant) it would replace that grant's window, shortening what the box has.
    auto g = db_.prepare("SELECT not_before, not_after FROM grants WHERE stb_id = ? AND service_id = ? AND revoked = 0 AND not_after > ?");
    g.bind(1, draft.stb_id).bind(2, draft.service_id).bind(3, static_cast<std::int64_t>(draft.valid_from));
    if (g.step()) {
      return make_error(Errc::already_exists, stb + " already has service " + std::to_string(draft.service_id) + " until " +
                                                  format_utc(static_cast<std::uint64_t>(g.column_int(1))) +
                                                  " (a subscription or a pass): a pass would add nothing now; nothing charged");
    }
    return ok_status();
  }
  auto held = holding(draft.stb_id, draft.event_id);
  if (!held) return ok_status();
  const auto event = "event " + std::to_string(draft.event_id) + (draft.title.empty() ? "" : " (" + draft.title + ")");
  if (held->ticket_id != 0) {
    return make_error(Errc::already_exists,
                      stb + " already holds ticket " + std::to_string(held->ticket_id) + " for " + event + ": nothing charged");
  }
  return make_error(Errc::already_exists, stb + " already bought " + event + " on impulse (its history record " +
                                              std::to_string(held->impulse_sequence) + "): nothing charged");
}

Result<Ticket> EntitlementStore::pay_and_issue(const SpendAuthorization& spend, Ticket draft, LedgerEntryKind kind) {
  // Checked inside the purchase's IMMEDIATE transaction (purchases are serialised), and the
  // unique index on valid tickets stands behind it.
  USHER_CHECK(check_not_held(draft));
  USHER_CHECK(claim_spend(spend));
  auto ins = db_.prepare("INSERT INTO tickets (event_id, stb_id, card_id, status) VALUES (?, ?, ?, " + sql_value(TicketStatus::valid) +
                         ") RETURNING ticket_id");
  ins.bind(1, draft.event_id).bind(2, draft.stb_id).bind(3, static_cast<std::int64_t>(spend.card_id));
  ins.step();
  draft.ticket_id = static_cast<std::uint64_t>(ins.column_int(0));
  ins.run();
  draft.issuer_id = 1;
  draft.provider_id = ca_system_id_;
  draft.sign(signing_private());
  auto upd = db_.prepare("UPDATE tickets SET ticket = ? WHERE ticket_id = ?");
  upd.bind(1, draft.encode()).bind(2, static_cast<std::int64_t>(draft.ticket_id));
  upd.run();
  post(db_, kind, "ticket:" + std::to_string(draft.ticket_id), card_account(spend.card_id), kRevenueAccount, spend.amount);
  return draft;
}

Result<Purchase> EntitlementStore::buy_ticket(std::uint32_t event_id, std::uint32_t stb_id,
                                              const SpendAuthorization& spend, std::uint64_t now, std::uint64_t deliver_at) {
  USHER_TRY(auto ev, event(event_id));
  if (now >= ev.end()) return make_error(Errc::not_entitled, "event " + std::to_string(event_id) + " is over");
  if (deliver_at >= ev.end()) {
    return make_error(Errc::invalid_argument, "delivery would come after event " + std::to_string(event_id) + " has ended");
  }
  USHER_CHECK(check_spend(spend, ev.price, payee_for(event_id, stb_id), stb_id));
  sql::Transaction tx(db_);
  Ticket draft;
  draft.event_id = event_id;
  draft.service_id = ev.service_id;
  draft.stb_id = stb_id;
  draft.valid_from = ev.start;
  draft.valid_until = ev.end();
  draft.issued = now;
  draft.title = ev.title;
  USHER_TRY(auto t, pay_and_issue(spend, std::move(draft), LedgerEntryKind::ppv));
  auto key = current_event(ev.service_id, ev.start);
  if (!key) return make_error(Errc::storage, "event key missing for event " + std::to_string(event_id));
  std::vector<EmmItem> items;
  items.emplace_back(EmmTicket{t.encode(), key->key.clone()});
  USHER_TRY(auto emm, queue_emm(stb_id, std::move(items), EmmPriority::urgent, ev.end(), deliver_at));
  Purchase p{std::move(t), std::move(emm), {}};
  tx.commit();
  p.balance = *balance(spend.card_id);
  return p;
}

Status EntitlementStore::set_pass_price(std::uint16_t service_id, const Money& per_day) {
  if (per_day.minor <= 0) return make_error(Errc::invalid_argument, "a pass price must be positive");
  auto st = db_.prepare("UPDATE services SET pass_day_price = ?, pass_currency = ? WHERE service_id = ?");
  st.bind(1, per_day.minor).bind(2, to_string(per_day.currency)).bind(3, service_id);
  st.run();
  if (db_.changes() == 0) return make_error(Errc::not_found, "no service " + std::to_string(service_id));
  return ok_status();
}

Result<Money> EntitlementStore::pass_price(std::uint16_t service_id) {
  auto st = db_.prepare("SELECT pass_day_price, pass_currency FROM services WHERE service_id = ?");
  st.bind(1, service_id);
  if (!st.step()) return make_error(Errc::not_found, "no service " + std::to_string(service_id));
  if (st.column_is_null(0)) return make_error(Errc::not_found, "service " + std::to_string(service_id) + " is not sold by the day");
  const auto c = st.column_text(1);
  return Money{st.column_int(0), Currency{c[0], c[1], c[2]}};
}

Result<Purchase> EntitlementStore::buy_pass(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id,
                                            const SpendAuthorization& spend, std::uint64_t now) {
  if (days == 0 || days > 366) return make_error(Errc::invalid_argument, "a pass lasts 1 to 366 days");
  USHER_TRY(auto per_day, pass_price(service_id));
  const Money price{per_day.minor * days, per_day.currency};
  USHER_CHECK(check_spend(spend, price, pass_payee_for(service_id, days, stb_id), stb_id));
  sql::Transaction tx(db_);
  Ticket draft;
  draft.type = kAssetTypeServicePass;
  draft.service_id = service_id;
  draft.stb_id = stb_id;
  draft.valid_from = now;
  draft.valid_until = now + std::uint64_t{days} * 86400;
  draft.issued = now;
  draft.title = std::to_string(days) + "-day pass";
  USHER_TRY(auto t, pay_and_issue(spend, std::move(draft), LedgerEntryKind::pass));
  // The pass reaches the STB as a grant of the service for its window.
  USHER_CHECK(grant(stb_id, service_id, t.valid_from, t.valid_until));
  auto emm = db_.prepare("SELECT section FROM emm_queue WHERE stb_id = ? AND address_type = 0 ORDER BY sequence DESC LIMIT 1");
  emm.bind(1, stb_id);
  if (!emm.step()) return make_error(Errc::storage, "the pass's EMM is missing");
  Purchase p{std::move(t), emm.column_blob(0), {}};
  tx.commit();
  p.balance = *balance(spend.card_id);
  return p;
}

Result<Purchase> EntitlementStore::buy_by_code(const std::string& code, const SpendAuthorization& spend, std::uint64_t now) {
  USHER_TRY(auto request, read_request_code(code));
  USHER_TRY(auto key, emm_key_for(request.stb_id));
  USHER_CHECK(verify_request_code(code, request_code_key(key)));
  if (now > request.expires) return make_error(Errc::stale, "request code expired; ask the STB for a new one");
  const auto canonical = canonical_request_code(code);
  sql::Transaction tx(db_);
  {
    auto used = db_.prepare("SELECT ticket_id FROM used_codes WHERE code = ?");
    used.bind(1, canonical);
    if (used.step()) {
      return make_error(Errc::replayed, "request code already used (ticket " + std::to_string(used.column_int(0)) + ")");
    }
  }
  USHER_TRY(auto p, buy_ticket(request.event_id, request.stb_id, spend, now));
  auto mark = db_.prepare("INSERT INTO used_codes VALUES (?, ?)");
  mark.bind(1, canonical).bind(2, static_cast<std::int64_t>(p.ticket.ticket_id));
  mark.run();
  tx.commit();
  return p;
}

Result<EmmOffer> EntitlementStore::offer_for(std::uint32_t event_id) {
  USHER_TRY(auto ev, event(event_id));
  auto key = current_event(ev.service_id, ev.start);
  if (!key) return make_error(Errc::storage, "event key missing for event " + std::to_string(event_id));
  EmmOffer o;
  o.event_id = ev.event_id;
  o.service_id = ev.service_id;
  o.start = ev.start;
  o.duration = ev.duration;
  o.price_minor = ev.price.minor;
  o.currency = ev.price.currency;
  o.min_age = ev.min_age;
  o.event_key = key->key.clone();
  o.title = ev.title;
  return o;
}

Status EntitlementStore::set_credit(std::uint32_t stb_id, const Money& limit, std::uint64_t now,
                                    std::optional<std::uint64_t> collect_within) {
  if (limit.minor < 0) return make_error(Errc::invalid_argument, "a credit limit cannot be negative");
  // A deadline beyond ten years is no deadline: refuse it rather than overflow the STB's sum.
  if (collect_within && *collect_within > 10ULL * 365 * 86400) {
    return make_error(Errc::invalid_argument, "a collection deadline cannot be more than 10 years");
  }
  USHER_CHECK(check_not_cut_off(stb_id));
  sql::Transaction tx(db_);
  auto st = db_.prepare("UPDATE stbs SET credit_limit = ?, credit_currency = ? WHERE stb_id = ?");
  st.bind(1, limit.minor).bind(2, to_string(limit.currency)).bind(3, stb_id);
  st.run();
  if (db_.changes() == 0) return make_error(Errc::not_found, "no STB " + std::to_string(stb_id));
  std::vector<EmmItem> items;
  items.emplace_back(EmmCredit{limit.minor, limit.currency});
  if (collect_within) items.emplace_back(EmmCollection{*collect_within});
  std::uint64_t until = now + 30 * 86400;
  for (const auto& e : events()) {
    if (e.end() <= now || items.size() >= 12) continue;  // one EMM section holds about a dozen offers
    USHER_TRY(auto offer, offer_for(e.event_id));
    until = std::max(until, e.end());
    items.emplace_back(std::move(offer));
  }
  USHER_CHECK(queue_emm(stb_id, std::move(items), EmmPriority::urgent, until));
  tx.commit();
  return ok_status();
}

Result<crypto::PublicKey> EntitlementStore::stb_signing_public(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT ed25519_public FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return make_error(Errc::not_entitled, "history from an unknown STB " + std::to_string(stb_id));
  return blob32(st.column_blob(0));
}

BillingCertificate EntitlementStore::certify_billing(std::uint32_t billing_id, const crypto::PublicKey& billing_public,
                                                     const crypto::PublicKey& billing_x25519, std::uint64_t now) {
  BillingCertificate c;
  c.billing_id = billing_id;
  c.billing_public = billing_public;
  c.billing_x25519 = billing_x25519;
  c.issued = now;
  c.sign(signing_private());
  remember_billing(c);
  return c;
}

Result<Money> EntitlementStore::charge_settlement(const SpendAuthorization& spend, const Money& amount, const std::string& payee) {
  USHER_CHECK(check_spend(spend, amount, payee, 0));
  sql::Transaction tx(db_);
  USHER_CHECK(claim_spend(spend));
  post(db_, LedgerEntryKind::settlement, payee, card_account(spend.card_id), kSettlementAccount, amount);
  tx.commit();
  return balance(spend.card_id);
}

Result<Money> EntitlementStore::refund_settlement(std::uint64_t card_id, const Money& amount, const std::string& payee) {
  USHER_CHECK(card(card_id));
  sql::Transaction tx(db_);
  post(db_, LedgerEntryKind::settlement_refund, payee, kSettlementAccount, card_account(card_id), amount);
  tx.commit();
  return balance(card_id);
}

Status EntitlementStore::revoke_ticket(std::uint64_t ticket_id, bool refund) {
  sql::Transaction tx(db_);
  std::uint32_t stb_id = 0;
  std::uint32_t event_id = 0;
  std::uint64_t card_id = 0;
  std::optional<Ticket> pass;
  {
    auto st = db_.prepare("SELECT stb_id, event_id, card_id, status, ticket FROM tickets WHERE ticket_id = ?");
    st.bind(1, static_cast<std::int64_t>(ticket_id));
    if (!st.step()) return make_error(Errc::not_found, "no ticket " + std::to_string(ticket_id));
    if (ticket_status_of(st, 3) == TicketStatus::revoked) return make_error(Errc::already_exists, "ticket " + std::to_string(ticket_id) + " is already revoked");
    stb_id = static_cast<std::uint32_t>(st.column_int(0));
    event_id = static_cast<std::uint32_t>(st.column_int(1));
    card_id = static_cast<std::uint64_t>(st.column_int(2));
    if (auto t = Ticket::decode(st.column_blob(4)); t && t->type == kAssetTypeServicePass) pass = std::move(t.value());
  }
  auto up = db_.prepare("UPDATE tickets SET status = " + sql_value(TicketStatus::revoked) + " WHERE ticket_id = ?");
  up.bind(1, static_cast<std::int64_t>(ticket_id));
  up.run();
  if (refund) {
    // What the card paid for this ticket, from the ledger: the event's price may have changed since,
    // and a pass has no event (its price was days x the day price).
    auto paid = db_.prepare(
        "SELECT -SUM(p.amount), p.currency FROM journal j JOIN postings p ON p.tx_id = j.tx_id "
        "WHERE j.reference = ? AND p.account = ? GROUP BY p.currency");
    paid.bind(1, "ticket:" + std::to_string(ticket_id)).bind(2, card_account(card_id));
    while (paid.step()) {
      const std::int64_t minor = paid.column_int(0);
      const auto currency = paid.column_text(1);
      if (minor <= 0 || currency.size() != 3) continue;
      post(db_, LedgerEntryKind::refund, "ticket:" + std::to_string(ticket_id), kRevenueAccount, card_account(card_id),
           Money{minor, Currency{currency[0], currency[1], currency[2]}});
    }
  }
  if (pass) {
    // A pass reached the STB as a grant of its service for the pass's window: withdrawing the ticket
    // withdraws that grant (not a later one the STB holds for the service, e.g. a subscription).
    auto g = db_.prepare("SELECT 1 FROM grants WHERE stb_id = ? AND service_id = ? AND not_before = ? AND not_after = ? AND revoked = 0");
    g.bind(1, stb_id).bind(2, pass->service_id).bind(3, static_cast<std::int64_t>(pass->valid_from)).bind(4, static_cast<std::int64_t>(pass->valid_until));
    if (g.step()) {
      USHER_CHECK(revoke(stb_id, pass->service_id));
    }
  }
  std::vector<EmmItem> items;
  items.emplace_back(EmmTicketRevoke{ticket_id});
  auto ev = event(event_id);
  const std::uint64_t until = ev ? std::max<std::uint64_t>(ev->end(), static_cast<std::uint64_t>(now_unix())) + 86400 : 0;
  USHER_CHECK(queue_emm(stb_id, std::move(items), EmmPriority::urgent, until));
  tx.commit();
  return ok_status();
}

std::vector<EntitlementStore::TicketPayment> EntitlementStore::ticket_payments(std::uint32_t stb_id) {
  std::vector<TicketPayment> out;
  auto st = db_.prepare(
      "SELECT t.ticket_id, j.kind, t.ticket, t.event_id, j.created, p.amount, p.currency FROM tickets t "
      "JOIN journal j ON j.reference = 'ticket:' || t.ticket_id "
      "JOIN postings p ON p.tx_id = j.tx_id AND p.account = 'card:' || t.card_id "
      "WHERE t.stb_id = ? ORDER BY j.tx_id");
  st.bind(1, stb_id);
  while (st.step()) {
    TicketPayment pay;
    pay.ticket_id = static_cast<std::uint64_t>(st.column_int(0));
    pay.kind = ledger_entry_kind_of(st, 1);
    if (!st.column_is_null(2)) {
      if (auto t = Ticket::decode(st.column_blob(2)); t) pay.title = t->title;
    }
    pay.event_id = static_cast<std::uint32_t>(st.column_int(3));
    pay.time = static_cast<std::uint64_t>(st.column_int(4));
    const auto c = st.column_text(6);
    // The card's posting is negative for a purchase: the statement shows what the viewer paid.
    pay.amount = {-st.column_int(5), {c[0], c[1], c[2]}};
    out.push_back(pay);
  }
  return out;
}

std::vector<EntitlementStore::TicketRecord> EntitlementStore::tickets() {
  std::vector<TicketRecord> out;
  auto st = db_.prepare("SELECT ticket_id, event_id, stb_id, card_id, status FROM tickets ORDER BY ticket_id");
  while (st.step()) {
    out.push_back({static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint32_t>(st.column_int(1)),
                   static_cast<std::uint32_t>(st.column_int(2)), static_cast<std::uint64_t>(st.column_int(3)), ticket_status_of(st, 4)});
  }
  return out;
}

Result<EntitlementStore::TicketState> EntitlementStore::ticket_state(std::uint64_t ticket_id) {
  auto st = db_.prepare("SELECT status, delivered FROM tickets WHERE ticket_id = ?");
  st.bind(1, static_cast<std::int64_t>(ticket_id));
  if (!st.step()) return make_error(Errc::not_found, "no ticket " + std::to_string(ticket_id));
  return TicketState{ticket_status_of(st, 0), static_cast<std::uint64_t>(st.column_int(1))};
}

Result<std::vector<std::uint64_t>> EntitlementStore::record_delivery_acks(const std::vector<DeliveryAck>& acks) {
  std::vector<std::uint64_t> confirmed;
  sql::Transaction tx(db_);
  for (const auto& ack : acks) {
    crypto::PublicKey stb_key{};
    {
      auto k = db_.prepare("SELECT s.ed25519_public FROM tickets t JOIN stbs s ON s.stb_id = t.stb_id "
                           "WHERE t.ticket_id = ? AND t.stb_id = ?");
      k.bind(1, static_cast<std::int64_t>(ack.ticket_id)).bind(2, ack.stb_id);
      if (!k.step()) continue;
      stb_key = blob32(k.column_blob(0));
    }
    if (!ack.verify(stb_key)) continue;
    auto up = db_.prepare("UPDATE tickets SET delivered = ? WHERE ticket_id = ? AND delivered = 0");
    up.bind(1, static_cast<std::int64_t>(std::max<std::uint64_t>(ack.stored, 1))).bind(2, static_cast<std::int64_t>(ack.ticket_id));
    up.run();
    confirmed.push_back(ack.ticket_id);
  }
  tx.commit();
  return confirmed;
}

Status EntitlementStore::set_stb_account(std::uint32_t stb_id, const std::string& account) {
  auto st = db_.prepare("UPDATE stbs SET account = ? WHERE stb_id = ?");
  st.bind(1, account).bind(2, stb_id);
  st.run();
  if (db_.changes() == 0) return make_error(Errc::not_found, "no STB " + std::to_string(stb_id));
  return ok_status();
}

std::vector<std::uint32_t> EntitlementStore::account_stbs(const std::string& account) {
  std::vector<std::uint32_t> out;
  auto st = db_.prepare("SELECT stb_id FROM stbs WHERE account = ? ORDER BY stb_id");
  st.bind(1, account);
  while (st.step()) out.push_back(static_cast<std::uint32_t>(st.column_int(0)));
  return out;
}

bool EntitlementStore::balances_match_ledger() {
  auto st = db_.prepare(
      "SELECT COUNT(*) FROM cards c WHERE c.balance != "
      "(SELECT COALESCE(SUM(amount), 0) FROM postings p WHERE p.account = 'card:' || c.card_id)");
  st.step();
  return st.column_int(0) == 0;
}

std::pair<std::int64_t, std::int64_t> EntitlementStore::ledger_check() {
  auto st = db_.prepare("SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM postings");
  st.step();
  return {st.column_int(0), st.column_int(1)};
}

Result<std::vector<std::uint8_t>> EntitlementStore::once(std::span<const std::uint8_t> request_id,
                                                         const std::function<Result<std::vector<std::uint8_t>>()>& work) {
  sql::Transaction tx(db_);
  auto seen = db_.prepare("SELECT reply FROM requests WHERE request_id = ?");
  seen.bind(1, request_id);
  if (seen.step()) return seen.column_blob(0);
  auto reply = work();
  if (!reply) return reply;  // failures change nothing and are not remembered: a retry re-evaluates
  auto st = db_.prepare("INSERT INTO requests VALUES (?, ?, ?)");
  st.bind(1, request_id).bind(2, *reply).bind(3, now_unix());
  st.run();
  tx.commit();
  return reply;
}

}  // namespace usher::entitlement
