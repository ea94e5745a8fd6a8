#include "usher/stb/secure_element.h"

#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <filesystem>

#include "usher/core/crypto.h"
#include "usher/core/clock.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/request_code.h"

namespace usher::stb {
namespace fs = std::filesystem;

namespace {
crypto::PublicKey blob_public(const std::vector<std::uint8_t>& b) {
  crypto::PublicKey k{};
  if (b.size() == 32) std::copy(b.begin(), b.end(), k.begin());
  return k;
}
}  // namespace

SecureElement::SecureElement(sql::Database db, std::uint32_t stb_id, std::uint16_t ca_system_id, Key256 emm_key,
                             entitlement::StbPublicFile pub)
    : db_(std::move(db)), stb_id_(stb_id), ca_system_id_(ca_system_id), emm_key_(std::move(emm_key)), public_(pub) {}

void SecureElement::create_schema(sql::Database& db) {
  db.exec(R"(
    CREATE TABLE IF NOT EXISTS identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      stb_id INTEGER NOT NULL,
      ca_system_id INTEGER NOT NULL,
      operator_x25519 BLOB NOT NULL,
      operator_ed25519 BLOB NOT NULL,
      x25519_private BLOB NOT NULL,
      x25519_public BLOB NOT NULL,
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS entitlements (
      service_id INTEGER PRIMARY KEY,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      revoked INTEGER NOT NULL,
      sequence INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS tickets (
      ticket_id INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL,
      ticket BLOB NOT NULL,
      event_key BLOB NOT NULL,
      status TEXT NOT NULL,
      received INTEGER NOT NULL,
      ack_relayed INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS credit (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      sequence INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS offers (
      event_id INTEGER PRIMARY KEY,
      service_id INTEGER NOT NULL,
      start INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      price_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      min_age INTEGER NOT NULL,
      event_key BLOB NOT NULL,
      title TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS history (
      sequence INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL UNIQUE,
      price_minor INTEGER NOT NULL,
      payment INTEGER NOT NULL,
      record BLOB NOT NULL,
      hash BLOB NOT NULL,
      settled INTEGER NOT NULL DEFAULT 0,
      receipt_id INTEGER);
    -- The end of the hash chain, kept when a hotel room's history is cleared so that the sequence
    -- goes on (billing would take a restart from 1 for a replay).
    CREATE TABLE IF NOT EXISTS chain (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      last_sequence INTEGER NOT NULL,
      last_hash BLOB NOT NULL,
      last_settled INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS receipts (
      receipt_id INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      applied INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS prepaid (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),
      currency TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS room (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      counter INTEGER NOT NULL,
      stay_id INTEGER NOT NULL,
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      billing_endpoint TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS parental (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      max_age INTEGER NOT NULL,
      pin_salt BLOB NOT NULL,
      pin_hash BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS revoked_tickets (
      ticket_id INTEGER PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS emm_applied (
      sequence INTEGER PRIMARY KEY,
      applied INTEGER NOT NULL);
  )");
}

Result<SecureElement> SecureElement::init(const std::string& home, std::uint32_t stb_id,
                                          const entitlement::OperatorPublicFile& op) {
  std::error_code ec;
  fs::create_directories(home, ec);
  if (ec) return make_error(Errc::storage, "cannot create " + home + ": " + ec.message());
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (fs::exists(path)) return make_error(Errc::already_exists, "an STB is already initialised in " + home);
  const auto old_mask = ::umask(077);
  auto db = sql::Database::open(path);
  ::umask(old_mask);
  if (!db) return db.error();
  create_schema(*db);
  auto x = crypto::X25519KeyPair::generate();
  auto ed = crypto::Ed25519KeyPair::generate();
  auto emm_key = entitlement::derive_emm_key(x.private_key, op.x25519_public, op.ca_system_id, stb_id);
  if (!emm_key) return make_error(Errc::invalid_argument, "operator key unusable: " + emm_key.error().message);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto st = db->prepare("INSERT INTO identity VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, stb_id).bind(2, op.ca_system_id).bind(3, op.x25519_public).bind(4, op.ed25519_public)
      .bind(5, x.private_key.bytes()).bind(6, x.public_key).bind(7, ed.private_key.bytes()).bind(8, ed.public_key).bind(9, now);
  st.run();
  entitlement::StbPublicFile pub{stb_id, x.public_key, ed.public_key};
  if (auto s = pub.write((fs::path(home) / kPublicName).string()); !s) return s.error();
  SecureElement se(std::move(*db), stb_id, op.ca_system_id, std::move(*emm_key), pub);
  se.issuer_public_ = op.ed25519_public;
  return se;
}

Result<SecureElement> SecureElement::open(const std::string& home) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (!fs::exists(path)) {
    return make_error(Errc::not_found, "no STB in " + home + " (run `usher stb init --home " + home + "` first)");
  }
  auto db = sql::Database::open(path, false);
  if (!db) return db.error();
  create_schema(*db);
  auto st = db->prepare(
      "SELECT stb_id, ca_system_id, operator_x25519, x25519_private, x25519_public, ed25519_public, operator_ed25519 "
      "FROM identity WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, path + " has no identity");
  const auto stb_id = static_cast<std::uint32_t>(st.column_int(0));
  const auto ca = static_cast<std::uint16_t>(st.column_int(1));
  const auto op = blob_public(st.column_blob(2));
  auto priv = st.column_key(3);
  entitlement::StbPublicFile pub{stb_id, blob_public(st.column_blob(4)), blob_public(st.column_blob(5))};
  auto emm_key = entitlement::derive_emm_key(priv, op, ca, stb_id);
  if (!emm_key) return emm_key.error();
  SecureElement se(std::move(*db), stb_id, ca, std::move(*emm_key), pub);
  se.issuer_public_ = blob_public(st.column_blob(6));
  se.load();
  return se;
}

void SecureElement::load() {
  held_.clear();
  auto st = db_.prepare("SELECT service_id, key_version, service_key, not_before, not_after, revoked, sequence FROM entitlements");
  while (st.step()) {
    Held h{{static_cast<std::uint16_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)),
            static_cast<std::uint64_t>(st.column_int(3)), static_cast<std::uint64_t>(st.column_int(4)),
            st.column_int(5) != 0, static_cast<std::uint64_t>(st.column_int(6))},
           st.column_key(2)};
    held_.emplace(h.info.service_id, std::move(h));
  }
  tickets_.clear();
  auto t = db_.prepare("SELECT ticket, event_key, status FROM tickets");
  while (t.step()) {
    auto ticket = entitlement::Ticket::decode(t.column_blob(0));
    if (!ticket) continue;
    tickets_.push_back({std::move(ticket.value()), t.column_key(1), t.column_text(2)});
  }
  {
    auto p = db_.prepare("SELECT max_age FROM parental WHERE id = 1");
    parental_max_age_ = p.step() ? static_cast<std::uint8_t>(p.column_int(0)) : 255;
  }
  applied_.clear();
  auto a = db_.prepare("SELECT sequence FROM emm_applied");
  while (a.step()) applied_.insert(static_cast<std::uint64_t>(a.column_int(0)));
}

Result<EmmOutcome> SecureElement::apply_emm(std::span<const std::uint8_t> section) {
  auto header = entitlement::peek_emm(section);
  if (!header) return header.error();
  if (header->stb_id != stb_id_) return EmmOutcome::not_addressed;
  if (applied_.contains(header->sequence)) return EmmOutcome::duplicate;
  auto emm = entitlement::decode_emm(section, emm_key_);
  if (!emm) return emm.error();
  const auto seq = emm->sequence;
  int applied_items = 0;
  std::string stale;
  sql::Transaction tx(db_);
  for (auto& item : emm->items) {
    if (auto* t = std::get_if<entitlement::EmmTicket>(&item)) {
      auto stored = store_ticket(t->ticket, t->event_key);
      if (!stored) return stored.error();
      ++applied_items;
      continue;
    }
    if (auto* c = std::get_if<entitlement::EmmCredit>(&item)) {
      // Only a newer credit EMM changes the limit (a replayed older one is ignored).
      auto st = db_.prepare(
          "INSERT INTO credit VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET limit_minor = excluded.limit_minor, "
          "currency = excluded.currency, sequence = excluded.sequence WHERE excluded.sequence > credit.sequence");
      st.bind(1, c->limit_minor).bind(2, std::string(c->currency.begin(), c->currency.end())).bind(3, static_cast<std::int64_t>(seq));
      st.run();
      ++applied_items;
      continue;
    }
    if (auto* o = std::get_if<entitlement::EmmOffer>(&item)) {
      auto st = db_.prepare("INSERT OR REPLACE INTO offers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      st.bind(1, o->event_id).bind(2, o->service_id).bind(3, static_cast<std::int64_t>(o->start)).bind(4, o->duration)
          .bind(5, o->price_minor).bind(6, std::string(o->currency.begin(), o->currency.end())).bind(7, o->min_age)
          .bind(8, o->event_key.bytes()).bind(9, o->title);
      st.run();
      ++applied_items;
      continue;
    }
    if (auto* r = std::get_if<entitlement::EmmTicketRevoke>(&item)) {
      // Remembered even before the ticket itself arrives, so a late ticket is born revoked.
      auto ins = db_.prepare("INSERT OR IGNORE INTO revoked_tickets VALUES (?)");
      ins.bind(1, static_cast<std::int64_t>(r->ticket_id));
      ins.run();
      auto up = db_.prepare("UPDATE tickets SET status = 'revoked' WHERE ticket_id = ?");
      up.bind(1, static_cast<std::int64_t>(r->ticket_id));
      up.run();
      ++applied_items;
      continue;
    }
    const std::uint16_t service = std::visit(
        [](const auto& i) -> std::uint16_t {
          if constexpr (requires { i.service_id; }) return i.service_id;
          return 0;
        },
        item);
    if (auto it = held_.find(service); it != held_.end() && it->second.info.sequence >= seq) {
      stale = "EMM " + std::to_string(seq) + " is older than EMM " + std::to_string(it->second.info.sequence) +
              " already applied for service " + std::to_string(service) + " (reordered or replayed)";
      continue;
    }
    if (auto* g = std::get_if<entitlement::EmmGrant>(&item)) {
      auto st = db_.prepare("INSERT OR REPLACE INTO entitlements VALUES (?, ?, ?, ?, ?, 0, ?)");
      st.bind(1, g->service_id).bind(2, g->key_version).bind(3, g->service_key.bytes())
          .bind(4, static_cast<std::int64_t>(g->not_before)).bind(5, static_cast<std::int64_t>(g->not_after))
          .bind(6, static_cast<std::int64_t>(seq));
      st.run();
    } else if (auto* v = std::get_if<entitlement::EmmRevoke>(&item)) {
      // Keep a row (without a usable key) so that an older grant replayed later is recognised as stale.
      const std::array<std::uint8_t, 32> zero{};
      auto st = db_.prepare("INSERT OR REPLACE INTO entitlements VALUES (?, 0, ?, 0, 0, 1, ?)");
      st.bind(1, v->service_id).bind(2, std::span<const std::uint8_t>(zero)).bind(3, static_cast<std::int64_t>(seq));
      st.run();
    }
    ++applied_items;
  }
  if (applied_items == 0 && !stale.empty()) return make_error(Errc::stale, stale);
  auto mark = db_.prepare("INSERT INTO emm_applied VALUES (?, ?)");
  mark.bind(1, static_cast<std::int64_t>(seq)).bind(2, static_cast<std::int64_t>(emm->issued_unix));
  mark.run();
  tx.commit();
  load();
  return EmmOutcome::applied;
}

namespace {
constexpr int kPinIterations = 20'000;
}  // namespace

bool SecureElement::verify_pin(const std::string& pin) {
  auto st = db_.prepare("SELECT pin_salt, pin_hash FROM parental WHERE id = 1");
  if (!st.step()) return true;  // no PIN set: nothing is locked
  const auto salt = st.column_blob(0);
  const auto hash = st.column_blob(1);
  const auto computed = crypto::pbkdf2_sha256(pin, salt, kPinIterations);
  return constant_time_equal(computed.bytes(), hash);
}

Status SecureElement::set_parental(const std::string& new_pin, std::uint8_t max_age, const std::string& current_pin) {
  if (new_pin.size() < 4 || new_pin.size() > 12 || new_pin.find_first_not_of("0123456789") != std::string::npos) {
    return make_error(Errc::invalid_argument, "the PIN must be 4 to 12 digits");
  }
  if (!verify_pin(current_pin)) return make_error(Errc::auth_failed, "wrong current PIN");
  std::array<std::uint8_t, 16> salt{};
  crypto::random_bytes(salt);
  const auto hash = crypto::pbkdf2_sha256(new_pin, salt, kPinIterations);
  auto st = db_.prepare("INSERT OR REPLACE INTO parental VALUES (1, ?, ?, ?)");
  st.bind(1, max_age).bind(2, std::span<const std::uint8_t>(salt)).bind(3, hash.bytes());
  st.run();
  parental_max_age_ = max_age;
  return ok_status();
}

std::string SecureElement::request_code(std::uint16_t event_id, std::uint64_t expires) const {
  std::array<std::uint8_t, 2> nonce{};
  crypto::random_bytes(nonce);
  entitlement::RequestCode code{stb_id_, event_id, expires, static_cast<std::uint16_t>(nonce[0] << 8 | nonce[1])};
  return entitlement::make_request_code(code, entitlement::request_code_key(emm_key_));
}

Status SecureElement::store_ticket(std::span<const std::uint8_t> bytes, const Key256& event_key) {
  auto ticket = entitlement::Ticket::decode(bytes);
  if (!ticket) return ticket.error();
  if (!ticket->verify(issuer_public_)) return make_error(Errc::auth_failed, "ticket not signed by this STB's operator");
  if (ticket->stb_id != stb_id_) {
    return make_error(Errc::not_entitled, "ticket " + std::to_string(ticket->ticket_id) + " is bound to STB " +
                                              std::to_string(ticket->stb_id) + ", not this one");
  }
  auto st = db_.prepare(
      "INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, ?, "
      "CASE WHEN EXISTS (SELECT 1 FROM revoked_tickets WHERE ticket_id = ?1) THEN 'revoked' ELSE 'valid' END, ?, 0)");
  const auto stored = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  st.bind(1, static_cast<std::int64_t>(ticket->ticket_id)).bind(2, ticket->event_id).bind(3, bytes)
      .bind(4, event_key.bytes()).bind(5, stored);
  st.run();
  return ok_status();
}

namespace {
constexpr std::uint64_t kImpulseTicketBase = std::uint64_t{1} << 62;  // local ticket ids, apart from the engine's
}  // namespace

namespace {
entitlement::Money money_of(const sql::Statement& st, int minor_col, int currency_col) {
  const auto c = st.column_text(currency_col);
  entitlement::Money m{st.column_int(minor_col), {'X', 'X', 'X'}};
  if (c.size() == 3) m.currency = {c[0], c[1], c[2]};
  return m;
}
}  // namespace

Result<entitlement::HistoryRecord> SecureElement::impulse_buy(std::uint32_t event_id, std::uint64_t now) {
  sql::Transaction tx(db_);
  {
    auto already = db_.prepare("SELECT sequence FROM history WHERE event_id = ?");
    already.bind(1, event_id);
    if (already.step()) {
      return make_error(Errc::already_exists, "event " + std::to_string(event_id) + " is already bought on this STB (history record " +
                                                  std::to_string(already.column_int(0)) + "): nothing charged");
    }
  }
  {
    // One sale per entitlement: a ticket bought with a handset (F1, F2, F3, F5) already covers it.
    auto held = db_.prepare("SELECT ticket_id FROM tickets WHERE event_id = ? AND status = 'valid' AND ticket_id < ? ORDER BY ticket_id");
    held.bind(1, event_id).bind(2, static_cast<std::int64_t>(kImpulseTicketBase));
    if (held.step()) {
      return make_error(Errc::already_exists, "this STB already holds ticket " + std::to_string(held.column_int(0)) + " for event " +
                                                  std::to_string(event_id) + ": nothing charged");
    }
  }
  auto offer = db_.prepare(
      "SELECT service_id, start, duration, price_minor, currency, event_key, title FROM offers WHERE event_id = ?");
  offer.bind(1, event_id);
  if (!offer.step()) {
    return make_error(Errc::not_found, "event " + std::to_string(event_id) +
                                           " is not offered for impulse purchase on this STB (buy it with your handset)");
  }
  const auto start = static_cast<std::uint64_t>(offer.column_int(1));
  const auto end = start + static_cast<std::uint64_t>(offer.column_int(2));
  if (now >= end) return make_error(Errc::not_entitled, "event " + std::to_string(event_id) + " is over");
  const auto price = money_of(offer, 3, 4);

  // The credit line: a hotel room's comes with the guest's stay (none while vacant); at home it
  // is set by EMM.
  std::optional<entitlement::Money> limit;
  std::uint64_t stay_id = 0;
  {
    auto room = db_.prepare("SELECT stay_id, limit_minor, currency FROM room WHERE id = 1");
    if (room.step()) {
      stay_id = static_cast<std::uint64_t>(room.column_int(0));
      if (stay_id == 0) return make_error(Errc::not_entitled, "this room is vacant: no purchases until a guest checks in");
      limit = money_of(room, 1, 2);
    }
  }
  if (!limit) {
    auto credit = db_.prepare("SELECT limit_minor, currency FROM credit WHERE id = 1");
    if (credit.step()) limit = money_of(credit, 0, 1);
  }
  // Prepaid credit ([0269] prepayment) is spent first; the rest goes on the credit line.
  std::uint8_t payment = entitlement::kPaymentCredit;
  {
    auto pre = db_.prepare("SELECT balance_minor, currency FROM prepaid WHERE id = 1");
    if (stay_id == 0 && pre.step()) {
      const auto balance = money_of(pre, 0, 1);
      if (balance.currency == price.currency && balance.minor >= price.minor) payment = entitlement::kPaymentPrepaid;
    }
  }
  if (payment == entitlement::kPaymentCredit) {
    if (!limit) return make_error(Errc::not_entitled, "this STB has no credit line: pay with your handset (--pay-by-handset)");
    if (limit->currency != price.currency) return make_error(Errc::not_entitled, "the event is priced in another currency than the credit line");
    auto used_q = db_.prepare("SELECT COALESCE(SUM(price_minor), 0) FROM history WHERE settled = 0 AND payment = 0");
    used_q.step();
    const entitlement::Money used{used_q.column_int(0), limit->currency};
    if (used.minor + price.minor > limit->minor) {
      return make_error(Errc::not_entitled, "credit limit " + entitlement::format_money(*limit) + " reached (" +
                                                entitlement::format_money(used) + " of purchases not yet settled): " +
                                                (stay_id != 0 ? "ask the front desk" : "relay your history with your handset"));
    }
  } else {
    auto spend = db_.prepare("UPDATE prepaid SET balance_minor = balance_minor - ? WHERE id = 1");
    spend.bind(1, price.minor);
    spend.run();
  }
  // The next record in the chain.
  entitlement::HistoryRecord rec;
  rec.stb_id = stb_id_;
  rec.sequence = 1;
  rec.time = now;
  rec.event_id = event_id;
  rec.service_id = static_cast<std::uint16_t>(offer.column_int(0));
  rec.price = price;
  rec.payment = payment;
  rec.stay_id = stay_id;
  {
    auto last = db_.prepare("SELECT last_sequence, last_hash FROM chain WHERE id = 1");
    if (last.step()) {
      rec.sequence = static_cast<std::uint64_t>(last.column_int(0)) + 1;
      const auto h = last.column_blob(1);
      std::copy(h.begin(), h.end(), rec.previous.begin());
    }
  }
  {
    auto k = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
    k.step();
    rec.sign(k.column_key(0));
  }
  const auto hash = rec.hash();
  {
    auto ins = db_.prepare("INSERT INTO history (sequence, event_id, price_minor, payment, record, hash) VALUES (?, ?, ?, ?, ?, ?)");
    ins.bind(1, static_cast<std::int64_t>(rec.sequence)).bind(2, event_id).bind(3, price.minor).bind(4, payment)
        .bind(5, rec.encode()).bind(6, std::span<const std::uint8_t>(hash));
    ins.run();
    auto chain = db_.prepare("INSERT INTO chain (id, last_sequence, last_hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                             "last_sequence = excluded.last_sequence, last_hash = excluded.last_hash");
    chain.bind(1, static_cast<std::int64_t>(rec.sequence)).bind(2, std::span<const std::uint8_t>(hash));
    chain.run();
  }
  // A local ticket for the event, with the offered key, so the ECMs open as for a bought ticket.
  entitlement::Ticket t;
  t.ticket_id = kImpulseTicketBase + rec.sequence;
  t.event_id = event_id;
  t.service_id = rec.service_id;
  t.stb_id = stb_id_;
  t.valid_from = start;
  t.valid_until = end;
  t.issued = now;
  t.title = offer.column_text(6);
  auto tk = db_.prepare("INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, ?, 'valid', ?, 1)");
  tk.bind(1, static_cast<std::int64_t>(t.ticket_id)).bind(2, event_id).bind(3, t.encode()).bind(4, offer.column_blob(5))
      .bind(5, static_cast<std::int64_t>(now));
  tk.run();
  tx.commit();
  load();
  return rec;
}

std::vector<entitlement::HistoryRecord> SecureElement::history(bool unsettled_only) {
  std::vector<entitlement::HistoryRecord> out;
  auto st = db_.prepare(std::string("SELECT record FROM history ") + (unsettled_only ? "WHERE settled = 0 " : "") +
                        "ORDER BY sequence");
  while (st.step()) {
    auto r = entitlement::HistoryRecord::decode(st.column_blob(0));
    if (r) out.push_back(*r);
  }
  return out;
}

std::vector<std::uint8_t> SecureElement::sealed_unsettled_history() { return seal_for_billing(history(true)); }

std::vector<std::uint8_t> SecureElement::seal_for_billing(std::span<const entitlement::HistoryRecord> records) const {
  return entitlement::seal_history(records, stb_id_, entitlement::history_key(emm_key_));
}

Result<entitlement::Money> SecureElement::credit_limit() {
  {
    auto room = db_.prepare("SELECT limit_minor, currency, stay_id FROM room WHERE id = 1");
    if (room.step()) {
      if (room.column_int(2) == 0) return make_error(Errc::not_found, "vacant room: no credit");
      return money_of(room, 0, 1);
    }
  }
  auto st = db_.prepare("SELECT limit_minor, currency FROM credit WHERE id = 1");
  if (!st.step()) return make_error(Errc::not_found, "no credit line");
  return money_of(st, 0, 1);
}

SecureElement::SettlementStatus SecureElement::settlement_status() {
  SettlementStatus out;
  {
    auto st = db_.prepare("SELECT COUNT(*), COALESCE(SUM(price_minor), 0) FROM history WHERE settled = 0 AND payment = 0");
    st.step();
    out.unsettled_records = static_cast<std::uint64_t>(st.column_int(0));
    out.unsettled.minor = st.column_int(1);
  }
  if (auto limit = credit_limit(); limit) {
    out.unsettled.currency = limit->currency;
    out.credit_limit = *limit;
  }
  {
    auto st = db_.prepare("SELECT balance_minor, currency FROM prepaid WHERE id = 1");
    if (st.step()) out.prepaid = money_of(st, 0, 1);
  }
  {
    auto st = db_.prepare("SELECT last_settled FROM chain WHERE id = 1");
    if (st.step()) out.last_settled = static_cast<std::uint64_t>(st.column_int(0));
  }
  {
    auto st = db_.prepare("SELECT stay_id FROM room WHERE id = 1");
    if (st.step()) {
      out.hotel_room = true;
      out.stay_id = static_cast<std::uint64_t>(st.column_int(0));
    }
  }
  return out;
}

Result<SecureElement::ReceiptOutcome> SecureElement::apply_receipt(std::span<const std::uint8_t> bytes, std::uint64_t now) {
  auto rc = entitlement::Receipt::decode(bytes);
  if (!rc) return rc.error();
  if (!rc->verify(issuer_public_)) {
    return make_error(Errc::auth_failed, "receipt " + std::to_string(rc->receipt_id) + " is not signed by a billing service the operator certified");
  }
  if (rc->stb_id != stb_id_) {
    return make_error(Errc::not_entitled, "receipt " + std::to_string(rc->receipt_id) + " is for STB " + std::to_string(rc->stb_id) +
                                              ", this is STB " + std::to_string(stb_id_));
  }
  sql::Transaction tx(db_);
  {
    auto seen = db_.prepare("SELECT 1 FROM receipts WHERE receipt_id = ?");
    seen.bind(1, static_cast<std::int64_t>(rc->receipt_id));
    if (seen.step()) return make_error(Errc::replayed, "receipt " + std::to_string(rc->receipt_id) + " was already applied");
  }
  ReceiptOutcome out;
  out.receipt = *rc;
  if (rc->kind == entitlement::SettlementKind::prepayment) {
    auto cur = db_.prepare("SELECT currency FROM prepaid WHERE id = 1");
    if (cur.step() && cur.column_text(0) != entitlement::to_string(rc->amount.currency)) {
      return make_error(Errc::invalid_argument, "prepaid credit is held in " + cur.column_text(0));
    }
    auto st = db_.prepare("INSERT INTO prepaid VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET balance_minor = balance_minor + excluded.balance_minor");
    st.bind(1, rc->amount.minor).bind(2, entitlement::to_string(rc->amount.currency));
    st.run();
  } else {
    // Exactly the records first..last, the last one with the hash billing signed, all unsettled.
    auto last = db_.prepare("SELECT hash FROM history WHERE sequence = ?");
    last.bind(1, static_cast<std::int64_t>(rc->last_sequence));
    if (!last.step()) return make_error(Errc::not_found, "receipt " + std::to_string(rc->receipt_id) + " names records this STB does not hold");
    const auto h = last.column_blob(0);
    if (!std::equal(h.begin(), h.end(), rc->last_hash.begin(), rc->last_hash.end())) {
      return make_error(Errc::auth_failed, "receipt " + std::to_string(rc->receipt_id) + " does not match this STB's history");
    }
    auto count = db_.prepare("SELECT COUNT(*), COALESCE(SUM(settled), 0) FROM history WHERE sequence BETWEEN ? AND ?");
    count.bind(1, static_cast<std::int64_t>(rc->first_sequence)).bind(2, static_cast<std::int64_t>(rc->last_sequence));
    count.step();
    const auto expected = static_cast<std::int64_t>(rc->last_sequence - rc->first_sequence + 1);
    const auto held = count.column_int(0);
    const auto settled = count.column_int(1);
    if (held != expected) return make_error(Errc::not_found, "receipt " + std::to_string(rc->receipt_id) + " covers records this STB does not hold");
    if (settled == held) return make_error(Errc::replayed, "the records of receipt " + std::to_string(rc->receipt_id) + " are already settled");
    if (settled != 0) return make_error(Errc::stale, "receipt " + std::to_string(rc->receipt_id) + " overlaps records settled by another receipt");
    auto upd = db_.prepare("UPDATE history SET settled = 1, receipt_id = ? WHERE sequence BETWEEN ? AND ?");
    upd.bind(1, static_cast<std::int64_t>(rc->receipt_id)).bind(2, static_cast<std::int64_t>(rc->first_sequence))
        .bind(3, static_cast<std::int64_t>(rc->last_sequence));
    upd.run();
    out.records_settled = static_cast<std::uint64_t>(db_.changes());
    auto ch = db_.prepare("UPDATE chain SET last_settled = ? WHERE id = 1");
    ch.bind(1, static_cast<std::int64_t>(now));
    ch.run();
  }
  auto ins = db_.prepare("INSERT INTO receipts VALUES (?, ?, ?, ?, ?)");
  ins.bind(1, static_cast<std::int64_t>(rc->receipt_id)).bind(2, static_cast<std::int64_t>(rc->kind)).bind(3, rc->amount.minor)
      .bind(4, entitlement::to_string(rc->amount.currency)).bind(5, static_cast<std::int64_t>(now));
  ins.run();
  tx.commit();
  return out;
}

Status SecureElement::apply_room_state(std::span<const std::uint8_t> bytes) {
  auto state = entitlement::RoomState::decode(bytes);
  if (!state) return state.error();
  if (!state->verify(issuer_public_)) return make_error(Errc::auth_failed, "room state is not signed by a billing service the operator certified");
  if (state->stb_id != stb_id_) return make_error(Errc::not_entitled, "room state is for STB " + std::to_string(state->stb_id));
  sql::Transaction tx(db_);
  {
    auto cur = db_.prepare("SELECT counter FROM room WHERE id = 1");
    if (cur.step() && static_cast<std::uint64_t>(cur.column_int(0)) >= state->counter) {
      return make_error(Errc::replayed, "room state " + std::to_string(state->counter) + " is not newer than the one applied");
    }
  }
  if (state->clear) {
    // The last guest's purchases must have reached billing before they are wiped.
    {
      auto open = db_.prepare("SELECT COUNT(*) FROM history WHERE settled = 0");
      open.step();
      if (open.column_int(0) != 0) {
        return make_error(Errc::not_entitled, std::to_string(open.column_int(0)) + " purchases in this room are not collected yet");
      }
    }
    db_.exec("DELETE FROM history; DELETE FROM tickets; DELETE FROM revoked_tickets; DELETE FROM prepaid;");
  }
  auto st = db_.prepare("INSERT INTO room VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET counter = excluded.counter, "
                        "stay_id = excluded.stay_id, limit_minor = excluded.limit_minor, currency = excluded.currency, "
                        "billing_endpoint = excluded.billing_endpoint");
  st.bind(1, static_cast<std::int64_t>(state->counter)).bind(2, static_cast<std::int64_t>(state->stay_id))
      .bind(3, state->credit_limit.minor).bind(4, entitlement::to_string(state->credit_limit.currency)).bind(5, state->billing_endpoint);
  st.run();
  tx.commit();
  load();
  return ok_status();
}

std::string SecureElement::billing_endpoint() {
  auto st = db_.prepare("SELECT billing_endpoint FROM room WHERE id = 1");
  if (!st.step()) return {};
  return st.column_text(0);
}

void SecureElement::mark_watched(std::uint32_t event_id) {
  bool changed = false;
  for (auto& t : tickets_) {
    if (t.ticket.event_id == event_id && t.status == "valid") {
      t.status = "used";
      changed = true;
    }
  }
  if (!changed) return;
  auto st = db_.prepare("UPDATE tickets SET status = 'used' WHERE event_id = ? AND status = 'valid'");
  st.bind(1, event_id);
  st.run();
}

std::vector<entitlement::DeliveryAck> SecureElement::pending_acks() {
  std::vector<entitlement::DeliveryAck> out;
  Secret<32> key;
  {
    auto k = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
    k.step();
    key = k.column_key(0);
  }
  auto st = db_.prepare("SELECT ticket_id, received FROM tickets WHERE ack_relayed = 0 ORDER BY ticket_id");
  while (st.step()) {
    entitlement::DeliveryAck ack;
    ack.ticket_id = static_cast<std::uint64_t>(st.column_int(0));
    ack.stb_id = stb_id_;
    ack.stored = static_cast<std::uint64_t>(st.column_int(1));
    ack.sign(key);
    out.push_back(ack);
  }
  return out;
}

void SecureElement::acks_relayed(const std::vector<std::uint64_t>& ticket_ids) {
  sql::Transaction tx(db_);
  auto st = db_.prepare("UPDATE tickets SET ack_relayed = 1 WHERE ticket_id = ?");
  for (auto id : ticket_ids) {
    st.reset();
    st.bind(1, static_cast<std::int64_t>(id));
    st.run();
  }
  tx.commit();
}

Result<entitlement::EcmPeriod> SecureElement::open_ppv_ecm(std::span<const std::uint8_t> section,
                                                           const entitlement::EcmHeader& header,
                                                           entitlement::EcmPart part) const {
  const auto event_id = header.audience(part);
  const std::string ev = "PPV event " + std::to_string(event_id);
  const HeldTicket* found = nullptr;
  bool revoked = false;
  for (const auto& t : tickets_) {
    if (t.ticket.event_id != event_id) continue;
    if (t.status == "valid" || t.status == "used") found = &t;
    if (t.status == "revoked") revoked = true;
  }
  if (found == nullptr) return make_error(Errc::not_entitled, ev + (revoked ? ": ticket revoked" : ": no ticket on this STB"));
  auto ecm = entitlement::decode_ecm_part(section, part, found->event_key);
  if (!ecm) return ecm.error();
  if (ecm->time_unix < found->ticket.valid_from || ecm->time_unix >= found->ticket.valid_until) {
    return make_error(Errc::not_entitled, ev + ": ticket valid " + format_utc(found->ticket.valid_from) + " to " +
                                              format_utc(found->ticket.valid_until) + ", broadcast time is " + format_utc(ecm->time_unix));
  }
  return ecm;
}

std::vector<entitlement::Ticket> SecureElement::tickets() const {
  std::vector<entitlement::Ticket> out;
  for (const auto& t : tickets_) out.push_back(t.ticket);
  return out;
}

std::string SecureElement::ticket_status(std::uint64_t ticket_id) const {
  for (const auto& t : tickets_) {
    if (t.ticket.ticket_id == ticket_id) return t.status;
  }
  return "unknown";
}

Result<entitlement::EcmPeriod> SecureElement::open_ecm(std::span<const std::uint8_t> section, entitlement::EcmPart part) const {
  auto header = entitlement::peek_ecm(section);
  if (!header) return header.error();
  if (header->audience(part) != 0) return open_ppv_ecm(section, *header, part);
  const auto it = held_.find(header->service_id);
  const std::string svc = "service " + std::to_string(header->service_id);
  if (it == held_.end()) return make_error(Errc::not_entitled, svc + ": no entitlement on this STB");
  const auto& h = it->second;
  if (h.info.revoked) return make_error(Errc::not_entitled, svc + ": entitlement revoked");
  if (h.info.key_version != header->key_version) {
    return make_error(Errc::not_entitled, svc + ": ECM uses key version " + std::to_string(header->key_version) +
                                              ", this STB holds version " + std::to_string(h.info.key_version));
  }
  auto ecm = entitlement::decode_ecm_part(section, part, h.key);
  if (!ecm) return ecm.error();
  if (ecm->time_unix < h.info.not_before) {
    return make_error(Errc::not_entitled, svc + ": entitlement starts at " + format_utc(h.info.not_before) +
                                              ", broadcast time is " + format_utc(ecm->time_unix));
  }
  if (ecm->time_unix > h.info.not_after) {
    return make_error(Errc::not_entitled, svc + ": entitlement ended at " + format_utc(h.info.not_after) +
                                              ", broadcast time is " + format_utc(ecm->time_unix));
  }
  return ecm;
}

std::vector<Entitlement> SecureElement::entitlements() const {
  std::vector<Entitlement> out;
  for (const auto& [id, h] : held_) out.push_back(h.info);
  return out;
}

}  // namespace usher::stb
