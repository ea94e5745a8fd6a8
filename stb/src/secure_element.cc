#include "usher/stb/secure_element.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>

#include "usher/core/bytes.h"
#include "usher/core/crypto.h"
#include "usher/core/clock.h"
#include "usher/core/home.h"
#include "usher/core/log.h"
#include "usher/core/stored_enum.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/request_code.h"

namespace usher::stb {

namespace {
// The stored text of each ticket state, in one place (it is also what a row's tag covers).
constexpr StoredName<StbTicketStatus> kStbTicketStatuses[] = {
    {StbTicketStatus::valid, "valid"}, {StbTicketStatus::used, "used"}, {StbTicketStatus::revoked, "revoked"}};
}  // namespace

const char* to_string(StbTicketStatus status) { return stored_name(kStbTicketStatuses, status); }
namespace fs = std::filesystem;

namespace {
crypto::PublicKey blob_public(const std::vector<std::uint8_t>& b) {
  crypto::PublicKey k{};
  if (b.size() == 32) std::copy(b.begin(), b.end(), k.begin());
  return k;
}

constexpr std::uint64_t kImpulseTicketBase = std::uint64_t{1} << 62;  // local ticket ids, apart from the engine's

// The key that tags the rows of stb.db: derived from the STB's X25519 secret and bound to its id
// and to the operator keys it trusts, so that replacing the operator's key in the identity row
// also makes every row fail to verify.
Key256 derive_store_key(const Key256& x25519_private, std::uint32_t stb_id, const crypto::PublicKey& operator_x25519,
                        const crypto::PublicKey& operator_ed25519) {
  ByteWriter info;
  const std::string label = "usher stb store v2";
  info.bytes({reinterpret_cast<const std::uint8_t*>(label.data()), label.size()});
  info.u32(stb_id);
  info.bytes(operator_x25519);
  info.bytes(operator_ed25519);
  static constexpr std::uint8_t kSalt[] = {'u', 's', 'h', 'e', 'r', ' ', 's', 't', 'o', 'r', 'e'};
  return crypto::hkdf_sha256(x25519_private.bytes(), kSalt, info.data());
}

// The tag of one row: the table's name and each field, length-prefixed so that no two rows encode
// alike, hashed, then HMAC-SHA256 under the store key (HKDF-SHA256 is HMAC inside: extract keyed by
// a fixed salt over the store key, expand keyed by that over the digest).
class RowTag {
 public:
  explicit RowTag(std::string_view table) { text(std::string(table)); }
  RowTag& num(std::int64_t v) {
    w_.u8(8);
    w_.u64(static_cast<std::uint64_t>(v));
    return *this;
  }
  RowTag& blob(std::span<const std::uint8_t> b) {
    w_.u32(static_cast<std::uint32_t>(b.size()));
    w_.bytes(b);
    return *this;
  }
  RowTag& text(const std::string& t) { return blob({reinterpret_cast<const std::uint8_t*>(t.data()), t.size()}); }
  [[nodiscard]] std::vector<std::uint8_t> under(const Key256& store_key) const {
    static constexpr std::uint8_t kSalt[] = {'u', 's', 'h', 'e', 'r', ' ', 'r', 'o', 'w'};
    const auto digest = crypto::sha256(w_.data());
    const auto tag = crypto::hkdf_sha256(store_key.bytes(), kSalt, digest);
    return {tag.bytes().begin(), tag.bytes().end()};
  }

 private:
  ByteWriter w_;
};

bool tag_ok(const std::vector<std::uint8_t>& expected, const std::vector<std::uint8_t>& stored) {
  return stored.size() == expected.size() && constant_time_equal(expected, stored);
}

entitlement::Money money_of(const sql::Statement& st, int minor_col, int currency_col) {
  const auto c = st.column_text(currency_col);
  entitlement::Money m{st.column_int(minor_col), {'X', 'X', 'X'}};
  if (c.size() == 3) m.currency = {c[0], c[1], c[2]};
  return m;
}

std::vector<std::uint8_t> entitlement_tag(const Key256& store_key, const Entitlement& e, std::span<const std::uint8_t> key) {
  return RowTag("entitlements").num(e.service_id).num(e.key_version).blob(key).num(static_cast<std::int64_t>(e.not_before))
      .num(static_cast<std::int64_t>(e.not_after)).num(e.revoked ? 1 : 0).num(static_cast<std::int64_t>(e.sequence)).under(store_key);
}
// A version of a service key other than the newest (which is in the entitlement's own row), bound to
// the entitlement's sequence: it is used only with the entitlement row it was written with.
std::vector<std::uint8_t> service_key_tag(const Key256& store_key, std::int64_t service_id, std::int64_t key_version,
                                          std::span<const std::uint8_t> key, std::int64_t sequence) {
  return RowTag("service_keys").num(service_id).num(key_version).blob(key).num(sequence).under(store_key);
}
std::vector<std::uint8_t> group_key_tag(const Key256& store_key, std::int64_t group_id, std::int64_t position, std::int64_t key_version,
                                        std::span<const std::uint8_t> key, std::int64_t sequence) {
  return RowTag("group_key").num(group_id).num(position).num(key_version).blob(key).num(sequence).under(store_key);
}
std::vector<std::uint8_t> global_key_tag(const Key256& store_key, std::int64_t key_version, std::span<const std::uint8_t> key) {
  return RowTag("global_keys").num(key_version).blob(key).under(store_key);
}
std::vector<std::uint8_t> credit_tag(const Key256& store_key, std::int64_t limit_minor, const std::string& currency, std::int64_t sequence) {
  return RowTag("credit").num(limit_minor).text(currency).num(sequence).under(store_key);
}
std::vector<std::uint8_t> collection_tag(const Key256& store_key, std::int64_t within, std::int64_t sequence) {
  return RowTag("collection").num(within).num(sequence).under(store_key);
}
std::vector<std::uint8_t> prepaid_tag(const Key256& store_key, std::int64_t balance, const std::string& currency) {
  return RowTag("prepaid").num(balance).text(currency).under(store_key);
}
std::vector<std::uint8_t> room_tag(const Key256& store_key, std::int64_t counter, std::int64_t stay_id, std::int64_t limit,
                                   const std::string& currency, const std::string& endpoint) {
  return RowTag("room").num(counter).num(stay_id).num(limit).text(currency).text(endpoint).under(store_key);
}
std::vector<std::uint8_t> parental_tag(const Key256& store_key, std::int64_t max_age, std::span<const std::uint8_t> salt,
                                       std::span<const std::uint8_t> hash) {
  return RowTag("parental").num(max_age).blob(salt).blob(hash).under(store_key);
}
std::vector<std::uint8_t> history_tag(const Key256& store_key, std::int64_t sequence, std::span<const std::uint8_t> hash, bool settled,
                                      std::int64_t receipt_id) {
  return RowTag("history").num(sequence).blob(hash).num(settled ? 1 : 0).num(receipt_id).under(store_key);
}
std::vector<std::uint8_t> offer_tag(const Key256& store_key, std::int64_t event_id, std::int64_t service_id, std::int64_t start,
                                    std::int64_t duration, std::int64_t price, const std::string& currency, std::int64_t min_age,
                                    std::span<const std::uint8_t> event_key, const std::string& title) {
  return RowTag("offers").num(event_id).num(service_id).num(start).num(duration).num(price).text(currency).num(min_age)
      .blob(event_key).text(title).under(store_key);
}
}  // namespace

SecureElement::SecureElement(sql::Database db, std::uint32_t stb_id, std::uint16_t ca_system_id, Key256 emm_key,
                             Key256 store_key, entitlement::StbPublicFile pub)
    : db_(std::move(db)),
      stb_id_(stb_id),
      ca_system_id_(ca_system_id),
      emm_key_(std::move(emm_key)),
      store_key_(std::move(store_key)),
      public_(pub) {}

std::vector<std::uint8_t> SecureElement::ticket_tag(std::uint64_t ticket_id, std::uint32_t event_id, std::span<const std::uint8_t> ticket,
                                                    const Key256& event_key, StbTicketStatus status) const {
  return RowTag("tickets").num(static_cast<std::int64_t>(ticket_id)).num(event_id).blob(ticket).blob(event_key.bytes()).text(to_string(status))
      .under(store_key_);
}

// Version 2 is the store whose rows are tagged under the STB's key; files of version 1 hold untagged
// rows and are refused, never brought forward (nothing in them could be trusted). Add a step at the
// end to change the schema; never edit one that has shipped.
const sql::Schema& SecureElement::schema() {
  static const sql::Schema kSchema("STB secure element", {{2, "the secure element's tables", sql::sql_steps(R"(
    CREATE TABLE identity (
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
    CREATE TABLE entitlements (
      service_id INTEGER PRIMARY KEY,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      revoked INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE tickets (
      ticket_id INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL,
      ticket BLOB NOT NULL,
      event_key BLOB NOT NULL,
      status TEXT NOT NULL,
      received INTEGER NOT NULL,
      ack_relayed INTEGER NOT NULL DEFAULT 0,
      mac BLOB NOT NULL);
    CREATE TABLE credit (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE collection (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      within INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE offers (
      event_id INTEGER PRIMARY KEY,
      service_id INTEGER NOT NULL,
      start INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      price_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      min_age INTEGER NOT NULL,
      event_key BLOB NOT NULL,
      title TEXT NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE history (
      sequence INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL UNIQUE,
      price_minor INTEGER NOT NULL,
      payment INTEGER NOT NULL,
      record BLOB NOT NULL,
      hash BLOB NOT NULL,
      settled INTEGER NOT NULL DEFAULT 0,
      receipt_id INTEGER,
      mac BLOB NOT NULL);
    -- The end of the hash chain, kept when a hotel room's history is cleared so that the sequence
    -- goes on (billing would take a restart from 1 for a replay).
    CREATE TABLE chain (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      last_sequence INTEGER NOT NULL,
      last_hash BLOB NOT NULL,
      last_settled INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE receipts (
      receipt_id INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      applied INTEGER NOT NULL);
    CREATE TABLE prepaid (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),
      currency TEXT NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE room (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      counter INTEGER NOT NULL,
      stay_id INTEGER NOT NULL,
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      billing_endpoint TEXT NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE parental (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      max_age INTEGER NOT NULL,
      pin_salt BLOB NOT NULL,
      pin_hash BLOB NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE revoked_tickets (
      ticket_id INTEGER PRIMARY KEY);
    CREATE TABLE emm_applied (
      sequence INTEGER PRIMARY KEY,
      applied INTEGER NOT NULL);
  )")},
  // The billing the STB seals its history for: its certificate as received (no tag: the operator's
  // signature is checked each time it is used, so an edited row is refused all the same).
  {3, "billing's certificate", sql::sql_steps(R"(
    CREATE TABLE billing_certificate (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      certificate BLOB NOT NULL,
      received INTEGER NOT NULL);
  )")},
  // Group and global EMMs (docs/messages.md, "Addressing"): the STB's group with its key, the
  // operator's global keys, and the versions of each service key other than the newest (whose key
  // stays in its entitlements row), so that ECMs of the current and the next version both open
  // across a rotation. Each row tagged like the others; messages grant nothing and are not.
  {4, "group and global keys, service key versions, operator messages", sql::sql_steps(R"(
    CREATE TABLE service_keys (
      service_id INTEGER NOT NULL,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL,
      PRIMARY KEY (service_id, key_version));
    CREATE TABLE group_key (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      group_id INTEGER NOT NULL,
      position INTEGER NOT NULL,
      key_version INTEGER NOT NULL,
      group_key BLOB NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE global_keys (
      key_version INTEGER PRIMARY KEY,
      global_key BLOB NOT NULL,
      mac BLOB NOT NULL);
    CREATE TABLE operator_messages (
      message_id INTEGER PRIMARY KEY,
      text TEXT NOT NULL,
      sequence INTEGER NOT NULL,
      issued INTEGER NOT NULL);
  )")}});
  return kSchema;
}

namespace {
// Refuses a store whose schema is not exactly the one its steps write: compared with a fresh
// schema in memory, table by table (SQLite keeps each CREATE statement's text), then the file's
// pages are checked. Nothing is written. Run once the file is at the latest version.
Status check_schema(sql::Database& db, const std::string& path, const sql::Schema& schema) {
  const std::string damaged = path + " is damaged";
  const std::string advice = ": refused as it is (restore it from a backup, or make a new STB with `usher stb init`)";
  try {
    USHER_TRY(auto fresh, sql::Database::open(":memory:"));
    USHER_CHECK(schema.migrate(fresh, ":memory:"));
    auto want = fresh.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name");
    auto have = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?");
    while (want.step()) {
      const auto name = want.column_text(0);
      have.reset();
      have.bind(1, name);
      if (!have.step()) return make_error(Errc::storage, damaged + ": table '" + name + "' is missing" + advice);
      if (have.column_text(0) != want.column_text(1)) return make_error(Errc::storage, damaged + ": table '" + name + "' was altered" + advice);
    }
    auto check = db.prepare("PRAGMA quick_check");
    if (!check.step() || check.column_text(0) != "ok") return make_error(Errc::storage, damaged + ": " + check.column_text(0) + advice);
  } catch (const std::exception& e) {
    return make_error(Errc::storage, damaged + " (" + e.what() + ")" + advice);
  }
  return ok_status();
}

// A read-only opening only reads the version; a read-write one brings the file forward first. A
// file of version 0 is not one this code wrote (init writes the tables and the version in one
// transaction): refused, never filled in as if it were new.
Status bring_forward(sql::Database& db, const std::string& path, SecureElement::Access access) {
  if (access == SecureElement::Access::read_only) return SecureElement::schema().check(db, path);
  try {
    if (sql::user_version(db) == 0) {
      return make_error(Errc::storage, path + " has schema version 0, this Usher reads " + std::to_string(SecureElement::schema().latest()) +
                                           ": refused as it is (restore it from a backup, or make a new STB with `usher stb init`)");
    }
  } catch (const std::exception& e) {
    return make_error(Errc::storage, path + " is damaged (" + e.what() + "): refused as it is");
  }
  return SecureElement::schema().migrate(db, path);
}
}  // namespace

Result<SecureElement> SecureElement::init(const std::string& home, std::uint32_t stb_id,
                                          const entitlement::OperatorPublicFile& op) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (fs::exists(path)) return make_error(Errc::already_exists, "an STB is already initialised in " + home);
  USHER_TRY(auto db, open_private_database(home, kDatabaseName, IfMissing::create));
  USHER_CHECK(schema().migrate(db, path));
  auto x = crypto::X25519KeyPair::generate();
  auto ed = crypto::Ed25519KeyPair::generate();
  auto emm_key = entitlement::derive_emm_key(x.private_key, op.x25519_public, op.ca_system_id, stb_id);
  if (!emm_key) return make_error(Errc::invalid_argument, "operator key unusable: " + emm_key.error().message);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto st = db.prepare("INSERT INTO identity VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, stb_id).bind(2, op.ca_system_id).bind(3, op.x25519_public).bind(4, op.ed25519_public)
      .bind(5, x.private_key.bytes()).bind(6, x.public_key).bind(7, ed.private_key.bytes()).bind(8, ed.public_key).bind(9, now);
  st.run();
  entitlement::StbPublicFile pub{stb_id, x.public_key, ed.public_key};
  USHER_CHECK(pub.write((fs::path(home) / kPublicName).string()));
  auto store_key = derive_store_key(x.private_key, stb_id, op.x25519_public, op.ed25519_public);
  SecureElement se(std::move(db), stb_id, op.ca_system_id, std::move(*emm_key), std::move(store_key), pub);
  se.issuer_public_ = op.ed25519_public;
  return se;
}

Result<SecureElement> SecureElement::open(const std::string& home, Access access) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (!fs::exists(path)) {
    return make_error(Errc::not_found, "no STB in " + home + " (run `usher stb init --home " + home + "` first)");
  }
  auto db = access == Access::read_only ? sql::Database::open_read_only(path) : open_private_database(home, kDatabaseName, IfMissing::refuse);
  if (db) {
    try {
      db->exec("SELECT COUNT(*) FROM sqlite_master");  // the first read is where a missing wal-index shows
    } catch (const std::exception& e) {
      db = make_error(Errc::storage, e.what());
    }
  }
  if (!db) {
    // A full disk has no room for the shared wal-index (stb.db-shm): open the store for this process
    // alone, with the index in memory, so that what is held still plays.
    auto alone = sql::Database::open_exclusive(path, access == Access::read_only);
    if (!alone) return db.error();
    Logger("stb").warn("opened ", path, " for this process alone (", db.error().message, "): is the disk full?");
    db = std::move(alone);
  }
  USHER_CHECK(bring_forward(*db, path, access));
  USHER_CHECK(check_schema(*db, path, schema()));
  try {
    auto st = db->prepare(
        "SELECT stb_id, ca_system_id, operator_x25519, x25519_private, x25519_public, ed25519_public, operator_ed25519 "
        "FROM identity WHERE id = 1");
    if (!st.step()) return make_error(Errc::storage, path + " has no identity: refused as it is");
    const auto stb_id = static_cast<std::uint32_t>(st.column_int(0));
    const auto ca = static_cast<std::uint16_t>(st.column_int(1));
    const auto op = blob_public(st.column_blob(2));
    const auto op_ed = blob_public(st.column_blob(6));
    auto priv = st.column_key(3);
    entitlement::StbPublicFile pub{stb_id, blob_public(st.column_blob(4)), blob_public(st.column_blob(5))};
    USHER_TRY(auto emm_key, entitlement::derive_emm_key(priv, op, ca, stb_id));
    auto store_key = derive_store_key(priv, stb_id, op, op_ed);
    SecureElement se(std::move(*db), stb_id, ca, std::move(emm_key), std::move(store_key), pub);
    se.issuer_public_ = op_ed;
    se.load();
    return se;
  } catch (const std::exception& e) {
    return make_error(Errc::storage, path + " is damaged (" + e.what() + "): refused as it is");
  }
}

void SecureElement::load() {
  Logger log("stb");
  std::uint64_t refused = 0;
  held_.clear();
  auto st = db_.prepare("SELECT service_id, key_version, service_key, not_before, not_after, revoked, sequence, mac FROM entitlements");
  while (st.step()) {
    Entitlement info{static_cast<std::uint16_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)),
                     static_cast<std::uint64_t>(st.column_int(3)), static_cast<std::uint64_t>(st.column_int(4)),
                     st.column_int(5) != 0, static_cast<std::uint64_t>(st.column_int(6)), {}};
    const auto key = st.column_blob(2);
    if (key.size() != 32 || info.service_id != st.column_int(0) || !tag_ok(entitlement_tag(store_key_, info, key), st.column_blob(7))) {
      ++refused;
      log.warn("stored entitlement for service ", st.column_int(0), " does not verify: refused");
      continue;
    }
    Held held{info, {}};
    if (!info.revoked) held.keys.emplace(info.key_version, Key256(std::span<const std::uint8_t, 32>(key.data(), 32)));
    held_.emplace(info.service_id, std::move(held));
  }
  {
    // The other versions of a key: only with the entitlement row they were written with.
    auto k = db_.prepare("SELECT service_id, key_version, service_key, sequence, mac FROM service_keys");
    while (k.step()) {
      const auto key = k.column_blob(2);
      auto it = held_.find(static_cast<std::uint16_t>(k.column_int(0)));
      const bool ok = key.size() == 32 && it != held_.end() && !it->second.info.revoked && it->second.info.service_id == k.column_int(0) &&
                      static_cast<std::uint64_t>(k.column_int(3)) == it->second.info.sequence && k.column_int(1) >= 0 &&
                      k.column_int(1) < it->second.info.key_version &&
                      tag_ok(service_key_tag(store_key_, k.column_int(0), k.column_int(1), key, k.column_int(3)), k.column_blob(4));
      if (!ok) {
        ++refused;
        log.warn("stored key version ", k.column_int(1), " of service ", k.column_int(0), " does not verify: refused");
        continue;
      }
      it->second.keys.emplace(static_cast<std::uint16_t>(k.column_int(1)), Key256(std::span<const std::uint8_t, 32>(key.data(), 32)));
    }
  }
  group_.reset();
  {
    auto g = db_.prepare("SELECT group_id, position, key_version, group_key, sequence, mac FROM group_key WHERE id = 1");
    if (g.step()) {
      const auto key = g.column_blob(3);
      if (key.size() == 32 && g.column_int(1) >= 0 && g.column_int(1) < 256 &&
          tag_ok(group_key_tag(store_key_, g.column_int(0), g.column_int(1), g.column_int(2), key, g.column_int(4)), g.column_blob(5))) {
        group_ = HeldGroup{{static_cast<std::uint32_t>(g.column_int(0)), static_cast<std::uint8_t>(g.column_int(1)),
                            static_cast<std::uint32_t>(g.column_int(2))},
                           Key256(std::span<const std::uint8_t, 32>(key.data(), 32)),
                           static_cast<std::uint64_t>(g.column_int(4))};
      } else {
        ++refused;
        log.warn("stored group key does not verify: refused (group EMMs are not read until the operator sends it again)");
      }
    }
  }
  global_keys_.clear();
  {
    auto g = db_.prepare("SELECT key_version, global_key, mac FROM global_keys");
    while (g.step()) {
      const auto key = g.column_blob(1);
      if (key.size() != 32 || !tag_ok(global_key_tag(store_key_, g.column_int(0), key), g.column_blob(2))) {
        ++refused;
        log.warn("stored global key version ", g.column_int(0), " does not verify: refused");
        continue;
      }
      global_keys_.emplace(static_cast<std::uint32_t>(g.column_int(0)), Key256(std::span<const std::uint8_t, 32>(key.data(), 32)));
    }
  }
  tickets_.clear();
  std::set<std::uint64_t> revoked;
  {
    auto r = db_.prepare("SELECT ticket_id FROM revoked_tickets");
    while (r.step()) revoked.insert(static_cast<std::uint64_t>(r.column_int(0)));
  }
  auto t = db_.prepare("SELECT ticket_id, event_id, ticket, event_key, status, mac FROM tickets");
  while (t.step()) {
    const auto ticket_id = static_cast<std::uint64_t>(t.column_int(0));
    const auto bytes = t.column_blob(2);
    const auto key_bytes = t.column_blob(3);
    auto status = from_stored_name(kStbTicketStatuses, t.column_text(4));  // unknown text: refused below
    auto ticket = entitlement::Ticket::decode(bytes);
    // An engine's ticket is signed by the operator; an impulse purchase's by this STB itself.
    const auto& signer = ticket_id >= kImpulseTicketBase ? public_.ed25519_public : issuer_public_;
    bool ok = ticket && key_bytes.size() == 32 && ticket->ticket_id == ticket_id && ticket->event_id == t.column_int(1) &&
              ticket->stb_id == stb_id_ && signature_ok(signer, ticket->signed_part(), ticket->signature) &&
              status.has_value();
    Key256 event_key;
    if (ok) {
      event_key = Key256(std::span<const std::uint8_t, 32>(key_bytes.data(), 32));
      ok = tag_ok(ticket_tag(ticket_id, ticket->event_id, bytes, event_key, *status), t.column_blob(5));
    }
    if (!ok) {
      ++refused;
      log.warn("stored ticket ", ticket_id, " does not verify (signature, binding to STB ", stb_id_, " or tag): refused");
      continue;
    }
    if (revoked.contains(ticket_id)) status = StbTicketStatus::revoked;
    tickets_.push_back({std::move(ticket.value()), std::move(event_key), *status, bytes});
  }
  {
    parental_max_age_ = 255;
    auto p = db_.prepare("SELECT max_age, pin_salt, pin_hash, mac FROM parental WHERE id = 1");
    if (p.step()) {
      if (tag_ok(parental_tag(store_key_, p.column_int(0), p.column_blob(1), p.column_blob(2)), p.column_blob(3))) {
        parental_max_age_ = static_cast<std::uint8_t>(p.column_int(0));
      } else {
        // Edited to lift the limit: everything rated stays locked.
        ++refused;
        parental_max_age_ = 0;
        log.warn("stored parental limit does not verify: every rated event stays locked");
      }
    }
  }
  applied_.clear();
  auto a = db_.prepare("SELECT sequence FROM emm_applied");
  while (a.step()) applied_.insert(static_cast<std::uint64_t>(a.column_int(0)));
  rows_refused_ = refused;
}

Status SecureElement::reload() {
  // load() fills the members as it goes: read into a copy's worth of state only if it all reads.
  auto held = std::move(held_);
  auto group = std::move(group_);
  auto global_keys = std::move(global_keys_);
  auto tickets = std::move(tickets_);
  auto applied = applied_;
  const auto age = parental_max_age_;
  try {
    load();
  } catch (const std::exception& e) {
    held_ = std::move(held);
    group_ = std::move(group);
    global_keys_ = std::move(global_keys);
    tickets_ = std::move(tickets);
    applied_ = std::move(applied);
    parental_max_age_ = age;
    return make_error(Errc::storage, std::string("store not re-read: ") + e.what());
  }
  return ok_status();
}

Result<std::optional<SecureElement::CreditRow>> SecureElement::stored_credit() {
  auto st = db_.prepare("SELECT limit_minor, currency, sequence, mac FROM credit WHERE id = 1");
  if (!st.step()) return std::optional<CreditRow>();
  if (!tag_ok(credit_tag(store_key_, st.column_int(0), st.column_text(1), st.column_int(2)), st.column_blob(3))) {
    return make_error(Errc::auth_failed, "the stored credit line does not verify (edited outside the STB): no impulse purchases");
  }
  return std::optional<CreditRow>(CreditRow{money_of(st, 0, 1), static_cast<std::uint64_t>(st.column_int(2))});
}

Result<std::optional<SecureElement::CollectionRow>> SecureElement::stored_collection() {
  auto st = db_.prepare("SELECT within, sequence, mac FROM collection WHERE id = 1");
  if (!st.step()) return std::optional<CollectionRow>();
  if (!tag_ok(collection_tag(store_key_, st.column_int(0), st.column_int(1)), st.column_blob(2))) {
    return make_error(Errc::auth_failed, "the stored collection deadline does not verify (edited outside the STB): no impulse purchases");
  }
  return std::optional<CollectionRow>(CollectionRow{static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint64_t>(st.column_int(1))});
}

Result<std::optional<SecureElement::RoomRow>> SecureElement::stored_room() {
  auto st = db_.prepare("SELECT counter, stay_id, limit_minor, currency, billing_endpoint, mac FROM room WHERE id = 1");
  if (!st.step()) return std::optional<RoomRow>();
  if (!tag_ok(room_tag(store_key_, st.column_int(0), st.column_int(1), st.column_int(2), st.column_text(3), st.column_text(4)),
              st.column_blob(5))) {
    return make_error(Errc::auth_failed, "the stored room state does not verify (edited outside the STB): no purchases");
  }
  return std::optional<RoomRow>(RoomRow{static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint64_t>(st.column_int(1)),
                                        money_of(st, 2, 3), st.column_text(4)});
}

Result<std::optional<entitlement::Money>> SecureElement::stored_prepaid() {
  auto st = db_.prepare("SELECT balance_minor, currency, mac FROM prepaid WHERE id = 1");
  if (!st.step()) return std::optional<entitlement::Money>();
  if (!tag_ok(prepaid_tag(store_key_, st.column_int(0), st.column_text(1)), st.column_blob(2))) {
    return make_error(Errc::auth_failed, "the stored prepaid credit does not verify (edited outside the STB)");
  }
  return std::optional<entitlement::Money>(money_of(st, 0, 1));
}

void SecureElement::write_prepaid(const entitlement::Money& balance) {
  const auto currency = entitlement::to_string(balance.currency);
  auto st = db_.prepare("INSERT OR REPLACE INTO prepaid VALUES (1, ?, ?, ?)");
  st.bind(1, balance.minor).bind(2, currency).bind(3, prepaid_tag(store_key_, balance.minor, currency));
  st.run();
}

bool SecureElement::signature_ok(const crypto::PublicKey& signer, std::span<const std::uint8_t> message,
                                 const crypto::Signature& signature) {
  std::vector<std::uint8_t> all(signer.begin(), signer.end());
  all.insert(all.end(), message.begin(), message.end());
  all.insert(all.end(), signature.begin(), signature.end());
  const auto digest = crypto::sha256(all);
  if (verified_signatures_.contains(digest)) return true;
  if (!crypto::ed25519_verify(signer, message, signature)) return false;
  verified_signatures_.insert(digest);
  return true;
}

SecureElement::StoredHistory SecureElement::stored_history() {
  StoredHistory out;
  auto st = db_.prepare("SELECT sequence, record, hash, settled, COALESCE(receipt_id, 0), mac FROM history ORDER BY sequence");
  while (st.step()) {
    auto rec = entitlement::HistoryRecord::decode(st.column_blob(1));
    const auto hash = st.column_blob(2);
    if (!rec || rec->sequence != static_cast<std::uint64_t>(st.column_int(0)) || rec->stb_id != stb_id_ ||
        !signature_ok(public_.ed25519_public, rec->signed_part(), rec->signature)) {
      ++out.refused;
      continue;
    }
    const auto digest = rec->hash();
    const bool tagged = std::equal(hash.begin(), hash.end(), digest.begin(), digest.end()) &&
                        tag_ok(history_tag(store_key_, st.column_int(0), hash, st.column_int(3) != 0, st.column_int(4)), st.column_blob(5));
    if (!tagged) ++out.refused;
    out.records.push_back({std::move(rec.value()), tagged && st.column_int(3) != 0});
  }
  return out;
}

entitlement::Money SecureElement::StoredHistory::unsettled_credit() const {
  entitlement::Money sum;
  for (const auto& r : records) {
    if (r.settled || r.record.payment != entitlement::kPaymentCredit) continue;
    sum.minor += r.record.price.minor;
    sum.currency = r.record.price.currency;
  }
  return sum;
}

const SecureElement::StoredRecord* SecureElement::StoredHistory::oldest_unsettled_credit() const {
  for (const auto& r : records) {
    if (!r.settled && r.record.payment == entitlement::kPaymentCredit) return &r;
  }
  return nullptr;
}

Result<std::optional<std::uint64_t>> SecureElement::collection_overdue(std::uint64_t now) {
  auto deadline = stored_collection();
  if (!deadline) return deadline.error();
  if (!*deadline || (*deadline)->within == 0) return std::optional<std::uint64_t>();
  // The oldest purchase on the credit line not yet relayed; its time is in the record this STB
  // signed, so editing the row cannot move it.
  const auto stored = stored_history();
  const auto* oldest = stored.oldest_unsettled_credit();
  if (oldest == nullptr) return std::optional<std::uint64_t>();
  const auto* rec = &oldest->record;
  // The box's clock can be set back; the issue times of the EMMs it applied cannot (the operator
  // sealed them), so the later of the two is the time judged.
  {
    auto newest = db_.prepare("SELECT COALESCE(MAX(applied), 0) FROM emm_applied");
    newest.step();
    now = std::max(now, static_cast<std::uint64_t>(newest.column_int(0)));
  }
  const auto due = rec->time + (*deadline)->within;
  if (now < due) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(due);
}

namespace {
// Which items each address may carry (docs/messages.md, "Items are judged by the address that
// carried them"): a unique EMM what concerns one box, a group EMM the member grants and revokes, a
// global EMM what concerns every box.
bool item_allowed(entitlement::EmmAddressType type, const entitlement::EmmItem& item) {
  using namespace entitlement;
  switch (type) {
    case EmmAddressType::unique:
      return !std::holds_alternative<EmmMemberGrant>(item) && !std::holds_alternative<EmmMemberRevoke>(item) &&
             !std::holds_alternative<EmmMessage>(item);
    case EmmAddressType::group:
      return std::holds_alternative<EmmMemberGrant>(item) || std::holds_alternative<EmmMemberRevoke>(item);
    case EmmAddressType::global:
      return std::holds_alternative<EmmOffer>(item) || std::holds_alternative<EmmGlobalKey>(item) || std::holds_alternative<EmmMessage>(item);
  }
  return false;
}

const char* address_name(entitlement::EmmAddressType type) {
  switch (type) {
    case entitlement::EmmAddressType::unique: return "unique";
    case entitlement::EmmAddressType::group: return "group";
    case entitlement::EmmAddressType::global: return "global";
  }
  return "?";
}
}  // namespace

// What an EMM changes in memory, gathered while its transaction runs and made current once it is
// committed: a failure leaves what was held as it was, and nothing is re-read from the store.
struct SecureElement::EmmEffects {
  std::map<std::uint16_t, Held> services;  // the state of each service looked at, changed or not
  std::set<std::uint16_t> changed;         // the services this EMM changed
  std::vector<HeldTicket> tickets;         // tickets stored
  std::vector<std::uint64_t> revoked_tickets;
  std::optional<HeldGroup> group;
  std::optional<std::map<std::uint32_t, Key256>> global_keys;
};

Result<EmmOutcome> SecureElement::apply_emm(std::span<const std::uint8_t> section) {
  // The clear header is all a box reads of an EMM that is not for it: no decryption, no allocation.
  USHER_TRY(auto header, entitlement::peek_any_emm(section));
  const auto& address = header.address;
  const Key256* shared_key = nullptr;
  switch (address.type) {
    case entitlement::EmmAddressType::unique:
      if (address.id != stb_id_) return EmmOutcome::not_addressed;
      break;
    case entitlement::EmmAddressType::group:
      if (!group_ || address.id != group_->membership.group_id || address.key_version != group_->membership.key_version) {
        return EmmOutcome::not_addressed;
      }
      shared_key = &group_->key;
      break;
    case entitlement::EmmAddressType::global: {
      const auto it = global_keys_.find(address.key_version);
      if (it == global_keys_.end()) return EmmOutcome::not_addressed;
      shared_key = &it->second;
      break;
    }
  }
  if (applied_.contains(header.sequence)) return EmmOutcome::duplicate;
  OpenedEmm opened;
  opened.type = address.type;
  opened.sequence = header.sequence;
  entitlement::EmmContent unique;
  entitlement::SharedEmmContent shared;
  if (shared_key == nullptr) {
    USHER_TRY(auto emm, entitlement::decode_emm(section, emm_key_));
    unique = std::move(emm);
    opened.issued_unix = unique.issued_unix;
    opened.items = &unique.items;
  } else {
    USHER_TRY(auto emm, entitlement::decode_shared_emm(section, *shared_key));
    shared = std::move(emm);
    opened.issued_unix = shared.issued_unix;
    opened.items = &shared.items;
  }
  // A full disk (or any other storage failure) undoes the whole EMM and leaves what is held as it
  // was: the STB goes on descrambling with it and the carousel brings the EMM again.
  try {
    return apply_emm_content(opened);
  } catch (const std::exception& e) {
    return make_error(Errc::storage, "EMM " + std::to_string(opened.sequence) + " not stored: " + e.what());
  }
}

SecureElement::Held& SecureElement::service_being_changed(EmmEffects& effects, std::uint16_t service_id) const {
  if (auto it = effects.services.find(service_id); it != effects.services.end()) return it->second;
  Held copy;
  copy.info.service_id = service_id;
  if (auto it = held_.find(service_id); it != held_.end()) {
    copy.info = it->second.info;
    for (const auto& [version, key] : it->second.keys) copy.keys.emplace(version, key.clone());
  }
  return effects.services.emplace(service_id, std::move(copy)).first->second;
}

void SecureElement::write_service(const Held& held) {
  const auto& e = held.info;
  auto drop = db_.prepare("DELETE FROM service_keys WHERE service_id = ?");
  drop.bind(1, e.service_id);
  drop.run();
  if (held.keys.empty()) {
    // Keep a row (without a usable key) so that an older grant replayed later is recognised as stale.
    const std::array<std::uint8_t, 32> zero{};
    auto st = db_.prepare("INSERT OR REPLACE INTO entitlements VALUES (?, 0, ?, 0, 0, 1, ?, ?)");
    st.bind(1, e.service_id).bind(2, std::span<const std::uint8_t>(zero)).bind(3, static_cast<std::int64_t>(e.sequence))
        .bind(4, entitlement_tag(store_key_, e, zero));
    st.run();
    return;
  }
  // The newest version's key in the entitlement's row (as before versions were kept), the others
  // beside it, each bound to the entitlement's sequence.
  const auto& newest = *held.keys.rbegin();
  auto st = db_.prepare("INSERT OR REPLACE INTO entitlements VALUES (?, ?, ?, ?, ?, 0, ?, ?)");
  st.bind(1, e.service_id).bind(2, newest.first).bind(3, newest.second.bytes())
      .bind(4, static_cast<std::int64_t>(e.not_before)).bind(5, static_cast<std::int64_t>(e.not_after))
      .bind(6, static_cast<std::int64_t>(e.sequence)).bind(7, entitlement_tag(store_key_, e, newest.second.bytes()));
  st.run();
  auto other = db_.prepare("INSERT INTO service_keys VALUES (?, ?, ?, ?, ?)");
  for (const auto& [version, key] : held.keys) {
    if (version == newest.first) continue;
    other.reset();
    other.bind(1, e.service_id).bind(2, version).bind(3, key.bytes()).bind(4, static_cast<std::int64_t>(e.sequence))
        .bind(5, service_key_tag(store_key_, e.service_id, version, key.bytes(), static_cast<std::int64_t>(e.sequence)));
    other.run();
  }
}

Result<EmmOutcome> SecureElement::apply_emm_content(const OpenedEmm& emm) {
  const auto seq = emm.sequence;
  int applied_items = 0;
  int skipped_items = 0;
  std::string stale;
  EmmEffects effects;
  sql::Transaction tx(db_);

  // Per service, an item from an EMM older than the one that last changed the service is stale.
  // Sequence numbers come from one operator-wide counter, so this holds across addresses; the same
  // EMM may name a service twice (the current and the next key of a rotation).
  auto fresh_for = [&](std::uint16_t service) {
    const auto& h = service_being_changed(effects, service);
    if (h.info.sequence <= seq) return true;
    stale = "EMM " + std::to_string(seq) + " is older than EMM " + std::to_string(h.info.sequence) + " already applied for service " +
            std::to_string(service) + " (reordered or replayed)";
    return false;
  };
  auto grant = [&](std::uint16_t service, std::uint16_t key_version, const Key256& key, std::uint64_t not_before, std::uint64_t not_after) {
    auto& h = service_being_changed(effects, service);
    if (h.info.revoked) h.keys.clear();
    h.info.not_before = not_before;
    h.info.not_after = not_after;
    h.info.revoked = false;
    h.info.sequence = seq;
    h.keys.insert_or_assign(key_version, key.clone());
    while (h.keys.size() > kServiceKeyVersionsHeld) h.keys.erase(h.keys.begin());  // the oldest version goes
    h.info.key_version = h.keys.rbegin()->first;
    write_service(h);
    effects.changed.insert(service);
  };
  auto revoke = [&](std::uint16_t service) {
    auto& h = service_being_changed(effects, service);
    h.info = Entitlement{service, 0, 0, 0, true, seq, {}};
    h.keys.clear();
    write_service(h);
    effects.changed.insert(service);
  };

  for (const auto& item : *emm.items) {
    if (!item_allowed(emm.type, item)) {
      ++skipped_items;
      continue;
    }
    if (const auto* t = std::get_if<entitlement::EmmTicket>(&item)) {
      USHER_TRY(auto stored, store_ticket(t->ticket, t->event_key));
      const bool twice = stored && std::any_of(effects.tickets.begin(), effects.tickets.end(),
                                               [&](const HeldTicket& h) { return h.ticket.ticket_id == stored->ticket.ticket_id; });
      if (stored && !twice) effects.tickets.push_back(std::move(*stored));
      ++applied_items;
      continue;
    }
    if (const auto* c = std::get_if<entitlement::EmmCredit>(&item)) {
      // Only a newer credit EMM changes the limit (a replayed older one is ignored). A stored row
      // that does not verify is replaced by the operator's word.
      auto current = stored_credit();
      if (!current || !*current || (*current)->sequence < seq) {
        const std::string currency(c->currency.begin(), c->currency.end());
        auto st = db_.prepare("INSERT OR REPLACE INTO credit VALUES (1, ?, ?, ?, ?)");
        st.bind(1, c->limit_minor).bind(2, currency).bind(3, static_cast<std::int64_t>(seq))
            .bind(4, credit_tag(store_key_, c->limit_minor, currency, static_cast<std::int64_t>(seq)));
        st.run();
      }
      ++applied_items;
      continue;
    }
    if (const auto* k = std::get_if<entitlement::EmmCollection>(&item)) {
      auto current = stored_collection();
      if (!current || !*current || (*current)->sequence < seq) {
        const auto within = static_cast<std::int64_t>(k->within_seconds);
        auto st = db_.prepare("INSERT OR REPLACE INTO collection VALUES (1, ?, ?, ?)");
        st.bind(1, within).bind(2, static_cast<std::int64_t>(seq)).bind(3, collection_tag(store_key_, within, static_cast<std::int64_t>(seq)));
        st.run();
      }
      ++applied_items;
      continue;
    }
    if (const auto* o = std::get_if<entitlement::EmmOffer>(&item)) {
      const std::string currency(o->currency.begin(), o->currency.end());
      auto st = db_.prepare("INSERT OR REPLACE INTO offers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      st.bind(1, o->event_id).bind(2, o->service_id).bind(3, static_cast<std::int64_t>(o->start)).bind(4, o->duration)
          .bind(5, o->price_minor).bind(6, currency).bind(7, o->min_age).bind(8, o->event_key.bytes()).bind(9, o->title)
          .bind(10, offer_tag(store_key_, o->event_id, o->service_id, static_cast<std::int64_t>(o->start), o->duration, o->price_minor,
                              currency, o->min_age, o->event_key.bytes(), o->title));
      st.run();
      ++applied_items;
      continue;
    }
    if (const auto* r = std::get_if<entitlement::EmmTicketRevoke>(&item)) {
      // Remembered even before the ticket itself arrives, so a late ticket is born revoked.
      auto ins = db_.prepare("INSERT OR IGNORE INTO revoked_tickets VALUES (?)");
      ins.bind(1, static_cast<std::int64_t>(r->ticket_id));
      ins.run();
      auto rewrite = [&](const HeldTicket& held) {
        auto up = db_.prepare("UPDATE tickets SET status = " + sql_literal(kStbTicketStatuses, StbTicketStatus::revoked) + ", mac = ? WHERE ticket_id = ?");
        up.bind(1, ticket_tag(r->ticket_id, held.ticket.event_id, held.bytes, held.event_key, StbTicketStatus::revoked))
            .bind(2, static_cast<std::int64_t>(r->ticket_id));
        up.run();
      };
      for (const auto& held : tickets_) {
        if (held.ticket.ticket_id == r->ticket_id) rewrite(held);
      }
      for (auto& held : effects.tickets) {
        if (held.ticket.ticket_id != r->ticket_id) continue;
        rewrite(held);
        held.status = StbTicketStatus::revoked;
      }
      effects.revoked_tickets.push_back(r->ticket_id);
      ++applied_items;
      continue;
    }
    if (const auto* gk = std::get_if<entitlement::EmmGroupKey>(&item)) {
      // A newer key of the group replaces the old one (a re-keying that cuts another member off),
      // and a newer EMM may move the box to another group; an older one is a replay.
      const auto* held = effects.group ? &*effects.group : (group_ ? &*group_ : nullptr);
      if (held != nullptr && (held->sequence > seq || (held->membership.group_id == gk->group_id && held->membership.key_version > gk->key_version))) {
        stale = "EMM " + std::to_string(seq) + " gives version " + std::to_string(gk->key_version) + " of group " + std::to_string(gk->group_id) +
                "'s key, older than the one held (version " + std::to_string(held->membership.key_version) + " from EMM " +
                std::to_string(held->sequence) + ")";
        continue;
      }
      auto st = db_.prepare("INSERT OR REPLACE INTO group_key VALUES (1, ?, ?, ?, ?, ?, ?)");
      st.bind(1, static_cast<std::int64_t>(gk->group_id)).bind(2, gk->position).bind(3, static_cast<std::int64_t>(gk->key_version))
          .bind(4, gk->key.bytes()).bind(5, static_cast<std::int64_t>(seq))
          .bind(6, group_key_tag(store_key_, gk->group_id, gk->position, gk->key_version, gk->key.bytes(), static_cast<std::int64_t>(seq)));
      st.run();
      effects.group = HeldGroup{{gk->group_id, gk->position, gk->key_version}, gk->key.clone(), seq};
      ++applied_items;
      continue;
    }
    if (const auto* gl = std::get_if<entitlement::EmmGlobalKey>(&item)) {
      if (!effects.global_keys) {
        effects.global_keys.emplace();
        for (const auto& [version, key] : global_keys_) effects.global_keys->emplace(version, key.clone());
      }
      auto& keys = *effects.global_keys;
      if (keys.size() >= kGlobalKeyVersionsHeld && !keys.contains(gl->key_version) && gl->key_version < keys.begin()->first) {
        stale = "EMM " + std::to_string(seq) + " gives version " + std::to_string(gl->key_version) + " of the global key, older than those held";
        continue;
      }
      keys.insert_or_assign(gl->key_version, gl->key.clone());
      while (keys.size() > kGlobalKeyVersionsHeld) keys.erase(keys.begin());
      db_.exec("DELETE FROM global_keys");
      auto st = db_.prepare("INSERT INTO global_keys VALUES (?, ?, ?)");
      for (const auto& [version, key] : keys) {
        st.reset();
        st.bind(1, static_cast<std::int64_t>(version)).bind(2, key.bytes()).bind(3, global_key_tag(store_key_, version, key.bytes()));
        st.run();
      }
      ++applied_items;
      continue;
    }
    if (const auto* m = std::get_if<entitlement::EmmMessage>(&item)) {
      auto st = db_.prepare("INSERT OR IGNORE INTO operator_messages VALUES (?, ?, ?, ?)");
      st.bind(1, static_cast<std::int64_t>(m->message_id)).bind(2, m->text).bind(3, static_cast<std::int64_t>(seq))
          .bind(4, static_cast<std::int64_t>(emm.issued_unix));
      st.run();
      auto trim = db_.prepare("DELETE FROM operator_messages WHERE message_id NOT IN "
                              "(SELECT message_id FROM operator_messages ORDER BY sequence DESC, message_id DESC LIMIT ?)");
      trim.bind(1, static_cast<std::int64_t>(kMessagesKept));
      trim.run();
      ++applied_items;
      continue;
    }
    if (const auto* mg = std::get_if<entitlement::EmmMemberGrant>(&item)) {
      if (!mg->members.has(group_->membership.position)) continue;  // not for this member: it takes nothing and loses nothing
      bool any = false;
      for (const auto& s : mg->services) {
        if (!fresh_for(s.service_id)) continue;
        grant(s.service_id, s.key_version, s.key, mg->not_before, mg->not_after);
        any = true;
      }
      applied_items += any ? 1 : 0;
      continue;
    }
    if (const auto* mr = std::get_if<entitlement::EmmMemberRevoke>(&item)) {
      if (!mr->members.has(group_->membership.position)) continue;
      bool any = false;
      for (const auto service : mr->services) {
        if (!fresh_for(service)) continue;
        revoke(service);
        any = true;
      }
      applied_items += any ? 1 : 0;
      continue;
    }
    if (const auto* g = std::get_if<entitlement::EmmGrant>(&item)) {
      if (!fresh_for(g->service_id)) continue;
      grant(g->service_id, g->key_version, g->service_key, g->not_before, g->not_after);
      ++applied_items;
      continue;
    }
    if (const auto* v = std::get_if<entitlement::EmmRevoke>(&item)) {
      if (!fresh_for(v->service_id)) continue;
      revoke(v->service_id);
      ++applied_items;
      continue;
    }
  }
  // Recorded whatever came of it (stale included: only an authentic EMM gets here), so that the
  // carousel's repetitions are duplicates, told apart before any decryption.
  auto mark = db_.prepare("INSERT INTO emm_applied VALUES (?, ?)");
  mark.bind(1, static_cast<std::int64_t>(seq)).bind(2, static_cast<std::int64_t>(emm.issued_unix));
  mark.run();
  tx.commit();

  // Committed: what changed becomes what is held (nothing else is re-read).
  applied_.insert(seq);
  items_skipped_ += static_cast<std::uint64_t>(skipped_items);
  if (skipped_items != 0) {
    Logger("stb").warn("EMM ", seq, " (", address_name(emm.type), "): ", skipped_items, " items its address may not carry, skipped");
  }
  for (const auto service : effects.changed) held_.insert_or_assign(service, std::move(effects.services.at(service)));
  for (auto& t : effects.tickets) tickets_.push_back(std::move(t));
  for (const auto id : effects.revoked_tickets) {
    for (auto& t : tickets_) {
      if (t.ticket.ticket_id == id) t.status = StbTicketStatus::revoked;
    }
  }
  if (effects.group) group_ = std::move(effects.group);
  if (effects.global_keys) global_keys_ = std::move(*effects.global_keys);

  if (applied_items == 0 && !stale.empty()) return make_error(Errc::stale, stale);
  if (applied_items == 0 && !emm.items->empty()) return EmmOutcome::nothing_for_this_stb;
  return EmmOutcome::applied;
}

std::optional<GroupMembership> SecureElement::group() const {
  if (!group_) return std::nullopt;
  return group_->membership;
}

std::vector<std::uint32_t> SecureElement::global_key_versions() const {
  std::vector<std::uint32_t> out;
  for (const auto& [version, key] : global_keys_) out.push_back(version);
  return out;
}

std::vector<OperatorMessage> SecureElement::messages() {
  std::vector<OperatorMessage> out;
  auto st = db_.prepare("SELECT message_id, issued, text FROM operator_messages ORDER BY sequence DESC, message_id DESC LIMIT ?");
  st.bind(1, static_cast<std::int64_t>(kMessagesKept));
  while (st.step()) out.push_back({static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint64_t>(st.column_int(1)), st.column_text(2)});
  return out;
}

namespace {
constexpr int kPinIterations = 20'000;
}  // namespace

bool SecureElement::verify_pin(const std::string& pin) {
  auto st = db_.prepare("SELECT pin_salt, pin_hash, max_age, mac FROM parental WHERE id = 1");
  if (!st.step()) return true;  // no PIN set: nothing is locked
  const auto salt = st.column_blob(0);
  const auto hash = st.column_blob(1);
  if (!tag_ok(parental_tag(store_key_, st.column_int(2), salt, hash), st.column_blob(3))) return false;  // edited: no PIN opens it
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
  auto st = db_.prepare("INSERT OR REPLACE INTO parental VALUES (1, ?, ?, ?, ?)");
  st.bind(1, max_age).bind(2, std::span<const std::uint8_t>(salt)).bind(3, hash.bytes())
      .bind(4, parental_tag(store_key_, max_age, salt, hash.bytes()));
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

Result<std::optional<SecureElement::HeldTicket>> SecureElement::store_ticket(std::span<const std::uint8_t> bytes, const Key256& event_key) {
  auto ticket = entitlement::Ticket::decode(bytes);
  if (!ticket) return ticket.error();
  if (!ticket->verify(issuer_public_)) return make_error(Errc::auth_failed, "ticket not signed by this STB's operator");
  if (ticket->stb_id != stb_id_) {
    return make_error(Errc::not_entitled, "ticket " + std::to_string(ticket->ticket_id) + " is bound to STB " +
                                              std::to_string(ticket->stb_id) + ", not this one");
  }
  auto status = StbTicketStatus::valid;
  {
    auto revoked = db_.prepare("SELECT 1 FROM revoked_tickets WHERE ticket_id = ?");
    revoked.bind(1, static_cast<std::int64_t>(ticket->ticket_id));
    if (revoked.step()) status = StbTicketStatus::revoked;
  }
  // A ticket already held (verified) stays as it is; a row with its id that did not verify (edited
  // or copied in) gives way to it.
  const bool held = std::any_of(tickets_.begin(), tickets_.end(), [&](const HeldTicket& h) { return h.ticket.ticket_id == ticket->ticket_id; });
  auto st = db_.prepare(std::string(held ? "INSERT OR IGNORE" : "INSERT OR REPLACE") + " INTO tickets VALUES (?, ?, ?, ?, ?, ?, 0, ?)");
  const auto stored = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  st.bind(1, static_cast<std::int64_t>(ticket->ticket_id)).bind(2, ticket->event_id).bind(3, bytes)
      .bind(4, event_key.bytes()).bind(5, std::string(to_string(status))).bind(6, stored)
      .bind(7, ticket_tag(ticket->ticket_id, ticket->event_id, bytes, event_key, status));
  st.run();
  if (held) return std::optional<HeldTicket>();
  return std::optional<HeldTicket>(HeldTicket{std::move(ticket.value()), event_key.clone(), status, {bytes.begin(), bytes.end()}});
}


Status SecureElement::refuse_if_bought(std::uint32_t event_id) {
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
    auto held = db_.prepare("SELECT ticket_id FROM tickets WHERE event_id = ? AND status = " + sql_literal(kStbTicketStatuses, StbTicketStatus::valid) +
                          " AND ticket_id < ? ORDER BY ticket_id");
    held.bind(1, event_id).bind(2, static_cast<std::int64_t>(kImpulseTicketBase));
    if (held.step()) {
      return make_error(Errc::already_exists, "this STB already holds ticket " + std::to_string(held.column_int(0)) + " for event " +
                                                  std::to_string(event_id) + ": nothing charged");
    }
  }
  return ok_status();
}

Result<std::string> SecureElement::handset_purchase_code(std::uint16_t event_id, std::uint64_t expires) {
  // The engine refuses a second sale anyway; refusing here spares the viewer a code that can only fail.
  USHER_CHECK(refuse_if_bought(event_id));
  return request_code(event_id, expires);
}

Result<entitlement::HistoryRecord> SecureElement::impulse_buy(std::uint32_t event_id, std::uint64_t now) {
  sql::Transaction tx(db_);
  USHER_CHECK(refuse_if_bought(event_id));
  auto offer = db_.prepare(
      "SELECT service_id, start, duration, price_minor, currency, event_key, title, min_age, mac FROM offers WHERE event_id = ?");
  offer.bind(1, event_id);
  if (!offer.step()) {
    return make_error(Errc::not_found, "event " + std::to_string(event_id) +
                                           " is not offered for impulse purchase on this STB (buy it with your handset)");
  }
  const auto offered_key = offer.column_blob(5);
  if (offered_key.size() != 32 ||
      !tag_ok(offer_tag(store_key_, event_id, offer.column_int(0), offer.column_int(1), offer.column_int(2), offer.column_int(3),
                        offer.column_text(4), offer.column_int(7), offered_key, offer.column_text(6)),
              offer.column_blob(8))) {
    return make_error(Errc::auth_failed, "the stored offer for event " + std::to_string(event_id) +
                                             " does not verify (edited outside the STB): not sold");
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
    USHER_TRY(auto room, stored_room());
    if (room) {
      stay_id = (room)->stay_id;
      if (stay_id == 0) return make_error(Errc::not_entitled, "this room is vacant: no purchases until a guest checks in");
      limit = (room)->limit;
    }
  }
  if (!limit) {
    USHER_TRY(auto credit, stored_credit());
    if (credit) limit = (credit)->limit;
  }
  // Prepaid credit ([0269] prepayment) is spent first; the rest goes on the credit line.
  std::uint8_t payment = entitlement::kPaymentCredit;
  std::optional<entitlement::Money> prepaid;
  if (stay_id == 0) {
    USHER_TRY(auto pre, stored_prepaid());
    prepaid = pre;
    if (prepaid && prepaid->currency == price.currency && prepaid->minor >= price.minor) payment = entitlement::kPaymentPrepaid;
  }
  if (payment == entitlement::kPaymentCredit) {
    if (!limit) return make_error(Errc::not_entitled, "this STB has no credit line: pay with your handset (--pay-by-handset)");
    // The collection deadline: purchases on credit not relayed in time stop the next ones.
    USHER_TRY(auto overdue, collection_overdue(now));
    if (overdue) {
      return make_error(Errc::not_entitled, "purchases on this STB's credit were due to be relayed by " + format_utc(*overdue) +
                                                ": relay your history with your handset (usher wallet relay) before buying more");
    }
    if (limit->currency != price.currency) return make_error(Errc::not_entitled, "the event is priced in another currency than the credit line");
    // What is used of the credit line is read from the history itself, signed and tagged: a row
    // edited to look settled, or damaged, stops purchases on credit instead of freeing credit.
    const auto stored = stored_history();
    if (stored.refused != 0) {
      return make_error(Errc::auth_failed, std::to_string(stored.refused) + " records of the stored viewing history do not verify "
                                               "(edited outside the STB): no purchases on credit until billing settles them");
    }
    const entitlement::Money used{stored.unsettled_credit().minor, limit->currency};
    if (used.minor + price.minor > limit->minor) {
      return make_error(Errc::not_entitled, "credit limit " + entitlement::format_money(*limit) + " reached (" +
                                                entitlement::format_money(used) + " of purchases not yet settled): " +
                                                (stay_id != 0 ? "ask the front desk" : "relay your history with your handset"));
    }
  } else {
    write_prepaid({prepaid->minor - price.minor, prepaid->currency});
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
    auto ins = db_.prepare("INSERT INTO history (sequence, event_id, price_minor, payment, record, hash, mac) VALUES (?, ?, ?, ?, ?, ?, ?)");
    ins.bind(1, static_cast<std::int64_t>(rec.sequence)).bind(2, event_id).bind(3, price.minor).bind(4, payment)
        .bind(5, rec.encode()).bind(6, std::span<const std::uint8_t>(hash))
        .bind(7, history_tag(store_key_, static_cast<std::int64_t>(rec.sequence), hash, false, 0));
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
  {
    // Signed by this STB (the operator signs the tickets it issues), and tagged like any other row.
    auto k = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
    k.step();
    t.sign(k.column_key(0));
  }
  const auto ticket_bytes = t.encode();
  const Key256 event_key(std::span<const std::uint8_t, 32>(offered_key.data(), 32));
  // A refused row with the same local id (copied from another box) gives way to the real one.
  auto tk = db_.prepare("INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?, " + sql_literal(kStbTicketStatuses, StbTicketStatus::valid) + ", ?, 1, ?)");
  tk.bind(1, static_cast<std::int64_t>(t.ticket_id)).bind(2, event_id).bind(3, ticket_bytes).bind(4, event_key.bytes())
      .bind(5, static_cast<std::int64_t>(now)).bind(6, ticket_tag(t.ticket_id, event_id, ticket_bytes, event_key, StbTicketStatus::valid));
  tk.run();
  tx.commit();
  load();
  return rec;
}

std::vector<entitlement::HistoryRecord> SecureElement::history(bool unsettled_only) {
  std::vector<entitlement::HistoryRecord> out;
  for (auto& r : stored_history().records) {
    if (!unsettled_only || !r.settled) out.push_back(std::move(r.record));
  }
  return out;
}

Status SecureElement::accept_billing_certificate(std::span<const std::uint8_t> bytes) {
  auto cert = entitlement::BillingCertificate::decode(bytes);
  if (!cert) return cert.error();
  if (!cert->verify(issuer_public_)) {
    return make_error(Errc::auth_failed, "billing certificate of billing " + std::to_string(cert->billing_id) +
                                             " is not signed by the operator: refused");
  }
  USHER_CHECK(cert->sealing_key());
  auto held = billing_certificate();
  if (held && std::ranges::equal(held->encode(), bytes)) return ok_status();  // the usual case: the one already held
  if (held && held->billing_id == cert->billing_id && held->issued > cert->issued) {
    return make_error(Errc::stale, "billing " + std::to_string(cert->billing_id) +
                                       "'s certificate is older than the one this STB holds: refused");
  }
  auto st = db_.prepare("INSERT OR REPLACE INTO billing_certificate VALUES (1, ?, ?)");
  st.bind(1, bytes).bind(2, static_cast<std::int64_t>(unix_now()));
  st.run();
  return ok_status();
}

Result<entitlement::BillingCertificate> SecureElement::billing_certificate() {
  auto st = db_.prepare("SELECT certificate FROM billing_certificate WHERE id = 1");
  if (!st.step()) {
    return make_error(Errc::not_found, "this STB holds no billing certificate, so it cannot seal its history for billing: the handset "
                                       "hands it over with its request for the history (usher wallet relay), a hotel room STB "
                                       "gets it with its room state");
  }
  auto cert = entitlement::BillingCertificate::decode(st.column_blob(0));
  if (!cert || !cert->verify(issuer_public_) || !cert->sealing_key()) {
    return make_error(Errc::auth_failed, "the billing certificate stored in this STB does not verify: it was edited; the handset's "
                                         "next relay brings billing's certificate again");
  }
  return *cert;
}

Result<std::vector<std::uint8_t>> SecureElement::sealed_unsettled_history() { return seal_for_billing(history(true)); }

Result<std::vector<std::uint8_t>> SecureElement::seal_for_billing(std::span<const entitlement::HistoryRecord> records) {
  USHER_TRY(auto cert, billing_certificate());
  return entitlement::seal_history(records, stb_id_, cert.billing_id, cert.billing_x25519);
}

Result<entitlement::Money> SecureElement::credit_limit() {
  {
    USHER_TRY(auto room, stored_room());
    if (room) {
      if ((room)->stay_id == 0) return make_error(Errc::not_found, "vacant room: no credit");
      return (room)->limit;
    }
  }
  auto credit = stored_credit();
  if (!credit) return credit.error();
  if (!*credit) return make_error(Errc::not_found, "no credit line");
  return (*credit)->limit;
}

SecureElement::SettlementStatus SecureElement::settlement_status() {
  SettlementStatus out;
  const auto stored = stored_history();
  for (const auto& r : stored.records) {
    if (r.settled || r.record.payment != entitlement::kPaymentCredit) continue;
    ++out.unsettled_records;
    out.unsettled.minor += r.record.price.minor;
  }
  if (auto limit = credit_limit(); limit) {
    out.unsettled.currency = limit->currency;
    out.credit_limit = *limit;
  }
  if (auto pre = stored_prepaid(); pre) out.prepaid = *pre;
  if (auto deadline = stored_collection(); deadline && *deadline && (*deadline)->within != 0) {
    out.collect_within = (*deadline)->within;
    if (const auto* oldest = stored.oldest_unsettled_credit(); oldest != nullptr) out.collect_by = oldest->record.time + out.collect_within;
  }
  {
    auto st = db_.prepare("SELECT last_settled FROM chain WHERE id = 1");
    if (st.step()) out.last_settled = static_cast<std::uint64_t>(st.column_int(0));
  }
  if (auto room = stored_room(); room && *room) {
    out.hotel_room = true;
    out.stay_id = (*room)->stay_id;
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
    USHER_TRY(auto cur, stored_prepaid());
    if (cur && (cur)->currency != rc->amount.currency) {
      return make_error(Errc::invalid_argument, "prepaid credit is held in " + entitlement::to_string((cur)->currency));
    }
    write_prepaid({(cur ? (cur)->minor : 0) + rc->amount.minor, rc->amount.currency});
  } else {
    // Exactly the records first..last, the last one with the hash billing signed, all unsettled;
    // judged on the records as signed and tagged (a row that does not verify counts as unsettled,
    // and billing's receipt settles it).
    const auto stored = stored_history();
    std::int64_t held = 0;
    std::int64_t settled = 0;
    bool last_found = false;
    for (const auto& r : stored.records) {
      if (r.record.sequence < rc->first_sequence || r.record.sequence > rc->last_sequence) continue;
      ++held;
      settled += r.settled ? 1 : 0;
      if (r.record.sequence == rc->last_sequence) {
        last_found = true;
        const auto h = r.record.hash();
        if (!std::equal(h.begin(), h.end(), rc->last_hash.begin(), rc->last_hash.end())) {
          return make_error(Errc::auth_failed, "receipt " + std::to_string(rc->receipt_id) + " does not match this STB's history");
        }
      }
    }
    if (!last_found) return make_error(Errc::not_found, "receipt " + std::to_string(rc->receipt_id) + " names records this STB does not hold");
    const auto expected = static_cast<std::int64_t>(rc->last_sequence - rc->first_sequence + 1);
    if (held != expected) return make_error(Errc::not_found, "receipt " + std::to_string(rc->receipt_id) + " covers records this STB does not hold");
    if (settled == held) return make_error(Errc::replayed, "the records of receipt " + std::to_string(rc->receipt_id) + " are already settled");
    if (settled != 0) return make_error(Errc::stale, "receipt " + std::to_string(rc->receipt_id) + " overlaps records settled by another receipt");
    auto upd = db_.prepare("UPDATE history SET settled = 1, receipt_id = ?, mac = ? WHERE sequence = ?");
    for (const auto& r : stored.records) {
      if (r.record.sequence < rc->first_sequence || r.record.sequence > rc->last_sequence) continue;
      const auto h = r.record.hash();
      upd.reset();
      upd.bind(1, static_cast<std::int64_t>(rc->receipt_id))
          .bind(2, history_tag(store_key_, static_cast<std::int64_t>(r.record.sequence), h, true, static_cast<std::int64_t>(rc->receipt_id)))
          .bind(3, static_cast<std::int64_t>(r.record.sequence));
      upd.run();
      out.records_settled += static_cast<std::uint64_t>(db_.changes());
    }
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
    // A stored row that does not verify is replaced by billing's signed word.
    auto cur = stored_room();
    if (cur && *cur && (*cur)->counter >= state->counter) {
      return make_error(Errc::replayed, "room state " + std::to_string(state->counter) + " is not newer than the one applied");
    }
  }
  if (state->clear) {
    // The last guest's purchases must have reached billing before they are wiped.
    {
      const auto stored = stored_history();
      const auto open = std::count_if(stored.records.begin(), stored.records.end(), [](const StoredRecord& r) { return !r.settled; });
      if (open != 0) return make_error(Errc::not_entitled, std::to_string(open) + " purchases in this room are not collected yet");
    }
    db_.exec("DELETE FROM history; DELETE FROM tickets; DELETE FROM revoked_tickets; DELETE FROM prepaid;");
  }
  const auto currency = entitlement::to_string(state->credit_limit.currency);
  auto st = db_.prepare("INSERT OR REPLACE INTO room VALUES (1, ?, ?, ?, ?, ?, ?)");
  st.bind(1, static_cast<std::int64_t>(state->counter)).bind(2, static_cast<std::int64_t>(state->stay_id))
      .bind(3, state->credit_limit.minor).bind(4, currency).bind(5, state->billing_endpoint)
      .bind(6, room_tag(store_key_, static_cast<std::int64_t>(state->counter), static_cast<std::int64_t>(state->stay_id),
                        state->credit_limit.minor, currency, state->billing_endpoint));
  st.run();
  // The hotel's billing is the one this room reports to: its history is sealed for it. A version 1
  // certificate still signs room states, but gives no key to seal for (the box says so at sealing).
  if (state->certificate.sealing_key()) {
    if (auto kept = accept_billing_certificate(state->certificate.encode()); !kept && kept.error().code != Errc::stale) return kept.error();
  }
  tx.commit();
  load();
  return ok_status();
}

std::string SecureElement::billing_endpoint() {
  auto room = stored_room();
  if (!room || !*room) return {};  // an edited room state is not followed to another endpoint
  return (*room)->billing_endpoint;
}

Status SecureElement::mark_watched(std::uint32_t event_id) {
  // Only tickets that verified at load are rewritten (each with its new tag); in memory they are
  // "used" even when the disk cannot take it, and stay honoured either way.
  const bool unwatched = std::any_of(tickets_.begin(), tickets_.end(),
                                     [&](const HeldTicket& t) { return t.ticket.event_id == event_id && t.status == StbTicketStatus::valid; });
  if (!unwatched) return ok_status();  // the usual case: every ECM of an event being watched
  try {
    sql::Transaction tx(db_);
    bool changed = false;
    for (auto& t : tickets_) {
      if (t.ticket.event_id != event_id || t.status != StbTicketStatus::valid) continue;
      t.status = StbTicketStatus::used;
      changed = true;
      auto st = db_.prepare("UPDATE tickets SET status = " + sql_literal(kStbTicketStatuses, StbTicketStatus::used) +
                            ", mac = ? WHERE ticket_id = ? AND status = " + sql_literal(kStbTicketStatuses, StbTicketStatus::valid));
      st.bind(1, ticket_tag(t.ticket.ticket_id, event_id, t.bytes, t.event_key, StbTicketStatus::used)).bind(2, static_cast<std::int64_t>(t.ticket.ticket_id));
      st.run();
    }
    if (changed) tx.commit();
  } catch (const std::exception& e) {
    return make_error(Errc::storage, "ticket for event " + std::to_string(event_id) + " not marked watched: " + e.what());
  }
  return ok_status();
}

std::vector<entitlement::DeliveryAck> SecureElement::pending_acks() {
  std::vector<entitlement::DeliveryAck> out;
  Secret<32> key;
  {
    auto k = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
    k.step();
    key = k.column_key(0);
  }
  // Acknowledged only for tickets that verify: a row added to the store is not a delivery. Read
  // afresh, as tickets come in through `stb run` (broadcast) while `stb link` serves the handset.
  (void)reload();  // if the store cannot be read now, what was loaded before is what verified
  std::set<std::uint64_t> held;
  for (const auto& t : tickets_) held.insert(t.ticket.ticket_id);
  auto st = db_.prepare("SELECT ticket_id, received FROM tickets WHERE ack_relayed = 0 ORDER BY ticket_id");
  while (st.step()) {
    if (!held.contains(static_cast<std::uint64_t>(st.column_int(0)))) continue;
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
    if (t.status == StbTicketStatus::valid || t.status == StbTicketStatus::used) found = &t;
    if (t.status == StbTicketStatus::revoked) revoked = true;
  }
  if (found == nullptr) return make_error(Errc::not_entitled, ev + (revoked ? ": ticket revoked" : ": no ticket on this STB"));
  USHER_TRY(auto ecm, entitlement::decode_ecm_part(section, part, found->event_key));
  if (ecm.time_unix < found->ticket.valid_from || ecm.time_unix >= found->ticket.valid_until) {
    return make_error(Errc::not_entitled, ev + ": ticket valid " + format_utc(found->ticket.valid_from) + " to " +
                                              format_utc(found->ticket.valid_until) + ", broadcast time is " + format_utc(ecm.time_unix));
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
    if (t.ticket.ticket_id == ticket_id) return to_string(t.status);
  }
  return "unknown";
}

Result<entitlement::EcmPeriod> SecureElement::open_ecm(std::span<const std::uint8_t> section, entitlement::EcmPart part) const {
  USHER_TRY(auto header, entitlement::peek_ecm(section));
  if (header.audience(part) != 0) return open_ppv_ecm(section, header, part);
  const auto it = held_.find(header.service_id);
  const std::string svc = "service " + std::to_string(header.service_id);
  if (it == held_.end()) return make_error(Errc::not_entitled, svc + ": no entitlement on this STB (no subscription)");
  const auto& h = it->second;
  if (h.info.revoked) return make_error(Errc::not_entitled, svc + ": entitlement revoked");
  // The ECM names the version of the service key it is sealed under: across a rotation the current
  // and the next version are both held.
  const auto key = h.keys.find(header.key_version);
  if (key == h.keys.end()) {
    std::string versions;
    for (const auto& [version, k] : h.keys) versions += (versions.empty() ? "" : ", ") + std::to_string(version);
    return make_error(Errc::not_entitled, svc + ": ECM uses key version " + std::to_string(header.key_version) +
                                              ", this STB holds version" + (h.keys.size() == 1 ? " " : "s ") + versions);
  }
  USHER_TRY(auto ecm, entitlement::decode_ecm_part(section, part, key->second));
  if (ecm.time_unix < h.info.not_before) {
    return make_error(Errc::not_entitled, svc + ": entitlement starts at " + format_utc(h.info.not_before) +
                                              ", broadcast time is " + format_utc(ecm.time_unix));
  }
  if (ecm.time_unix > h.info.not_after) {
    return make_error(Errc::not_entitled, svc + ": entitlement ended at " + format_utc(h.info.not_after) +
                                              ", broadcast time is " + format_utc(ecm.time_unix));
  }
  return ecm;
}

std::vector<Entitlement> SecureElement::entitlements() const {
  std::vector<Entitlement> out;
  for (const auto& [id, h] : held_) {
    out.push_back(h.info);
    for (const auto& [version, key] : h.keys) out.back().key_versions.push_back(version);
  }
  return out;
}

}  // namespace usher::stb
