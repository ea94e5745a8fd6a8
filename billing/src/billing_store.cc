// BillingStore: the books, and F4 settlement and prepayment (relay, quote, pay once, receipts).
// The hotel part is in hotel_books.cc, statements in statement.cc.
#include "usher/billing/billing_store.h"
#include "usher/core/store_database.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string_view>

#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/core/home.h"
#include "usher/entitlement/protocol.h"
#include "columns.h"

namespace usher::billing {
namespace fs = std::filesystem;
using entitlement::HistoryRecord;
using entitlement::Receipt;
using entitlement::RelayReply;
using entitlement::SettlementKind;

namespace {

std::span<const std::uint8_t> bytes_of(const crypto::Digest& d) { return {d.data(), d.size()}; }

// The engine request ids a settlement's charge, and its refund when the records it paid for were
// settled by another path, run under: the same for every attempt at the same spend, so that a retry
// after a crash gets the engine's stored answer instead of a second debit (or credit).
entitlement::RequestId settlement_request_id(std::string_view domain, std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend) {
  ByteWriter w;
  w.bytes({reinterpret_cast<const std::uint8_t*>(domain.data()), domain.size()});
  w.u64(settlement_id);
  w.bytes(spend.nonce);
  const auto d = crypto::sha256(w.data());
  entitlement::RequestId id{};
  std::copy_n(d.begin(), id.size(), id.begin());
  return id;
}
entitlement::RequestId charge_request_id(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend) {
  return settlement_request_id("usher-settle", settlement_id, spend);
}
entitlement::RequestId refund_request_id(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend) {
  return settlement_request_id("usher-refund", settlement_id, spend);
}

// An answer of the engine's that says nothing about the request (it did not answer, or could not
// store): the request stays to be tried again.
bool engine_unavailable(const Error& e) { return e.code == Errc::io || e.code == Errc::storage || e.code == Errc::busy; }

}  // namespace

const char* to_string(SettlementState state) { return stored_name(kSettlementStates, state); }
const char* to_string(PmsPostingState state) { return stored_name(kPmsPostingStates, state); }

BillingStore::BillingStore(sql::Database db, EngineClient engine, entitlement::BillingCertificate cert, bool certified,
                           Secret<32> sealing_private)
    : db_(std::move(db)), engine_(std::move(engine)), certificate_(cert), certified_(certified), sealing_private_(std::move(sealing_private)) {}

// Step 1 is the schema of the stores written before versions were kept (user_version 0), in
// IF NOT EXISTS statements so that such a file is recognised as schema 1 and kept as it is.
// Add a step at the end to change the schema; never edit one that has shipped.
const sql::Schema& BillingStore::schema() {
  static const sql::Schema kSchema("billing store", {{1, "billing's tables", sql::sql_steps(R"(
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
    CREATE TABLE IF NOT EXISTS pms_link (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      pms TEXT NOT NULL,
      condition TEXT NOT NULL,
      since INTEGER NOT NULL,
      last_error TEXT NOT NULL,
      last_error_at INTEGER NOT NULL,
      failed_attempts INTEGER NOT NULL,
      recorded INTEGER NOT NULL);
  )")},
      // Billing as the engine's client: it keeps where the engine listens and the operator's public
      // identity (to check what the engine's replies carry), no longer the engine's home. A store
      // of step 1 takes the identity from the operator.pub in the home it named.
      {2, "the engine's endpoint and the operator's public identity instead of the engine's home", [](sql::Database& db) {
         db.exec("ALTER TABLE identity ADD COLUMN engine_endpoint TEXT NOT NULL DEFAULT 'tcp://127.0.0.1:7700'; "
                 "ALTER TABLE identity ADD COLUMN ca_system_id INTEGER NOT NULL DEFAULT 0; "
                 "ALTER TABLE identity ADD COLUMN operator_x25519 BLOB; "
                 "ALTER TABLE identity ADD COLUMN operator_ed25519 BLOB;");
         std::string engine_home;
         {
           auto st = db.prepare("SELECT engine_home FROM identity WHERE id = 1");
           if (st.step()) engine_home = st.column_text(0);
         }
         if (!engine_home.empty()) {
           const auto pub_path = (fs::path(engine_home) / entitlement::OperatorPublicFile::kFileName).string();
           auto op = entitlement::OperatorPublicFile::read(pub_path);
           if (!op) throw std::runtime_error("cannot read the operator's public identity " + pub_path + ": " + op.error().message);
           auto st = db.prepare("UPDATE identity SET ca_system_id = ?, operator_x25519 = ?, operator_ed25519 = ? WHERE id = 1");
           st.bind(1, op->ca_system_id).bind(2, op->x25519_public).bind(3, op->ed25519_public);
           st.run();
         }
         db.exec("ALTER TABLE identity DROP COLUMN engine_home");
       }},
      // Billing's own X25519 key, which STBs seal their history for, so that no key of the
      // operator's is needed to read them. A billing made before it gets one here; its certificate
      // (version 1) names none until the operator certifies billing.pub again.
      {3, "billing's X25519 key", [](sql::Database& db) {
         db.exec("ALTER TABLE identity ADD COLUMN x25519_private BLOB");
         auto st = db.prepare("UPDATE identity SET x25519_private = ? WHERE id = 1");
         st.bind(1, crypto::X25519KeyPair::generate().private_key.bytes());
         st.run();
       }}});
  return kSchema;
}

namespace {

const StoreNames kStoreNames{BillingStore::kDatabaseName, "billing"};
constexpr const char* kKeyFileFields[] = {"ed25519_private", "x25519_private"};

std::vector<std::uint8_t> key_bytes(const Secret<32>& key) { return {key.bytes().begin(), key.bytes().end()}; }

}  // namespace

Result<BillingStore> BillingStore::create(const std::string& home, std::uint32_t billing_id, const entitlement::OperatorPublicFile& op,
                                          const std::string& engine_endpoint, const std::string& database_url) {
  if (has_store_database(home, kStoreNames)) return make_error(Errc::already_exists, "a billing service is already initialised in " + home);
  if (engine_endpoint.empty()) return make_error(Errc::invalid_argument, "billing needs the engine's endpoint");
  return making_store_home(home, database_url, [&] { return create_in(home, billing_id, op, engine_endpoint); });
}

Result<BillingStore> BillingStore::create_in(const std::string& home, std::uint32_t billing_id, const entitlement::OperatorPublicFile& op,
                                             const std::string& engine_endpoint) {
  USHER_TRY(auto db, open_store_database(home, kStoreNames, IfMissing::create));
  USHER_CHECK(schema().migrate(db, db.where()));
  // On a database server billing's private keys stay in the home (billing.key), never in the database.
  const bool keys_in_home = db.dialect() != sql::Dialect::sqlite;
  // Two key pairs: Ed25519 signs receipts and room states, X25519 is what STBs seal history for.
  // Until the operator's certificate is installed, an unsigned one naming them stands in for it.
  auto keys = crypto::Ed25519KeyPair::generate();
  auto sealing = crypto::X25519KeyPair::generate();
  entitlement::BillingCertificate uncertified;
  uncertified.billing_id = billing_id;
  uncertified.billing_public = keys.public_key;
  uncertified.billing_x25519 = sealing.public_key;
  const std::vector<std::uint8_t> none;
  USHER_CHECK(db.atomically(
      [&] {
        auto existing = db.prepare("SELECT 1 FROM identity");
        if (existing.step()) throw std::runtime_error("it already holds a billing (use that billing's home, with its keys)");
        auto st = db.prepare("INSERT INTO identity (id, billing_id, ed25519_private, certificate, engine_endpoint, ca_system_id, "
                             "operator_x25519, operator_ed25519, x25519_private) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)");
        st.bind(1, billing_id).bind(2, keys_in_home ? std::span<const std::uint8_t>(none) : keys.private_key.bytes())
            .bind(3, uncertified.encode()).bind(4, engine_endpoint).bind(5, op.ca_system_id).bind(6, op.x25519_public)
            .bind(7, op.ed25519_public).bind(8, keys_in_home ? std::span<const std::uint8_t>(none) : sealing.private_key.bytes());
        st.run();
      },
      "cannot make billing's identity in " + db.where()));
  if (keys_in_home) {
    USHER_CHECK(write_key_file((fs::path(home) / kKeyName).string(),
                               "Usher billing private keys: keep this file secret, and on the billings of this id only",
                               {{kKeyFileFields[0], key_bytes(keys.private_key)}, {kKeyFileFields[1], key_bytes(sealing.private_key)}}));
  }
  const entitlement::BillingPublicFile pub{billing_id, keys.public_key, sealing.public_key};
  USHER_CHECK(pub.write((fs::path(home) / kPublicName).string()));
  BillingStore store(std::move(db), EngineClient(engine_endpoint, billing_id, keys.private_key.clone(), op.ed25519_public), uncertified,
                     false, std::move(sealing.private_key));
  if (keys_in_home) store.signing_private_ = keys.private_key.clone();
  return store;
}

Result<BillingStore> BillingStore::open(const std::string& home, const std::string& engine_endpoint, net::ClientOptions engine_options) {
  if (!has_store_database(home, kStoreNames)) {
    return make_error(Errc::not_found, "no billing service in " + home + " (run `usher billing init` first)");
  }
  USHER_TRY(auto db, open_store_database(home, kStoreNames, IfMissing::refuse));
  const std::string path = db.where();
  USHER_CHECK(schema().migrate(db, path));
  std::string endpoint;
  std::vector<std::uint8_t> cert_bytes;
  std::vector<std::uint8_t> operator_ed25519;
  std::optional<Secret<32>> signing;
  std::optional<Secret<32>> sealing;
  const bool keys_in_home = db.dialect() != sql::Dialect::sqlite;
  {
    auto st = db.prepare("SELECT engine_endpoint, certificate, operator_ed25519, ed25519_private, x25519_private FROM identity WHERE id = 1");
    if (!st.step()) return make_error(Errc::storage, path + " has no billing identity");
    endpoint = st.column_text(0);
    cert_bytes = st.column_blob(1);
    if (!st.column_is_null(2)) operator_ed25519 = st.column_blob(2);
    if (!keys_in_home) {
      signing = st.column_key(3);
      sealing = st.column_key(4);
    }
  }
  USHER_TRY(auto cert, entitlement::BillingCertificate::decode(cert_bytes));
  if (keys_in_home) {
    const auto key_path = (fs::path(home) / kKeyName).string();
    auto fields = read_key_file(key_path, {kKeyFileFields[0], kKeyFileFields[1]});
    if (!fields) {
      return make_error(Errc::storage, fields.error().message + ": billing's keys on a database server are kept in the home " +
                                           "(copy the home that `usher billing init --db` made)");
    }
    signing = Key256(std::span<const std::uint8_t, 32>((*fields)[kKeyFileFields[0]].data(), 32));
    sealing = Key256(std::span<const std::uint8_t, 32>((*fields)[kKeyFileFields[1]].data(), 32));
    // The keys must be those the certificate names: a home of another billing is refused.
    if (crypto::ed25519_public(*signing) != cert.billing_public ||
        (cert.billing_x25519 != crypto::PublicKey{} && crypto::x25519_public(*sealing) != cert.billing_x25519)) {
      return make_error(Errc::storage, "the billing keys in " + key_path + " are not those of the billing in " + path + ": refused");
    }
  }
  crypto::PublicKey op_signing{};
  if (operator_ed25519.size() != op_signing.size()) return make_error(Errc::storage, path + " does not hold the operator's public identity");
  std::copy(operator_ed25519.begin(), operator_ed25519.end(), op_signing.begin());
  // Not so for the unsigned certificate `billing init` writes, until the operator's is installed.
  const bool certified = cert.verify(op_signing);
  if (!engine_endpoint.empty()) endpoint = engine_endpoint;
  std::optional<Secret<32>> kept_signing;
  if (keys_in_home) kept_signing = signing->clone();
  EngineClient engine(endpoint, cert.billing_id, std::move(*signing), op_signing, engine_options);
  BillingStore store(std::move(db), std::move(engine), cert, certified, std::move(*sealing));
  if (kept_signing) store.signing_private_ = std::move(kept_signing);
  // A billing made by an older Usher had no billing.pub (nor an X25519 key): written here, for the
  // operator to certify its keys again.
  if (const auto pub_path = (fs::path(home) / kPublicName).string(); !fs::exists(pub_path)) {
    USHER_CHECK(store.public_file().write(pub_path));
  }
  return store;
}

Secret<32> BillingStore::signing_private() {
  if (signing_private_) return signing_private_->clone();
  auto st = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
  st.step();
  signing_private_ = st.column_key(0);
  return signing_private_->clone();
}

entitlement::BillingPublicFile BillingStore::public_file() const {
  return {certificate_.billing_id, certificate_.billing_public, crypto::x25519_public(sealing_private_)};
}

Status BillingStore::check_certified() const {
  if (certified_) return ok_status();
  return make_error(Errc::not_entitled, "billing " + std::to_string(certificate_.billing_id) +
                                            " is not certified yet: give its billing.pub to the operator (usher entitlement billing add "
                                            "--public-file), then install the certificate it makes (usher billing certify --certificate)");
}

Status BillingStore::install_certificate(const entitlement::BillingCertificate& certificate) {
  if (!certificate.verify(engine_.operator_signing_public())) {
    return make_error(Errc::auth_failed, "that certificate is not signed by this billing's operator (the operator.pub it was made with): "
                                         "not installed");
  }
  auto sealing = certificate.sealing_key();
  if (!sealing) return make_error(Errc::invalid_argument, sealing.error().message);
  const auto mine = public_file();
  if (certificate.billing_id != mine.billing_id || certificate.billing_public != mine.ed25519_public || *sealing != mine.x25519_public) {
    return make_error(Errc::invalid_argument, "that certificate is for billing " + std::to_string(certificate.billing_id) +
                                                  " with other keys than this billing's (" + std::to_string(mine.billing_id) +
                                                  "): certify this billing's billing.pub");
  }
  auto upd = db_.prepare("UPDATE identity SET certificate = ? WHERE id = 1");
  upd.bind(1, certificate.encode());
  upd.run();
  certificate_ = certificate;
  certified_ = true;
  return ok_status();
}

Result<BillingStore::OpenedHistory> BillingStore::open_sealed(std::span<const std::uint8_t> sealed) {
  USHER_TRY(auto header, entitlement::sealed_history_header(sealed));
  // The certificate STBs seal for must name the X25519 key billing holds: one from an older Usher
  // names none (version 1), and until the operator's is installed billing has none at all.
  const auto certified_sealing = certificate_.sealing_key();
  if (!certified_ || !certified_sealing || *certified_sealing != crypto::x25519_public(sealing_private_)) {
    return make_error(Errc::not_entitled, "billing " + std::to_string(certificate_.billing_id) +
                                              " has no certified X25519 key to open histories with (not certified yet, or certified "
                                              "by an older Usher): have the operator certify its billing.pub (usher entitlement billing "
                                              "add --public-file) and install it (usher billing certify --certificate)");
  }
  USHER_TRY(auto records, entitlement::open_history(sealed, certificate_.billing_id, sealing_private_));
  auto stb_public = engine_.stb_key(header.stb_id);
  if (!stb_public) {
    if (stb_public.error().code != Errc::not_found) return stb_public.error();
    return make_error(Errc::not_entitled, "history from an unknown STB " + std::to_string(header.stb_id));
  }
  return OpenedHistory{header.stb_id, *stb_public, std::move(records)};
}

entitlement::LinkSigner BillingStore::link_signer(std::uint32_t stb_id) {
  (void)signing_private();  // loads the cached key the signer points to
  return {stb_id, certificate_.encode(), &*signing_private_};
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
  auto st = db_.prepare("SELECT COALESCE(SUM(amount_minor), 0) FROM settlements WHERE stb_id = ? AND state = " + sql_value(SettlementState::paid) + " AND kind = " + sql_value(SettlementKind::deferred));
  st.bind(1, stb_id);
  st.step();
  return st.column_int(0);
}

Result<Money> BillingStore::price_of(std::uint32_t stb_id, const HistoryRecord& r, std::string* reason) {
  // The engine's catalogue is the price list; the price the STB recorded is what it showed the
  // viewer and must agree with it.
  auto ev = engine_.event(r.event_id);
  if (!ev) {
    if (ev.error().code != Errc::not_found) return ev.error();
    return make_error(Errc::not_found, "history record " + std::to_string(r.sequence) + " names event " + std::to_string(r.event_id) +
                                           ", unknown to the catalogue");
  }
  if (ev->price.currency != r.price.currency || ev->price.minor != r.price.minor) {
    return make_error(Errc::not_entitled, "history record " + std::to_string(r.sequence) + ": event " + std::to_string(r.event_id) +
                                              " costs " + entitlement::format_money(ev->price) + ", the STB recorded " +
                                              entitlement::format_money(r.price));
  }
  // One sale per entitlement: a ticket the engine sold the STB for the event (before the impulse
  // purchase reached billing) was paid already. A prepaid record was paid when the credit was sold.
  if (r.payment != entitlement::kPaymentPrepaid) {
    USHER_TRY(auto held, engine_.holding(stb_id, r.event_id));
    if (held && (held)->ticket_id != 0) {
      if (reason) *reason = "already paid with ticket " + std::to_string((held)->ticket_id);
      return Money{0, ev->price.currency};
    }
  }
  return ev->price;
}

Status BillingStore::check_no_payment_under_way(std::uint32_t stb_id) {
  auto busy = db_.prepare("SELECT settlement_id FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::deferred) + " AND state = " + sql_value(SettlementState::charging));
  busy.bind(1, stb_id);
  if (busy.step()) {
    return make_error(Errc::stale, "STB " + std::to_string(stb_id) + "'s history is being paid by handset (settlement " +
                                       std::to_string(busy.column_int(0)) + "): report again once it is done");
  }
  return ok_status();
}

Status BillingStore::set_quote_ttl(std::uint64_t seconds) {
  if (seconds == 0 || seconds > 7 * 86400) return make_error(Errc::invalid_argument, "a quote lasts 1 second to 7 days");
  auto st = db_.prepare("INSERT INTO config VALUES ('quote_ttl', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  st.bind(1, std::to_string(seconds));
  st.run();
  return ok_status();
}

std::uint64_t BillingStore::quote_ttl() {
  auto st = db_.prepare("SELECT value FROM config WHERE key = 'quote_ttl'");
  if (!st.step()) return kDefaultQuoteTtlSeconds;
  try {
    return std::stoull(st.column_text(0));
  } catch (const std::exception&) {
    return kDefaultQuoteTtlSeconds;
  }
}

Result<BillingStore::Checked> BillingStore::check_history(std::span<const std::uint8_t> sealed) {
  USHER_TRY(auto opened, open_sealed(sealed));
  Checked out;
  out.stb_id = opened.stb_id;
  const auto cur = cursor(opened.stb_id);
  std::size_t i = 0;
  // Records billing has settled already but the STB still holds as unsettled: its receipt was lost
  // on the way back. They must be the very records billing settled; their receipts go back again.
  auto settled = db_.prepare("SELECT r.hash, s.receipt FROM records r JOIN settlements s USING (settlement_id) "
                             "WHERE r.stb_id = ? AND r.sequence = ?");
  for (; i < opened.records.size() && opened.records[i].sequence <= cur.sequence; ++i) {
    const auto& r = opened.records[i];
    settled.reset();
    settled.bind(1, out.stb_id).bind(2, static_cast<std::int64_t>(r.sequence));
    if (!settled.step()) return make_error(Errc::stale, "history record " + std::to_string(r.sequence) + " of STB " + std::to_string(out.stb_id) +
                                                       " was settled elsewhere or never seen: a replay or a reordering");
    if (digest_of(settled.column_blob(0)) != r.hash()) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " differs from the one billing settled");
    }
    auto receipt = settled.column_blob(1);
    if (std::find(out.receipts.begin(), out.receipts.end(), receipt) == out.receipts.end()) out.receipts.push_back(std::move(receipt));
  }
  out.fresh.assign(opened.records.begin() + static_cast<std::ptrdiff_t>(i), opened.records.end());
  if (!out.fresh.empty() && out.receipts.empty() && out.fresh.front().sequence > cur.sequence + 1) {
    return make_error(Errc::stale, "history of STB " + std::to_string(out.stb_id) + " starts at record " +
                                       std::to_string(out.fresh.front().sequence) + " but billing expects " +
                                       std::to_string(cur.sequence + 1) + ": records are missing");
  }
  USHER_CHECK(entitlement::verify_history(out.fresh, opened.stb_public, cur.sequence, cur.hash));
  // The engine learns what the STB bought on impulse, so that no handset sells it the event again.
  // A hotel room's purchases belong to the stay (the next guest may buy the same event).
  std::vector<HistoryRecord> at_home;
  for (const auto& r : out.fresh) {
    if (r.stay_id == 0) at_home.push_back(r);
  }
  USHER_CHECK(engine_.record_impulse_purchases(out.stb_id, at_home));
  return out;
}

Result<RelayReply> BillingStore::relay(std::span<const std::uint8_t> sealed, std::uint64_t card_id, std::uint64_t now) {
  // A settlement of this STB left half done is finished first, so the cursor is right. Inside a
  // group the caller did that before the group began: a settlement marked "charging" within the
  // group is not durable yet, so it must not be charged.
  if (!db_.in_transaction()) {
    if (auto stb = entitlement::sealed_history_stb(sealed); stb) finish_interrupted(*stb, now);
  }
  sql::Transaction tx(db_);
  USHER_TRY(auto checked, check_history(sealed));
  RelayReply reply;
  reply.receipts = std::move(checked.receipts);
  if (checked.fresh.empty()) return reply;
  if (room_of_stb(checked.stb_id) && card_id == 0) {
    return make_error(Errc::invalid_argument, "STB " + std::to_string(checked.stb_id) + " is a hotel room STB: use room_report");
  }
  Money amount{0, checked.fresh.front().price.currency};
  Money prepaid_used{0, amount.currency};
  for (const auto& r : checked.fresh) {
    USHER_TRY(auto price, price_of(checked.stb_id, r));
    if (price.currency != amount.currency) return make_error(Errc::invalid_argument, "a history in more than one currency");
    (r.payment == entitlement::kPaymentPrepaid ? prepaid_used : amount).minor += price.minor;
  }
  const auto& last = checked.fresh.back();
  const auto last_hash = last.hash();
  if (amount.minor == 0) {
    // All paid from prepaid credit: settled at once, nothing to charge.
    USHER_TRY(auto rc, settle_records(SettlementKind::deferred, checked.stb_id, checked.fresh, amount, card_id, 0, 0, now));
    tx.commit();
    reply.receipts.push_back(rc.encode());
    return reply;
  }
  std::uint64_t id = 0;
  // Quotes created at or before this time have expired.
  const auto ttl = quote_ttl();
  const auto expired = static_cast<std::int64_t>(now > ttl ? now - ttl : 0);
  {
    auto same = db_.prepare("SELECT settlement_id FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::deferred) + " AND state = " + sql_value(SettlementState::quoted) + " AND "
                            "first_sequence = ? AND last_sequence = ? AND last_hash = ? AND card_id = ? AND created > ?");
    same.bind(1, checked.stb_id).bind(2, static_cast<std::int64_t>(checked.fresh.front().sequence))
        .bind(3, static_cast<std::int64_t>(last.sequence)).bind(4, bytes_of(last_hash)).bind(5, static_cast<std::int64_t>(card_id))
        .bind(6, expired);
    if (same.step()) id = static_cast<std::uint64_t>(same.column_int(0));
  }
  if (id == 0) {
    // This card's quote for fewer records (the history grew since) is superseded, and expired
    // quotes go; another card's live quote stays: it is that card's until it expires.
    auto drop = db_.prepare("DELETE FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::deferred) + " AND state = " + sql_value(SettlementState::quoted) + " AND (card_id = ? OR created <= ?)");
    drop.bind(1, checked.stb_id).bind(2, static_cast<std::int64_t>(card_id)).bind(3, expired);
    drop.run();
    auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                           "card_id, state, history, created) VALUES (" + sql_value(SettlementKind::deferred) + ", ?, ?, ?, ?, ?, ?, ?, " + sql_value(SettlementState::quoted) + ", ?, ?) RETURNING settlement_id");
    ins.bind(1, checked.stb_id).bind(2, static_cast<std::int64_t>(checked.fresh.front().sequence))
        .bind(3, static_cast<std::int64_t>(last.sequence)).bind(4, bytes_of(last_hash)).bind(5, amount.minor)
        .bind(6, entitlement::to_string(amount.currency)).bind(7, static_cast<std::int64_t>(card_id)).bind(8, sealed)
        .bind(9, static_cast<std::int64_t>(now));
    ins.step();
    id = static_cast<std::uint64_t>(ins.column_int(0));
    ins.run();
  }
  tx.commit();
  reply.has_quote = true;
  reply.quote = {id, SettlementKind::deferred, checked.stb_id, amount, checked.fresh.front().sequence, last.sequence,
                 entitlement::settlement_payee(id, checked.stb_id)};
  return reply;
}

Result<RelayReply> BillingStore::prepay(std::uint32_t stb_id, const Money& amount, std::uint64_t card_id, std::uint64_t now) {
  // A receipt under no certificate of the operator's would be refused by the STB after the card paid.
  USHER_CHECK(check_certified());
  if (amount.minor <= 0) return make_error(Errc::invalid_argument, "a prepayment must be positive");
  if (auto known = engine_.stb_key(stb_id); !known) {
    if (known.error().code == Errc::not_found) return make_error(Errc::not_entitled, "no STB " + std::to_string(stb_id));
    return known.error();
  }
  {
    // Prepayment quotes nobody paid go when they expire.
    const auto ttl = quote_ttl();
    auto drop = db_.prepare("DELETE FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::prepayment) + " AND state = " + sql_value(SettlementState::quoted) + " AND created <= ?");
    drop.bind(1, stb_id).bind(2, static_cast<std::int64_t>(now > ttl ? now - ttl : 0));
    drop.run();
  }
  auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                         "card_id, state, created) VALUES (" + sql_value(SettlementKind::prepayment) + ", ?, 0, 0, ?, ?, ?, ?, " + sql_value(SettlementState::quoted) +
                         ", ?) RETURNING settlement_id");
  const std::vector<std::uint8_t> no_hash(32, 0);
  ins.bind(1, stb_id).bind(2, no_hash).bind(3, amount.minor).bind(4, entitlement::to_string(amount.currency))
      .bind(5, static_cast<std::int64_t>(card_id)).bind(6, static_cast<std::int64_t>(now));
  ins.step();
  const auto id = static_cast<std::uint64_t>(ins.column_int(0));
  ins.run();
  RelayReply reply;
  reply.has_quote = true;
  reply.quote = {id, SettlementKind::prepayment, stb_id, amount, 0, 0, entitlement::settlement_payee(id, stb_id)};
  return reply;
}

Status BillingStore::batch(const std::function<void()>& work) { return db_.atomically(work, "billing could not store the change"); }

void BillingStore::finish_interrupted(std::uint32_t stb_id, std::uint64_t now) {
  std::vector<std::uint64_t> open;
  {
    auto st = db_.prepare("SELECT settlement_id FROM settlements WHERE stb_id = ? AND state = " + sql_value(SettlementState::charging));
    st.bind(1, stb_id);
    while (st.step()) open.push_back(static_cast<std::uint64_t>(st.column_int(0)));
  }
  for (auto id : open) {
    try {
      (void)finish(id, now);
    } catch (const std::exception&) {
      // Left as it is for the next attempt: one settlement must not stop the others.
    }
  }
}

Result<Receipt> BillingStore::pay(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend, std::uint64_t now) {
  USHER_TRY(auto started, start_payment(settlement_id, spend, now));
  if (started) return *started;
  return finish(settlement_id, now);
}

Result<std::optional<Receipt>> BillingStore::start_payment(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend,
                                                          std::uint64_t now) {
  sql::Transaction tx(db_);
  auto s = settlement(settlement_id);
  if (!s) return make_error(s.error().code, s.error().message + " (relay the history again)");
  if (s->state == SettlementState::paid) {  // a retry: the same receipt
    USHER_TRY(auto rc, Receipt::decode(s->receipt));
    return std::optional<Receipt>(rc);
  }
  if (s->state == SettlementState::charging) return std::optional<Receipt>();  // a retry while the charge is under way
  if (s->created + quote_ttl() < now) {
    return make_error(Errc::stale, "quote " + std::to_string(settlement_id) + " has expired: relay the history again");
  }
  if (s->kind == SettlementKind::deferred) {
    if (cursor(s->stb_id).sequence + 1 != s->first) {
      return make_error(Errc::stale, "settlement " + std::to_string(settlement_id) + " is out of date: relay the history again");
    }
    // One payment at a time for an STB's history: two quotes for the same records must not both be charged.
    auto busy = db_.prepare("SELECT 1 FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::deferred) + " AND state = " + sql_value(SettlementState::charging));
    busy.bind(1, s->stb_id);
    if (busy.step()) return make_error(Errc::stale, "another payment for STB " + std::to_string(s->stb_id) + "'s history is in progress: relay again");
  }
  auto upd = db_.prepare("UPDATE settlements SET state = " + sql_value(SettlementState::charging) + ", spend = ? WHERE settlement_id = ?");
  upd.bind(1, spend.encode()).bind(2, static_cast<std::int64_t>(settlement_id));
  upd.run();
  tx.commit();
  return std::optional<Receipt>();
}

Result<BillingStore::OpenSettlement> BillingStore::settlement(std::uint64_t settlement_id) {
  auto st = db_.prepare("SELECT state, spend, amount_minor, currency, stb_id, kind, history, first_sequence, last_sequence, "
                        "receipt, created FROM settlements WHERE settlement_id = ?");
  st.bind(1, static_cast<std::int64_t>(settlement_id));
  if (!st.step()) return make_error(Errc::not_found, "no settlement " + std::to_string(settlement_id));
  OpenSettlement s;
  USHER_TRY(auto state, settlement_state_of(st, 0));
  s.state = state;
  USHER_TRY(auto kind, settlement_kind_of(st, 5));
  s.kind = kind;
  if (s.state == SettlementState::charging) {
    USHER_TRY(auto spend, entitlement::SpendAuthorization::decode(st.column_blob(1)));
    s.spend = spend;
  }
  s.amount = money_of(st, 2, 3);
  s.stb_id = static_cast<std::uint32_t>(st.column_int(4));
  if (!st.column_is_null(6)) s.sealed = st.column_blob(6);
  s.first = static_cast<std::uint64_t>(st.column_int(7));
  s.last = static_cast<std::uint64_t>(st.column_int(8));
  if (!st.column_is_null(9)) s.receipt = st.column_blob(9);
  s.created = static_cast<std::uint64_t>(st.column_int(10));
  return s;
}

Result<Receipt> BillingStore::finish(std::uint64_t settlement_id, std::uint64_t now) {
  USHER_CHECK(charge(settlement_id));
  return complete_payment(settlement_id, now);
}

Status BillingStore::charge(std::uint64_t settlement_id) {
  USHER_TRY(auto s, settlement(settlement_id));
  if (s.state == SettlementState::paid) return ok_status();
  if (s.state != SettlementState::charging) return make_error(Errc::invalid_argument, "settlement " + std::to_string(settlement_id) + " is not being paid");
  // The charge, through the engine's ledger, once per settlement and spend.
  const auto rid = charge_request_id(settlement_id, s.spend);
  const auto payee = entitlement::settlement_payee(settlement_id, s.stb_id);
  auto charged = engine_.charge_settlement(rid, s.spend, s.amount, payee);
  if (!charged) {
    if (!engine_unavailable(charged.error())) {
      // Refused for good (a bad signature, too small a balance): back to a quote, nothing charged.
      auto upd = db_.prepare("UPDATE settlements SET state = " + sql_value(SettlementState::quoted) + ", spend = NULL WHERE settlement_id = ? AND state = " + sql_value(SettlementState::charging));
      upd.bind(1, static_cast<std::int64_t>(settlement_id));
      upd.run();
    }
    return charged.error();
  }
  return ok_status();
}

Result<Receipt> BillingStore::complete_payment(std::uint64_t settlement_id, std::uint64_t now) {
  sql::Transaction tx(db_);
  USHER_TRY(auto s, settlement(settlement_id));
  if (s.state == SettlementState::paid) return Receipt::decode(s.receipt);
  if (s.state != SettlementState::charging) return make_error(Errc::invalid_argument, "settlement " + std::to_string(settlement_id) + " is not being paid");
  // The receipt names the card that paid (it may be another than the relaying handset's: a gift).
  Result<Receipt> rc = make_error(Errc::storage, "settlement not finished");
  if (s.kind == SettlementKind::prepayment) {
    auto st = db_.prepare("INSERT INTO stbs (stb_id, settled_hash, prepaid_minor, prepaid_currency) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (stb_id) DO UPDATE SET prepaid_minor = stbs.prepaid_minor + excluded.prepaid_minor, "
                          "prepaid_currency = excluded.prepaid_currency");
    const std::vector<std::uint8_t> no_hash(32, 0);
    st.bind(1, s.stb_id).bind(2, no_hash).bind(3, s.amount.minor).bind(4, entitlement::to_string(s.amount.currency));
    st.run();
    Receipt r;
    r.kind = s.kind;
    r.receipt_id = settlement_id;
    r.stb_id = s.stb_id;
    r.amount = s.amount;
    r.card_id = s.spend.card_id;
    rc = issue_receipt(r, now);
  } else {
    if (cursor(s.stb_id).sequence + 1 != s.first) {
      // The records were settled by another path after this payment started (a room report let
      // through by a store from before that was refused): the card gets its money back, once, and
      // the settlement becomes a quote that can no longer be paid.
      const auto payee = entitlement::settlement_payee(settlement_id, s.stb_id);
      USHER_CHECK(engine_.refund_settlement(refund_request_id(settlement_id, s.spend), s.spend.card_id, s.amount, payee));
      auto upd = db_.prepare("UPDATE settlements SET state = " + sql_value(SettlementState::quoted) + ", spend = NULL WHERE settlement_id = ?");
      upd.bind(1, static_cast<std::int64_t>(settlement_id));
      upd.run();
      tx.commit();
      return make_error(Errc::stale, "the records of settlement " + std::to_string(settlement_id) + " were settled otherwise meanwhile: " +
                                         entitlement::format_money(s.amount) + " refunded to card " + std::to_string(s.spend.card_id));
    }
    USHER_TRY(auto opened, open_sealed(s.sealed));
    std::vector<HistoryRecord> records;
    for (const auto& r : opened.records) {
      if (r.sequence >= s.first && r.sequence <= s.last) records.push_back(r);
    }
    rc = settle_records(s.kind, s.stb_id, records, s.amount, s.spend.card_id, 0, settlement_id, now);
  }
  if (!rc) return rc;
  tx.commit();
  return rc;
}

Result<Receipt> BillingStore::settle_records(SettlementKind kind, std::uint32_t stb_id, const std::vector<HistoryRecord>& records,
                                             const Money& amount, std::uint64_t card_id, std::uint64_t stay_id,
                                             std::uint64_t settlement_id, std::uint64_t now) {
  // Called inside a transaction. The records follow the STB's cursor (checked by check_history).
  if (records.empty()) return make_error(Errc::invalid_argument, "nothing to settle");
  const auto& last = records.back();
  const auto last_hash = last.hash();
  if (settlement_id == 0) {
    auto ins = db_.prepare("INSERT INTO settlements (kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, currency, "
                           "card_id, stay_id, state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, " + sql_value(SettlementState::charging) +
                           ", ?) RETURNING settlement_id");
    ins.bind(1, static_cast<std::int64_t>(kind)).bind(2, stb_id).bind(3, static_cast<std::int64_t>(records.front().sequence))
        .bind(4, static_cast<std::int64_t>(last.sequence)).bind(5, bytes_of(last_hash)).bind(6, amount.minor)
        .bind(7, entitlement::to_string(amount.currency)).bind(8, static_cast<std::int64_t>(card_id))
        .bind(9, static_cast<std::int64_t>(stay_id)).bind(10, static_cast<std::int64_t>(now));
    ins.step();
    settlement_id = static_cast<std::uint64_t>(ins.column_int(0));
    ins.run();
  }
  std::int64_t prepaid_used = 0;
  {
    std::map<std::uint32_t, std::string> titles;  // a history is mostly a few events: one lookup each
    for (const auto& r : records) {
      if (titles.contains(r.event_id)) continue;
      auto ev = engine_.event(r.event_id);
      if (!ev && engine_unavailable(ev.error())) return ev.error();  // settled later, with the titles
      titles.emplace(r.event_id, ev ? ev->title : "event " + std::to_string(r.event_id));
    }
    auto title_of = [&](std::uint32_t event_id) -> const std::string& { return titles.at(event_id); };
    auto ins = db_.prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : records) {
      const auto h = r.hash();
      // What billing charged for it: the statement shows a record already paid with a ticket at 0.
      std::string reason;
      auto priced = price_of(stb_id, r, &reason);
      if (!priced && engine_unavailable(priced.error())) return priced.error();
      const auto charged = priced ? *priced : r.price;
      ins.reset();
      ins.bind(1, stb_id).bind(2, static_cast<std::int64_t>(r.sequence)).bind(3, bytes_of(h)).bind(4, static_cast<std::int64_t>(r.time))
          .bind(5, r.event_id).bind(6, reason.empty() ? title_of(r.event_id) : title_of(r.event_id) + " (" + reason + ")").bind(7, r.payment)
          .bind(8, static_cast<std::int64_t>(r.stay_id)).bind(9, charged.minor).bind(10, entitlement::to_string(charged.currency))
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
  return issue_receipt(r, now);
}

Receipt BillingStore::issue_receipt(Receipt draft, std::uint64_t now) {
  draft.issued = now;
  draft.certificate = certificate_;
  draft.sign(signing_private());
  auto upd = db_.prepare("UPDATE settlements SET state = " + sql_value(SettlementState::paid) + ", receipt = ?, paid = ?, card_id = ? WHERE settlement_id = ?");
  upd.bind(1, draft.encode()).bind(2, static_cast<std::int64_t>(now)).bind(3, static_cast<std::int64_t>(draft.card_id))
      .bind(4, static_cast<std::int64_t>(draft.receipt_id));
  upd.run();
  return draft;
}

std::size_t BillingStore::recover(std::uint64_t now) {
  std::vector<std::uint64_t> open;
  {
    auto st = db_.prepare("SELECT settlement_id FROM settlements WHERE state = " + sql_value(SettlementState::charging));
    while (st.step()) open.push_back(static_cast<std::uint64_t>(st.column_int(0)));
  }
  std::size_t done = 0;
  for (auto id : open) {
    // A settlement that cannot be finished stays for a later attempt; it never stops the service.
    try {
      if (finish(id, now)) ++done;
    } catch (const std::exception&) {
    }
  }
  return done;
}

}  // namespace usher::billing
