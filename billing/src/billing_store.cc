#include "usher/billing/billing_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace fs = std::filesystem;
using entitlement::HistoryRecord;
using entitlement::Receipt;
using entitlement::RelayReply;
using entitlement::SettlementKind;

namespace {

Money money_of(const sql::Statement& st, int minor_col, int currency_col) {
  const auto c = st.column_text(currency_col);
  Money m{st.column_int(minor_col), {'X', 'X', 'X'}};
  if (c.size() == 3) m.currency = {c[0], c[1], c[2]};
  return m;
}

crypto::Digest digest_of(const std::vector<std::uint8_t>& b) {
  crypto::Digest d{};
  if (b.size() == d.size()) std::copy(b.begin(), b.end(), d.begin());
  return d;
}

std::span<const std::uint8_t> bytes_of(const crypto::Digest& d) { return {d.data(), d.size()}; }

// The engine request id a settlement's charge runs under: the same for every attempt at the same
// spend, so that a retry after a crash gets the engine's stored answer instead of a second debit.
std::vector<std::uint8_t> charge_request_id(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend) {
  ByteWriter w;
  static constexpr std::uint8_t kDomain[] = {'u', 's', 'h', 'e', 'r', '-', 's', 'e', 't', 't', 'l', 'e'};
  w.bytes(kDomain);
  w.u64(settlement_id);
  w.bytes(spend.nonce);
  const auto d = crypto::sha256(w.data());
  return {d.begin(), d.begin() + 16};
}

void add_total(std::vector<Money>& totals, const Money& m) {
  for (auto& t : totals) {
    if (t.currency == m.currency) {
      t.minor += m.minor;
      return;
    }
  }
  totals.push_back(m);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

constexpr const char* kStatementTime = "%Y-%m-%d %H:%M UTC";

std::string amount_only(const Money& m) {
  auto s = entitlement::format_money(m);
  return s.substr(0, s.size() - 4);
}

}  // namespace

std::string Statement::text() const {
  std::string out = title + "\n" + std::string(title.size(), '=') + "\n";
  if (lines.empty()) out += "(nothing)\n";
  for (const auto& l : lines) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%-20s  STB %-6u  %-10s  %-28.28s  %14s\n", format_utc(l.time, kStatementTime).c_str(), l.stb_id, l.kind.c_str(),
                  l.description.c_str(), entitlement::format_money(l.amount).c_str());
    out += buf;
  }
  for (const auto& t : totals) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "%-76s  %14s\n", "Total", entitlement::format_money(t).c_str());
    out += buf;
  }
  return out;
}

std::string Statement::csv() const {
  std::string out = "time_utc,stb_id,kind,description,event_id,record,settlement,amount,currency\n";
  for (const auto& l : lines) {
    out += csv_field(format_utc(l.time, kStatementTime)) + "," + std::to_string(l.stb_id) + "," + l.kind + "," + csv_field(l.description) + "," +
           std::to_string(l.event_id) + "," + std::to_string(l.sequence) + "," + std::to_string(l.settlement_id) + "," +
           amount_only(l.amount) + "," + entitlement::to_string(l.amount.currency) + "\n";
  }
  return out;
}

namespace {
// PDF string literal: backslash, parentheses escaped; only printable ASCII kept (Courier, WinAnsi).
std::string pdf_literal(const std::string& line) {
  std::string out = "(";
  for (unsigned char c : line) {
    if (c == '\\' || c == '(' || c == ')') out += '\\';
    out += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : '?';
  }
  return out + ")";
}
}  // namespace

std::string Statement::pdf() const {
  std::vector<std::string> rows;
  {
    const auto t = text();
    std::size_t start = 0;
    while (start < t.size()) {
      const auto end = t.find('\n', start);
      rows.push_back(t.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  constexpr std::size_t kLinesPerPage = 60;
  const std::size_t pages = std::max<std::size_t>(1, (rows.size() + kLinesPerPage - 1) / kLinesPerPage);
  // Objects: 1 catalog, 2 pages, 3 font, then per page a page object and its content stream.
  std::vector<std::string> objects(3 + 2 * pages);
  objects[0] = "<< /Type /Catalog /Pages 2 0 R >>";
  std::string kids;
  for (std::size_t p = 0; p < pages; ++p) kids += std::to_string(4 + 2 * p) + " 0 R ";
  objects[1] = "<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(pages) + " >>";
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>";
  for (std::size_t p = 0; p < pages; ++p) {
    // A4 landscape, 8-point Courier: 110 columns fit the statement's lines.
    std::string content = "BT /F1 8 Tf 10 TL 36 560 Td\n";
    for (std::size_t i = p * kLinesPerPage; i < std::min(rows.size(), (p + 1) * kLinesPerPage); ++i) {
      content += pdf_literal(rows[i]) + " Tj T*\n";
    }
    content += "ET";
    objects[3 + 2 * p] = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 842 595] /Resources << /Font << /F1 3 0 R >> >> /Contents " +
                         std::to_string(5 + 2 * p) + " 0 R >>";
    objects[4 + 2 * p] = "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "\nendstream";
  }
  std::string out = "%PDF-1.4\n";
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(out.size());
    out += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const auto xref = out.size();
  out += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (auto off : offsets) {
    char entry[32];
    std::snprintf(entry, sizeof(entry), "%010zu 00000 n \n", off);
    out += entry;
  }
  out += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return out;
}

BillingStore::BillingStore(sql::Database db, entitlement::EntitlementStore engine, entitlement::BillingCertificate cert)
    : db_(std::move(db)), engine_(std::move(engine)), certificate_(cert) {}

void BillingStore::create_schema(sql::Database& db) {
  db.exec(R"(
    CREATE TABLE IF NOT EXISTS identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      billing_id INTEGER NOT NULL,
      engine_home TEXT NOT NULL,
      ed25519_private BLOB NOT NULL,
      certificate BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS config (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL);
    -- Per STB: the end of the settled part of its chain, and the prepaid credit it holds by billing's books.
    CREATE TABLE IF NOT EXISTS stbs (
      stb_id INTEGER PRIMARY KEY,
      settled_sequence INTEGER NOT NULL DEFAULT 0,
      settled_hash BLOB NOT NULL,
      prepaid_minor INTEGER NOT NULL DEFAULT 0 CHECK (prepaid_minor >= 0),
      prepaid_currency TEXT);
    CREATE TABLE IF NOT EXISTS settlements (
      settlement_id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      first_sequence INTEGER NOT NULL,
      last_sequence INTEGER NOT NULL,
      last_hash BLOB NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      card_id INTEGER NOT NULL,
      stay_id INTEGER NOT NULL DEFAULT 0,
      state TEXT NOT NULL CHECK (state IN ('quoted', 'charging', 'paid')),
      history BLOB,
      spend BLOB,
      receipt BLOB,
      created INTEGER NOT NULL,
      paid INTEGER);
    CREATE INDEX IF NOT EXISTS settlements_by_stb ON settlements(stb_id, state);
    CREATE TABLE IF NOT EXISTS records (
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      hash BLOB NOT NULL,
      time INTEGER NOT NULL,
      event_id INTEGER NOT NULL,
      title TEXT NOT NULL,
      payment INTEGER NOT NULL,
      stay_id INTEGER NOT NULL,
      price_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      settlement_id INTEGER NOT NULL REFERENCES settlements,
      PRIMARY KEY (stb_id, sequence));
    CREATE TABLE IF NOT EXISTS rooms (
      room TEXT PRIMARY KEY,
      stb_id INTEGER NOT NULL UNIQUE,
      link_endpoint TEXT NOT NULL,
      state_counter INTEGER NOT NULL DEFAULT 0,
      pending_state BLOB);
    CREATE TABLE IF NOT EXISTS stays (
      stay_id INTEGER PRIMARY KEY AUTOINCREMENT,
      room TEXT NOT NULL REFERENCES rooms,
      guest_id TEXT NOT NULL,
      guest_name TEXT NOT NULL,
      checkin INTEGER NOT NULL,
      checkout INTEGER NOT NULL DEFAULT 0);
    CREATE UNIQUE INDEX IF NOT EXISTS one_guest_per_room ON stays(room) WHERE checkout = 0;
    CREATE TABLE IF NOT EXISTS pms_postings (
      posting_id INTEGER PRIMARY KEY AUTOINCREMENT,
      stay_id INTEGER NOT NULL,
      room TEXT NOT NULL,
      guest_id TEXT NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      description TEXT NOT NULL,
      time INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      state TEXT NOT NULL DEFAULT 'pending',
      attempts INTEGER NOT NULL DEFAULT 0,
      answer TEXT NOT NULL DEFAULT '',
      UNIQUE (stb_id, sequence));
  )");
}

Result<BillingStore> BillingStore::create(const std::string& home, const std::string& engine_home, std::uint32_t billing_id) {
  std::error_code ec;
  fs::create_directories(home, ec);
  if (ec) return make_error(Errc::storage, "cannot create " + home + ": " + ec.message());
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (fs::exists(path)) return make_error(Errc::already_exists, "a billing service is already initialised in " + home);
  auto engine = entitlement::EntitlementStore::open(engine_home);
  if (!engine) return engine.error();
  const auto old_mask = ::umask(077);
  auto db = sql::Database::open(path);
  ::umask(old_mask);
  if (!db) return db.error();
  create_schema(*db);
  auto keys = crypto::Ed25519KeyPair::generate();
  auto cert = engine->certify_billing(billing_id, keys.public_key, unix_now());
  const auto abs_engine = fs::absolute(engine_home).string();
  auto st = db->prepare("INSERT INTO identity VALUES (1, ?, ?, ?, ?)");
  st.bind(1, billing_id).bind(2, abs_engine).bind(3, keys.private_key.bytes()).bind(4, cert.encode());
  st.run();
  return BillingStore(std::move(*db), std::move(*engine), cert);
}

Result<BillingStore> BillingStore::open(const std::string& home) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (!fs::exists(path)) return make_error(Errc::not_found, "no billing service in " + home + " (run `usher billing init` first)");
  auto db = sql::Database::open(path, false);
  if (!db) return db.error();
  create_schema(*db);
  auto st = db->prepare("SELECT engine_home, certificate FROM identity WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, path + " has no billing identity");
  auto engine = entitlement::EntitlementStore::open(st.column_text(0));
  if (!engine) return engine.error();
  auto cert = entitlement::BillingCertificate::decode(st.column_blob(1));
  if (!cert) return cert.error();
  st = db->prepare("SELECT 1");
  return BillingStore(std::move(*db), std::move(*engine), *cert);
}

Secret<32> BillingStore::signing_private() {
  if (signing_private_) return signing_private_->clone();
  auto st = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
  st.step();
  auto b = st.column_blob(0);
  Secret<32> k(std::span<const std::uint8_t, 32>(b.data(), 32));
  secure_zero(b.data(), b.size());
  signing_private_ = k.clone();
  return k;
}

BillingStore::Cursor BillingStore::cursor(std::uint32_t stb_id) {
  Cursor c;
  auto st = db_.prepare("SELECT settled_sequence, settled_hash FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (st.step()) {
    c.sequence = static_cast<std::uint64_t>(st.column_int(0));
    c.hash = digest_of(st.column_blob(1));
  }
  return c;
}

std::uint64_t BillingStore::settled_sequence(std::uint32_t stb_id) { return cursor(stb_id).sequence; }

std::int64_t BillingStore::settled_minor(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT COALESCE(SUM(amount_minor), 0) FROM settlements WHERE stb_id = ? AND state = 'paid' AND kind = 1");
  st.bind(1, stb_id);
  st.step();
  return st.column_int(0);
}

Result<Money> BillingStore::price_of(const HistoryRecord& r) {
  // The engine's catalogue is the price list; the price the STB recorded is what it showed the
  // viewer and must agree with it.
  auto ev = engine_.event(r.event_id);
  if (!ev) return make_error(Errc::not_found, "history record " + std::to_string(r.sequence) + " names event " +
                                                  std::to_string(r.event_id) + ", unknown to the catalogue");
  if (ev->price.currency != r.price.currency || ev->price.minor != r.price.minor) {
    return make_error(Errc::not_entitled, "history record " + std::to_string(r.sequence) + ": event " + std::to_string(r.event_id) +
                                              " costs " + entitlement::format_money(ev->price) + ", the STB recorded " +
                                              entitlement::format_money(r.price));
  }
  return ev->price;
}

Result<BillingStore::Checked> BillingStore::check_history(std::span<const std::uint8_t> sealed) {
  auto opened = engine_.open_sealed_history(sealed);
  if (!opened) return opened.error();
  Checked out;
  out.stb_id = opened->stb_id;
  const auto cur = cursor(opened->stb_id);
  std::size_t i = 0;
  // Records billing has settled already but the STB still holds as unsettled: its receipt was lost
  // on the way back. They must be the very records billing settled; their receipts go back again.
  for (; i < opened->records.size() && opened->records[i].sequence <= cur.sequence; ++i) {
    const auto& r = opened->records[i];
    auto st = db_.prepare("SELECT r.hash, s.receipt FROM records r JOIN settlements s USING (settlement_id) "
                          "WHERE r.stb_id = ? AND r.sequence = ?");
    st.bind(1, out.stb_id).bind(2, static_cast<std::int64_t>(r.sequence));
    if (!st.step()) return make_error(Errc::stale, "history record " + std::to_string(r.sequence) + " of STB " + std::to_string(out.stb_id) +
                                                       " was settled elsewhere or never seen: a replay or a reordering");
    if (digest_of(st.column_blob(0)) != r.hash()) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " differs from the one billing settled");
    }
    auto receipt = st.column_blob(1);
    if (std::find(out.receipts.begin(), out.receipts.end(), receipt) == out.receipts.end()) out.receipts.push_back(std::move(receipt));
  }
  out.fresh.assign(opened->records.begin() + static_cast<std::ptrdiff_t>(i), opened->records.end());
  if (!out.fresh.empty() && out.receipts.empty() && out.fresh.front().sequence > cur.sequence + 1) {
    return make_error(Errc::stale, "history of STB " + std::to_string(out.stb_id) + " starts at record " +
                                       std::to_string(out.fresh.front().sequence) + " but billing expects " +
                                       std::to_string(cur.sequence + 1) + ": records are missing");
  }
  if (auto ok = entitlement::verify_history(out.fresh, opened->stb_public, cur.sequence, cur.hash); !ok) return ok.error();
  return out;
}

Result<RelayReply> BillingStore::relay(std::span<const std::uint8_t> sealed, std::uint64_t card_id, std::uint64_t now) {
  if (auto stb = entitlement::sealed_history_stb(sealed); stb) {
    // A settlement of this STB left half done by a crash is finished first, so the cursor is right.
    auto st = db_.prepare("SELECT settlement_id FROM settlements WHERE stb_id = ? AND state = 'charging'");
    st.bind(1, *stb);
    std::vector<std::uint64_t> open;
    while (st.step()) open.push_back(static_cast<std::uint64_t>(st.column_int(0)));
    for (auto id : open) (void)finish(id, now);
  }
  sql::Transaction tx(db_);
  auto checked = check_history(sealed);
  if (!checked) return checked.error();
  RelayReply reply;
  reply.receipts = std::move(checked->receipts);
  if (checked->fresh.empty()) return reply;
  if (room_of_stb(checked->stb_id) && card_id == 0) {
    return make_error(Errc::invalid_argument, "STB " + std::to_string(checked->stb_id) + " is a hotel room STB: use room_report");
  }
  Money amount{0, checked->fresh.front().price.currency};
  Money prepaid_used{0, amount.currency};
  for (const auto& r : checked->fresh) {
    auto price = price_of(r);
    if (!price) return price.error();
    if (price->currency != amount.currency) return make_error(Errc::invalid_argument, "a history in more than one currency");
    (r.payment == entitlement::kPaymentPrepaid ? prepaid_used : amount).minor += price->minor;
  }
  const auto& last = checked->fresh.back();
  const auto last_hash = last.hash();
  if (amount.minor == 0) {
    // All paid from prepaid credit: settled at once, nothing to charge.
    auto rc = settle_records(SettlementKind::deferred, checked->stb_id, checked->fresh, {}, amount, card_id, 0, 0, now);
    if (!rc) return rc.error();
    tx.commit();
    reply.receipts.push_back(rc->encode());
    return reply;
  }
  std::uint64_t id = 0;
  {
    auto same = db_.prepare("SELECT settlement_id FROM settlements WHERE stb_id = ? AND kind = 1 AND state = 'quoted' AND "
                            "first_sequence = ? AND last_sequence = ? AND last_hash = ? AND card_id = ?");
    same.bind(1, checked->stb_id).bind(2, static_cast<std::int64_t>(checked->fresh.front().sequence))
        .bind(3, static_cast<std::int64_t>(last.sequence)).bind(4, bytes_of(last_hash)).bind(5, static_cast<std::int64_t>(card_id));
    if (same.step()) id = static_cast<std::uint64_t>(same.column_int(0));
  }
  if (id == 0) {
    // A quote for fewer records (the history grew since) or another card is superseded.
    auto drop = db_.prepare("DELETE FROM settlements WHERE stb_id = ? AND kind = 1 AND state = 'quoted'");
    drop.bind(1, checked->stb_id);
    drop.run();
    auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                           "card_id, state, history, created) VALUES (1, ?, ?, ?, ?, ?, ?, ?, 'quoted', ?, ?)");
    ins.bind(1, checked->stb_id).bind(2, static_cast<std::int64_t>(checked->fresh.front().sequence))
        .bind(3, static_cast<std::int64_t>(last.sequence)).bind(4, bytes_of(last_hash)).bind(5, amount.minor)
        .bind(6, entitlement::to_string(amount.currency)).bind(7, static_cast<std::int64_t>(card_id)).bind(8, sealed)
        .bind(9, static_cast<std::int64_t>(now));
    ins.run();
    id = static_cast<std::uint64_t>(db_.last_insert_rowid());
  }
  tx.commit();
  reply.has_quote = true;
  reply.quote = {id, SettlementKind::deferred, checked->stb_id, amount, checked->fresh.front().sequence, last.sequence,
                 entitlement::settlement_payee(id, checked->stb_id)};
  return reply;
}

Result<RelayReply> BillingStore::prepay(std::uint32_t stb_id, const Money& amount, std::uint64_t card_id, std::uint64_t now) {
  if (amount.minor <= 0) return make_error(Errc::invalid_argument, "a prepayment must be positive");
  {
    auto known = engine_.stbs();
    if (std::none_of(known.begin(), known.end(), [&](const auto& s) { return s.stb_id == stb_id; })) {
      return make_error(Errc::not_entitled, "no STB " + std::to_string(stb_id));
    }
  }
  auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                         "card_id, state, created) VALUES (2, ?, 0, 0, zeroblob(32), ?, ?, ?, 'quoted', ?)");
  ins.bind(1, stb_id).bind(2, amount.minor).bind(3, entitlement::to_string(amount.currency)).bind(4, static_cast<std::int64_t>(card_id))
      .bind(5, static_cast<std::int64_t>(now));
  ins.run();
  const auto id = static_cast<std::uint64_t>(db_.last_insert_rowid());
  RelayReply reply;
  reply.has_quote = true;
  reply.quote = {id, SettlementKind::prepayment, stb_id, amount, 0, 0, entitlement::settlement_payee(id, stb_id)};
  return reply;
}

Result<Receipt> BillingStore::pay(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend, std::uint64_t now) {
  {
    sql::Transaction tx(db_);
    std::string state;
    std::uint32_t stb_id = 0;
    std::uint64_t first = 0;
    int kind = 0;
    {
      auto st = db_.prepare("SELECT state, receipt, stb_id, first_sequence, kind FROM settlements WHERE settlement_id = ?");
      st.bind(1, static_cast<std::int64_t>(settlement_id));
      if (!st.step()) return make_error(Errc::not_found, "no settlement " + std::to_string(settlement_id) + " (relay the history again)");
      state = st.column_text(0);
      if (state == "paid") return Receipt::decode(st.column_blob(1));  // a retry: the same receipt
      stb_id = static_cast<std::uint32_t>(st.column_int(2));
      first = static_cast<std::uint64_t>(st.column_int(3));
      kind = static_cast<int>(st.column_int(4));
    }
    if (state == "quoted") {
      if (kind == 1 && cursor(stb_id).sequence + 1 != first) {
        return make_error(Errc::stale, "settlement " + std::to_string(settlement_id) + " is out of date: relay the history again");
      }
      if (kind == 1) {
        // One payment at a time for an STB's history: two quotes for the same records must not both be charged.
        auto busy = db_.prepare("SELECT 1 FROM settlements WHERE stb_id = ? AND kind = 1 AND state = 'charging'");
        busy.bind(1, stb_id);
        if (busy.step()) return make_error(Errc::stale, "another payment for STB " + std::to_string(stb_id) + "'s history is in progress: relay again");
      }
      auto upd = db_.prepare("UPDATE settlements SET state = 'charging', spend = ? WHERE settlement_id = ?");
      upd.bind(1, spend.encode()).bind(2, static_cast<std::int64_t>(settlement_id));
      upd.run();
      tx.commit();
    }
  }
  return finish(settlement_id, now);
}

Result<Receipt> BillingStore::finish(std::uint64_t settlement_id, std::uint64_t now) {
  entitlement::SpendAuthorization spend;
  Money amount;
  std::uint32_t stb_id = 0;
  SettlementKind kind = SettlementKind::deferred;
  std::vector<std::uint8_t> sealed;
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t card_id = 0;
  {
    auto st = db_.prepare("SELECT state, spend, amount_minor, currency, stb_id, kind, history, first_sequence, last_sequence, card_id, "
                          "receipt FROM settlements WHERE settlement_id = ?");
    st.bind(1, static_cast<std::int64_t>(settlement_id));
    if (!st.step()) return make_error(Errc::not_found, "no settlement " + std::to_string(settlement_id));
    if (st.column_text(0) == "paid") return Receipt::decode(st.column_blob(10));
    if (st.column_text(0) != "charging") return make_error(Errc::invalid_argument, "settlement " + std::to_string(settlement_id) + " is not being paid");
    auto s = entitlement::SpendAuthorization::decode(st.column_blob(1));
    if (!s) return s.error();
    spend = *s;
    amount = money_of(st, 2, 3);
    stb_id = static_cast<std::uint32_t>(st.column_int(4));
    kind = static_cast<SettlementKind>(st.column_int(5));
    if (!st.column_is_null(6)) sealed = st.column_blob(6);
    first = static_cast<std::uint64_t>(st.column_int(7));
    last = static_cast<std::uint64_t>(st.column_int(8));
    card_id = static_cast<std::uint64_t>(st.column_int(9));
  }
  // The charge, through the engine's ledger, once per settlement and spend.
  const auto rid = charge_request_id(settlement_id, spend);
  const auto payee = entitlement::settlement_payee(settlement_id, stb_id);
  auto charged = engine_.once(rid, [&]() -> Result<std::vector<std::uint8_t>> {
    auto bal = engine_.charge_settlement(spend, amount, payee);
    if (!bal) return bal.error();
    return entitlement::encode_money(*bal);
  });
  if (!charged) {
    if (charged.error().code != Errc::storage && charged.error().code != Errc::io) {
      // Refused for good (a bad signature, too small a balance): back to a quote, nothing charged.
      auto upd = db_.prepare("UPDATE settlements SET state = 'quoted', spend = NULL WHERE settlement_id = ? AND state = 'charging'");
      upd.bind(1, static_cast<std::int64_t>(settlement_id));
      upd.run();
    }
    return charged.error();
  }
  if (spend.card_id != card_id && card_id != 0) {
    // Paid by another card than the relaying handset's: fine (a gift), but the receipt names the payer.
    card_id = spend.card_id;
  }
  sql::Transaction tx(db_);
  Result<Receipt> rc = make_error(Errc::storage, "settlement not finished");
  if (kind == SettlementKind::prepayment) {
    auto st = db_.prepare("INSERT INTO stbs (stb_id, settled_hash, prepaid_minor, prepaid_currency) VALUES (?, zeroblob(32), ?, ?) "
                          "ON CONFLICT (stb_id) DO UPDATE SET prepaid_minor = prepaid_minor + excluded.prepaid_minor, "
                          "prepaid_currency = excluded.prepaid_currency");
    st.bind(1, stb_id).bind(2, amount.minor).bind(3, entitlement::to_string(amount.currency));
    st.run();
    Receipt r;
    r.kind = kind;
    r.receipt_id = settlement_id;
    r.stb_id = stb_id;
    r.amount = amount;
    r.card_id = spend.card_id;
    r.issued = now;
    r.certificate = certificate_;
    r.sign(signing_private());
    auto upd = db_.prepare("UPDATE settlements SET state = 'paid', receipt = ?, paid = ?, card_id = ? WHERE settlement_id = ?");
    upd.bind(1, r.encode()).bind(2, static_cast<std::int64_t>(now)).bind(3, static_cast<std::int64_t>(spend.card_id))
        .bind(4, static_cast<std::int64_t>(settlement_id));
    upd.run();
    rc = r;
  } else {
    auto opened = engine_.open_sealed_history(sealed);
    if (!opened) return opened.error();
    std::vector<HistoryRecord> records;
    for (const auto& r : opened->records) {
      if (r.sequence >= first && r.sequence <= last) records.push_back(r);
    }
    rc = settle_records(kind, stb_id, records, {}, amount, spend.card_id, 0, settlement_id, now);
  }
  if (!rc) return rc;
  tx.commit();
  return rc;
}

Result<Receipt> BillingStore::settle_records(SettlementKind kind, std::uint32_t stb_id, const std::vector<HistoryRecord>& records,
                                             const std::vector<Money>& /*prices*/, const Money& amount, std::uint64_t card_id,
                                             std::uint64_t stay_id, std::uint64_t settlement_id, std::uint64_t now) {
  // Called inside a transaction. The records follow the STB's cursor (checked by check_history).
  if (records.empty()) return make_error(Errc::invalid_argument, "nothing to settle");
  const auto& last = records.back();
  const auto last_hash = last.hash();
  if (settlement_id == 0) {
    auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                           "card_id, stay_id, state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'charging', ?)");
    ins.bind(1, static_cast<std::int64_t>(kind)).bind(2, stb_id).bind(3, static_cast<std::int64_t>(records.front().sequence))
        .bind(4, static_cast<std::int64_t>(last.sequence)).bind(5, bytes_of(last_hash)).bind(6, amount.minor)
        .bind(7, entitlement::to_string(amount.currency)).bind(8, static_cast<std::int64_t>(card_id))
        .bind(9, static_cast<std::int64_t>(stay_id)).bind(10, static_cast<std::int64_t>(now));
    ins.run();
    settlement_id = static_cast<std::uint64_t>(db_.last_insert_rowid());
  }
  std::int64_t prepaid_used = 0;
  {
    auto ins = db_.prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : records) {
      auto ev = engine_.event(r.event_id);
      const auto h = r.hash();
      ins.reset();
      ins.bind(1, stb_id).bind(2, static_cast<std::int64_t>(r.sequence)).bind(3, bytes_of(h)).bind(4, static_cast<std::int64_t>(r.time))
          .bind(5, r.event_id).bind(6, ev ? ev->title : "event " + std::to_string(r.event_id)).bind(7, r.payment)
          .bind(8, static_cast<std::int64_t>(r.stay_id)).bind(9, r.price.minor).bind(10, entitlement::to_string(r.price.currency))
          .bind(11, static_cast<std::int64_t>(settlement_id));
      ins.run();
      if (r.payment == entitlement::kPaymentPrepaid) prepaid_used += r.price.minor;
    }
  }
  {
    auto st = db_.prepare("INSERT INTO stbs (stb_id, settled_sequence, settled_hash) VALUES (?, ?, ?) ON CONFLICT (stb_id) DO UPDATE SET "
                          "settled_sequence = excluded.settled_sequence, settled_hash = excluded.settled_hash");
    st.bind(1, stb_id).bind(2, static_cast<std::int64_t>(last.sequence)).bind(3, bytes_of(last_hash));
    st.run();
  }
  if (prepaid_used > 0) {
    // Records paid from prepaid credit use up what billing sold the STB; more than that would be a
    // forgery or a bug, and the CHECK refuses it.
    try {
      auto st = db_.prepare("UPDATE stbs SET prepaid_minor = prepaid_minor - ? WHERE stb_id = ?");
      st.bind(1, prepaid_used).bind(2, stb_id);
      st.run();
    } catch (const std::exception&) {
      return make_error(Errc::not_entitled, "STB " + std::to_string(stb_id) + " used more prepaid credit than it was sold");
    }
  }
  Receipt r;
  r.kind = kind;
  r.receipt_id = settlement_id;
  r.stb_id = stb_id;
  r.first_sequence = records.front().sequence;
  r.last_sequence = last.sequence;
  r.last_hash = last_hash;
  r.amount = amount;
  r.card_id = card_id;
  r.stay_id = stay_id;
  r.issued = now;
  r.certificate = certificate_;
  r.sign(signing_private());
  auto upd = db_.prepare("UPDATE settlements SET state = 'paid', receipt = ?, paid = ?, card_id = ? WHERE settlement_id = ?");
  upd.bind(1, r.encode()).bind(2, static_cast<std::int64_t>(now)).bind(3, static_cast<std::int64_t>(card_id))
      .bind(4, static_cast<std::int64_t>(settlement_id));
  upd.run();
  return r;
}

std::size_t BillingStore::recover(std::uint64_t now) {
  std::vector<std::uint64_t> open;
  {
    auto st = db_.prepare("SELECT settlement_id FROM settlements WHERE state = 'charging'");
    while (st.step()) open.push_back(static_cast<std::uint64_t>(st.column_int(0)));
  }
  std::size_t done = 0;
  for (auto id : open) {
    if (finish(id, now)) ++done;
  }
  return done;
}

// --- Hotel ---

Status BillingStore::set_hotel_credit(const Money& limit) {
  auto st = db_.prepare("INSERT OR REPLACE INTO config VALUES ('hotel_credit', ?)");
  st.bind(1, std::to_string(limit.minor) + " " + entitlement::to_string(limit.currency));
  st.run();
  return ok_status();
}

Result<Money> BillingStore::hotel_credit() {
  auto st = db_.prepare("SELECT value FROM config WHERE key = 'hotel_credit'");
  if (!st.step()) return make_error(Errc::not_found, "no hotel credit limit set (`usher billing hotel config --credit 100.00 --currency EUR`)");
  const auto v = st.column_text(0);
  const auto sp = v.find(' ');
  auto cur = entitlement::parse_currency(v.substr(sp + 1));
  if (!cur) return cur.error();
  return Money{std::stoll(v.substr(0, sp)), *cur};
}

Status BillingStore::add_room(const std::string& room, std::uint32_t stb_id, const std::string& link_endpoint) {
  auto known = engine_.stbs();
  if (std::none_of(known.begin(), known.end(), [&](const auto& s) { return s.stb_id == stb_id; })) {
    return make_error(Errc::not_found, "no STB " + std::to_string(stb_id) + " registered with the operator");
  }
  try {
    auto st = db_.prepare("INSERT INTO rooms (room, stb_id, link_endpoint) VALUES (?, ?, ?)");
    st.bind(1, room).bind(2, stb_id).bind(3, link_endpoint);
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::already_exists, "room " + room + " or STB " + std::to_string(stb_id) + " is already set up");
  }
  return ok_status();
}

namespace {
constexpr const char* kRoomColumns =
    "r.room, r.stb_id, r.link_endpoint, COALESCE((SELECT stay_id FROM stays s WHERE s.room = r.room AND s.checkout = 0), 0), "
    "r.pending_state IS NOT NULL";
Room room_from(const sql::Statement& st) {
  return Room{st.column_text(0), static_cast<std::uint32_t>(st.column_int(1)), st.column_text(2),
              static_cast<std::uint64_t>(st.column_int(3)), st.column_int(4) != 0};
}
Stay stay_from(const sql::Statement& st) {
  return Stay{static_cast<std::uint64_t>(st.column_int(0)), st.column_text(1), st.column_text(2), st.column_text(3),
              static_cast<std::uint64_t>(st.column_int(4)), static_cast<std::uint64_t>(st.column_int(5))};
}
constexpr const char* kStayColumns = "stay_id, room, guest_id, guest_name, checkin, checkout";
}  // namespace

std::vector<Room> BillingStore::rooms() {
  std::vector<Room> out;
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r ORDER BY r.room");
  while (st.step()) out.push_back(room_from(st));
  return out;
}

Result<Room> BillingStore::room(const std::string& room) {
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r WHERE r.room = ?");
  st.bind(1, room);
  if (!st.step()) return make_error(Errc::not_found, "no room " + room + " (add it with `usher billing hotel room add`)");
  return room_from(st);
}

Result<Room> BillingStore::room_of_stb(std::uint32_t stb_id) {
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r WHERE r.stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return make_error(Errc::not_found, "STB " + std::to_string(stb_id) + " is not a hotel room STB");
  return room_from(st);
}

Result<Stay> BillingStore::check_in(const std::string& room_name, const std::string& guest_id, const std::string& guest_name,
                                    std::uint64_t now) {
  sql::Transaction tx(db_);
  auto r = room(room_name);
  if (!r) return r.error();
  if (r->stay_id != 0) {
    auto s = stay(r->stay_id);
    return make_error(Errc::already_exists, "room " + room_name + " is occupied by " + (s ? s->guest_name : "a guest") + ": check out first");
  }
  if (auto limit = hotel_credit(); !limit) return limit.error();
  auto st = db_.prepare("INSERT INTO stays (room, guest_id, guest_name, checkin) VALUES (?, ?, ?, ?)");
  st.bind(1, room_name).bind(2, guest_id).bind(3, guest_name).bind(4, static_cast<std::int64_t>(now));
  st.run();
  const auto id = static_cast<std::uint64_t>(db_.last_insert_rowid());
  tx.commit();
  return stay(id);
}

Result<std::vector<std::uint8_t>> BillingStore::room_state(const std::string& room_name, bool clear, const std::string& billing_endpoint) {
  sql::Transaction tx(db_);
  auto r = room(room_name);
  if (!r) return r.error();
  auto limit = hotel_credit();
  if (!limit) return limit.error();
  entitlement::RoomState state;
  state.stb_id = r->stb_id;
  state.stay_id = r->stay_id;
  state.credit_limit = *limit;
  state.clear = clear;
  // A clear the STB has not taken yet (it was away at check-out) still has to happen: the next
  // guest must not see the last one's tickets.
  if (auto pending = pending_room_state(room_name)) {
    if (auto old = entitlement::RoomState::decode(*pending); old && old->clear) state.clear = true;
  }
  state.billing_endpoint = billing_endpoint;
  state.certificate = certificate_;
  {
    auto st = db_.prepare("UPDATE rooms SET state_counter = state_counter + 1 WHERE room = ? RETURNING state_counter");
    st.bind(1, room_name);
    st.step();
    state.counter = static_cast<std::uint64_t>(st.column_int(0));
  }
  state.sign(signing_private());
  auto bytes = state.encode();
  auto st = db_.prepare("UPDATE rooms SET pending_state = ? WHERE room = ?");
  st.bind(1, bytes).bind(2, room_name);
  st.run();
  tx.commit();
  return bytes;
}

std::optional<std::vector<std::uint8_t>> BillingStore::pending_room_state(const std::string& room_name) {
  auto st = db_.prepare("SELECT pending_state FROM rooms WHERE room = ? AND pending_state IS NOT NULL");
  st.bind(1, room_name);
  if (!st.step()) return std::nullopt;
  return st.column_blob(0);
}

void BillingStore::mark_state_delivered(const std::string& room_name) {
  auto st = db_.prepare("UPDATE rooms SET pending_state = NULL WHERE room = ?");
  st.bind(1, room_name);
  st.run();
}

Result<Stay> BillingStore::close_stay(const std::string& room_name, std::uint64_t now) {
  auto r = room(room_name);
  if (!r) return r.error();
  if (r->stay_id == 0) return make_error(Errc::not_found, "room " + room_name + " is vacant: nobody to check out");
  auto st = db_.prepare("UPDATE stays SET checkout = ? WHERE stay_id = ?");
  st.bind(1, static_cast<std::int64_t>(now)).bind(2, static_cast<std::int64_t>(r->stay_id));
  st.run();
  return stay(r->stay_id);
}

Result<Stay> BillingStore::stay(std::uint64_t stay_id) {
  auto st = db_.prepare(std::string("SELECT ") + kStayColumns + " FROM stays WHERE stay_id = ?");
  st.bind(1, static_cast<std::int64_t>(stay_id));
  if (!st.step()) return make_error(Errc::not_found, "no stay " + std::to_string(stay_id));
  return stay_from(st);
}

std::vector<Stay> BillingStore::stays() {
  std::vector<Stay> out;
  auto st = db_.prepare(std::string("SELECT ") + kStayColumns + " FROM stays ORDER BY stay_id");
  while (st.step()) out.push_back(stay_from(st));
  return out;
}

Result<RelayReply> BillingStore::room_report(std::span<const std::uint8_t> sealed, std::uint64_t now) {
  sql::Transaction tx(db_);
  auto checked = check_history(sealed);
  if (!checked) return checked.error();
  auto room = room_of_stb(checked->stb_id);
  if (!room) return room.error();
  RelayReply reply;
  reply.receipts = std::move(checked->receipts);
  // One folio settlement per run of records of one stay.
  std::size_t i = 0;
  while (i < checked->fresh.size()) {
    const auto stay_id = checked->fresh[i].stay_id;
    std::vector<HistoryRecord> run;
    while (i < checked->fresh.size() && checked->fresh[i].stay_id == stay_id) run.push_back(checked->fresh[i++]);
    auto s = stay(stay_id);
    if (!s || s->room != room->room) {
      return make_error(Errc::not_entitled, "STB " + std::to_string(checked->stb_id) + " reports purchases for stay " +
                                                std::to_string(stay_id) + ", not a stay in room " + room->room);
    }
    Money amount{0, run.front().price.currency};
    for (const auto& r : run) {
      auto price = price_of(r);
      if (!price) return price.error();
      amount.minor += price->minor;
    }
    auto rc = settle_records(SettlementKind::folio, checked->stb_id, run, {}, amount, 0, stay_id, 0, now);
    if (!rc) return rc.error();
    // Each charge also goes to the hotel's PMS (a late charge if the guest has left).
    auto post = db_.prepare("INSERT INTO pms_postings (stay_id, room, guest_id, amount_minor, currency, description, time, stb_id, sequence) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : run) {
      auto ev = engine_.event(r.event_id);
      post.reset();
      post.bind(1, static_cast<std::int64_t>(stay_id)).bind(2, s->room).bind(3, s->guest_id).bind(4, r.price.minor)
          .bind(5, entitlement::to_string(r.price.currency)).bind(6, "PPV " + (ev ? ev->title : std::to_string(r.event_id)))
          .bind(7, static_cast<std::int64_t>(r.time)).bind(8, checked->stb_id).bind(9, static_cast<std::int64_t>(r.sequence));
      post.run();
    }
    reply.receipts.push_back(rc->encode());
  }
  tx.commit();
  return reply;
}

// --- Statements ---

namespace {
constexpr const char* kLineQuery =
    "SELECT r.time, r.stb_id, CASE WHEN r.payment = 1 THEN 'prepaid' WHEN s.kind = 3 THEN 'folio' ELSE 'deferred' END, r.title, "
    "r.event_id, r.sequence, r.settlement_id, r.price_minor, r.currency FROM records r JOIN settlements s USING (settlement_id) ";
StatementLine line_from(const sql::Statement& st) {
  StatementLine l;
  l.time = static_cast<std::uint64_t>(st.column_int(0));
  l.stb_id = static_cast<std::uint32_t>(st.column_int(1));
  l.kind = st.column_text(2);
  l.description = st.column_text(3);
  l.event_id = static_cast<std::uint32_t>(st.column_int(4));
  l.sequence = static_cast<std::uint64_t>(st.column_int(5));
  l.settlement_id = static_cast<std::uint64_t>(st.column_int(6));
  l.amount = money_of(st, 7, 8);
  return l;
}
void finish_statement(Statement& s) {
  std::stable_sort(s.lines.begin(), s.lines.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
  for (const auto& l : s.lines) {
    // Prepaid purchases were paid when the credit was bought: shown, not counted twice.
    if (l.kind != "prepaid") add_total(s.totals, l.amount);
  }
}
}  // namespace

Result<Statement> BillingStore::stb_statement(std::uint32_t stb_id) {
  Statement s;
  s.title = "STB " + std::to_string(stb_id);
  {
    auto st = db_.prepare(std::string(kLineQuery) + "WHERE r.stb_id = ? ORDER BY r.sequence");
    st.bind(1, stb_id);
    while (st.step()) s.lines.push_back(line_from(st));
  }
  {
    auto st = db_.prepare("SELECT paid, settlement_id, amount_minor, currency FROM settlements WHERE stb_id = ? AND kind = 2 AND state = 'paid'");
    st.bind(1, stb_id);
    while (st.step()) {
      StatementLine l;
      l.time = static_cast<std::uint64_t>(st.column_int(0));
      l.stb_id = stb_id;
      l.kind = "prepayment";
      l.description = "credit loaded into the STB";
      l.settlement_id = static_cast<std::uint64_t>(st.column_int(1));
      l.amount = money_of(st, 2, 3);
      s.lines.push_back(l);
    }
  }
  for (const auto& t : engine_.tickets()) {
    if (t.stb_id != stb_id) continue;
    auto ev = engine_.event(t.event_id);
    StatementLine l;
    l.stb_id = stb_id;
    l.kind = "cash";
    l.event_id = t.event_id;
    l.description = ev ? ev->title : "pass";
    if (ev) l.amount = ev->price;
    if (ev) l.time = ev->start;
    if (ev) s.lines.push_back(l);
  }
  finish_statement(s);
  return s;
}

Result<Statement> BillingStore::account_statement(const std::string& account) {
  Statement s;
  s.title = "Account " + account;
  for (auto stb : engine_.account_stbs(account)) {
    auto part = stb_statement(stb);
    if (part) s.lines.insert(s.lines.end(), part->lines.begin(), part->lines.end());
  }
  finish_statement(s);
  return s;
}

Result<Statement> BillingStore::folio(std::uint64_t stay_id) {
  auto stay_info = stay(stay_id);
  if (!stay_info) return stay_info.error();
  Statement s;
  s.title = "Folio " + std::to_string(stay_id) + ": " + stay_info->guest_name + " (guest " + stay_info->guest_id + "), room " +
            stay_info->room + ", in " + format_utc(stay_info->checkin, kStatementTime) +
            (stay_info->checkout != 0 ? ", out " + format_utc(stay_info->checkout, kStatementTime) : std::string(", checked in"));
  auto st = db_.prepare(std::string(kLineQuery) + "WHERE s.kind = 3 AND s.stay_id = ? ORDER BY r.time, r.sequence");
  st.bind(1, static_cast<std::int64_t>(stay_id));
  while (st.step()) s.lines.push_back(line_from(st));
  finish_statement(s);
  return s;
}

// --- PMS outbox ---

std::vector<PmsPosting> BillingStore::pms_postings(bool open_only) {
  std::vector<PmsPosting> out;
  auto st = db_.prepare(std::string("SELECT posting_id, stay_id, room, guest_id, amount_minor, currency, description, time, state, attempts, "
                                    "answer FROM pms_postings ") +
                        (open_only ? "WHERE state = 'pending' " : "") + "ORDER BY posting_id");
  while (st.step()) {
    PmsPosting p;
    p.posting_id = static_cast<std::uint64_t>(st.column_int(0));
    p.stay_id = static_cast<std::uint64_t>(st.column_int(1));
    p.room = st.column_text(2);
    p.guest_id = st.column_text(3);
    p.amount = money_of(st, 4, 5);
    p.description = st.column_text(6);
    p.time = static_cast<std::uint64_t>(st.column_int(7));
    p.state = st.column_text(8);
    p.attempts = static_cast<int>(st.column_int(9));
    p.answer = st.column_text(10);
    out.push_back(p);
  }
  return out;
}

void BillingStore::pms_attempted(std::uint64_t posting_id) {
  auto st = db_.prepare("UPDATE pms_postings SET attempts = attempts + 1 WHERE posting_id = ?");
  st.bind(1, static_cast<std::int64_t>(posting_id));
  st.run();
}

void BillingStore::pms_answered(std::uint64_t posting_id, bool accepted, const std::string& answer, bool final) {
  auto st = db_.prepare("UPDATE pms_postings SET state = ?, answer = ? WHERE posting_id = ? AND state = 'pending'");
  st.bind(1, accepted ? "ok" : (final ? "refused" : "pending")).bind(2, answer).bind(3, static_cast<std::int64_t>(posting_id));
  st.run();
}

}  // namespace usher::billing
