#include "usher/entitlement/store.h"
#include "usher/core/clock.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "usher/core/hex.h"
#include "usher/core/home.h"
#include "usher/core/store_database.h"

namespace usher::entitlement {
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kRevokeCarouselSeconds = 7 * 86400;

crypto::PublicKey blob_key(const std::vector<std::uint8_t>& b) {
  crypto::PublicKey k{};
  if (b.size() == k.size()) std::copy(b.begin(), b.end(), k.begin());
  return k;
}

}  // namespace

// Step 1 is the schema of the stores written before versions were kept (user_version 0), in
// IF NOT EXISTS statements so that such a file is recognised as schema 1 and kept as it is.
// Add a step at the end to change the schema; never edit one that has shipped.
const sql::Schema& EntitlementStore::schema() {
  static const char* const kTablesV1 = R"(
    CREATE TABLE IF NOT EXISTS operator (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      ca_system_id INTEGER NOT NULL,
      x25519_private BLOB NOT NULL,
      x25519_public BLOB NOT NULL,
      created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS services (
      service_id INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      pass_day_price INTEGER,
      pass_currency TEXT);
    CREATE TABLE IF NOT EXISTS stbs (
      stb_id INTEGER PRIMARY KEY,
      x25519_public BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      next_emm_sequence INTEGER NOT NULL DEFAULT 1,
      registered INTEGER NOT NULL,
      account TEXT,
      credit_limit INTEGER,
      credit_currency TEXT);
    CREATE TABLE IF NOT EXISTS grants (
      stb_id INTEGER NOT NULL REFERENCES stbs(stb_id),
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      revoked INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (stb_id, service_id));
    CREATE TABLE IF NOT EXISTS signing (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS events (
      event_id INTEGER PRIMARY KEY,
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      start INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      title TEXT NOT NULL,
      min_age INTEGER NOT NULL,
      price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
      currency TEXT NOT NULL,
      event_key BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS cards (
      card_id INTEGER PRIMARY KEY AUTOINCREMENT,
      account TEXT NOT NULL,
      handset_public BLOB NOT NULL UNIQUE,
      currency TEXT NOT NULL,
      issued INTEGER NOT NULL,
      balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0));
    CREATE TABLE IF NOT EXISTS journal (
      tx_id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL,
      reference TEXT NOT NULL,
      created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS postings (
      tx_id INTEGER NOT NULL REFERENCES journal(tx_id),
      account TEXT NOT NULL,
      amount INTEGER NOT NULL,
      currency TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS postings_by_account ON postings(account);
    CREATE TABLE IF NOT EXISTS spend_nonces (
      card_id INTEGER NOT NULL,
      nonce BLOB NOT NULL,
      PRIMARY KEY (card_id, nonce));
    CREATE TABLE IF NOT EXISTS tickets (
      ticket_id INTEGER PRIMARY KEY AUTOINCREMENT,
      event_id INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      card_id INTEGER NOT NULL,
      status TEXT NOT NULL,
      ticket BLOB,
      delivered INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS settings (
      name TEXT PRIMARY KEY,
      value INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS packages (
      package_id INTEGER PRIMARY KEY,
      name TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS package_services (
      package_id INTEGER NOT NULL REFERENCES packages(package_id),
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      PRIMARY KEY (package_id, service_id));
    CREATE TABLE IF NOT EXISTS used_codes (
      code TEXT PRIMARY KEY,
      ticket_id INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS headends (
      headend_id INTEGER PRIMARY KEY,
      x25519_public BLOB NOT NULL,
      registered INTEGER NOT NULL);
    -- Signed requests answered (request_auth.h): the reply under the hash of the request's
    -- signature, kept while the request's time is within the window.
    CREATE TABLE IF NOT EXISTS signed_requests (
      replay_key BLOB PRIMARY KEY,
      card_id INTEGER NOT NULL,
      time INTEGER NOT NULL,
      reply BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS signed_requests_time ON signed_requests (time);
    CREATE TABLE IF NOT EXISTS requests (
      request_id BLOB PRIMARY KEY,
      reply BLOB NOT NULL,
      created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS emm_queue (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      carousel_until INTEGER NOT NULL,
      carousel_from INTEGER NOT NULL DEFAULT 0,
      created INTEGER NOT NULL DEFAULT 0,
      section BLOB NOT NULL,
      UNIQUE (stb_id, sequence));
    -- Events an STB bought on impulse (F4), as billing learns of them from relayed histories: they
    -- count as held, so a handset cannot sell the box the same event again.
    CREATE TABLE IF NOT EXISTS impulse_purchases (
      stb_id INTEGER NOT NULL,
      event_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      PRIMARY KEY (stb_id, event_id));
  )";
  // Step 3. The counter starts at the highest next number any box had, so that every box sees
  // higher numbers than before; stbs.next_emm_sequence is no longer used after it.
  static const auto add_groups = [](sql::Database& db) {
    db.exec(R"(
      CREATE TABLE emm_counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_sequence INTEGER NOT NULL);
      CREATE TABLE emm_groups (
        group_id INTEGER PRIMARY KEY,
        key_version INTEGER NOT NULL,
        group_key BLOB NOT NULL,
        members INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE group_members (
        stb_id INTEGER PRIMARY KEY REFERENCES stbs(stb_id),
        group_id INTEGER NOT NULL REFERENCES emm_groups(group_id),
        position INTEGER NOT NULL CHECK (position >= 0 AND position <= 255),
        UNIQUE (group_id, position));
      CREATE TABLE global_keys (
        key_version INTEGER PRIMARY KEY,
        global_key BLOB NOT NULL,
        created INTEGER NOT NULL);
      ALTER TABLE emm_queue ADD COLUMN address_type INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE emm_queue ADD COLUMN topic TEXT NOT NULL DEFAULT '';
      ALTER TABLE stbs ADD COLUMN cut_off INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX emm_queue_by_topic ON emm_queue (address_type, stb_id, topic);
      CREATE INDEX emm_groups_with_room ON emm_groups (group_id) WHERE members < 256;
      -- Boxes registered before groups get theirs at the next opening (it needs the operator's key).
      INSERT INTO settings (name, value) SELECT 'boxes_without_group', 1 WHERE EXISTS (SELECT 1 FROM stbs);
    )");
    std::int64_t next = 1;
    for (const char* query : {"SELECT COALESCE(MAX(next_emm_sequence), 1) FROM stbs", "SELECT COALESCE(MAX(sequence), 0) + 1 FROM emm_queue"}) {
      auto st = db.prepare(query);
      if (st.step()) next = std::max(next, st.column_int(0));
    }
    auto counter = db.prepare("INSERT INTO emm_counter VALUES (1, ?)");
    counter.bind(1, next);
    counter.run();
    Key256 global;
    crypto::random_bytes(global.mutable_bytes());
    auto key = db.prepare("INSERT INTO global_keys VALUES (1, ?, ?)");
    key.bind(1, global.bytes()).bind(2, static_cast<std::int64_t>(unix_now()));
    key.run();
  };
  static const sql::Schema kSchema("engine store", {{1, "the engine's tables", [](sql::Database& db) {
                                                        db.exec(kTablesV1);
                                                        add_one_valid_ticket_index(db);
                                                      }},
                                                     // Billings the operator certified: only they may ask for charges,
                                                     // STB keys and the rest of billing's requests.
                                                     {2, "billings the operator certified", sql::sql_steps(R"(
    CREATE TABLE billings (
      billing_id INTEGER PRIMARY KEY,
      ed25519_public BLOB NOT NULL,
      certified INTEGER NOT NULL);
  )")},
                                                     // The EMM feed (emm_changes): each queue entry gets the change
                                                     // number that added it (existing ones in id order) and a
                                                     // priority; removals are kept with theirs.
                                                     {3, "the EMM queue followed by change numbers", sql::sql_steps(R"(
    ALTER TABLE emm_queue ADD COLUMN change_number INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE emm_queue ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
    UPDATE emm_queue SET change_number = id;
    CREATE INDEX emm_queue_by_change ON emm_queue (change_number);
    CREATE INDEX emm_queue_by_until ON emm_queue (carousel_until);
    CREATE TABLE emm_removed (
      change_number INTEGER PRIMARY KEY,
      id INTEGER NOT NULL,
      removed INTEGER NOT NULL);
    CREATE INDEX emm_removed_by_time ON emm_removed (removed);
    INSERT INTO settings (name, value) SELECT 'emm_change', COALESCE(MAX(id), 0) FROM emm_queue;
    INSERT INTO settings (name, value) VALUES ('emm_removed_horizon', 0);
  )")},
                                                     // Groups of up to 256 boxes with their keys, the global key,
                                                     // one EMM sequence counter for the operator, and EMMs of every
                                                     // address on the queue (docs/architecture.md, "Key hierarchy").
                                                     {4, "groups, global key, operator-wide EMM sequence", add_groups},
                                                     // Service keys by version, each with the broadcast time it
                                                     // becomes current (rotation: the next one is announced
                                                     // ahead). `settled`: the group carousel was sealed again
                                                     // once it became current (without the older key).
                                                     // services.key_version and service_key keep the first
                                                     // version and are no longer read.
                                                     {5, "service key versions with their start times", sql::sql_steps(R"(
    CREATE TABLE service_key_versions (
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      starts INTEGER NOT NULL,
      settled INTEGER NOT NULL DEFAULT 1,
      PRIMARY KEY (service_id, key_version));
    INSERT INTO service_key_versions (service_id, key_version, service_key, starts, settled)
      SELECT service_id, key_version, service_key, 0, 1 FROM services;
  )")}});
  return kSchema;
}

// One valid ticket per event and STB, whatever the path that sold it. A store written before this
// rule may hold duplicates: it still opens (the purchase checks the rule inside its transaction
// either way), and gets the index at the first opening after they are revoked. Part of step 1,
// tried again at each opening that finds it missing (inside a savepoint: its failure undoes nothing
// else; an opening that finds it there takes no write lock).
void EntitlementStore::add_one_valid_ticket_index(sql::Database& db) {
  try {
    auto present = db.prepare(db.dialect() == sql::Dialect::sqlite
                                  ? "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'one_valid_ticket_per_event'"
                                  : "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'one_valid_ticket_per_event'");
    if (present.step()) return;
    sql::Transaction index(db);
    db.exec("CREATE UNIQUE INDEX IF NOT EXISTS one_valid_ticket_per_event ON tickets(stb_id, event_id) "
            "WHERE status = 'valid' AND event_id != 0");
    index.commit();
  } catch (const std::exception&) {
  }
}

Status EntitlementStore::bring_forward(sql::Database& db, const std::string& path) {
  USHER_CHECK(schema().migrate(db, path));
  add_one_valid_ticket_index(db);
  return ok_status();
}

namespace {

const StoreNames kStoreNames{EntitlementStore::kDatabaseName, "engine"};

// The operator's private keys as the home keeps them when the store is on a database server:
// operator.key, mode 0600, beside operator.pub. On SQLite they stay in entitlement.db, which is in
// the home already.
struct OperatorKeyFile {
  Key256 x25519_private;
  crypto::PublicKey x25519_public{};
  Key256 ed25519_private;
  crypto::PublicKey ed25519_public{};
};

Status write_operator_key_file(const std::string& home, const OperatorKeyFile& keys) {
  const auto priv = [](const Key256& k) { return std::vector<std::uint8_t>(k.bytes().begin(), k.bytes().end()); };
  const auto pub = [](const crypto::PublicKey& k) { return std::vector<std::uint8_t>(k.begin(), k.end()); };
  return write_key_file((fs::path(home) / EntitlementStore::kOperatorKeyName).string(),
                        "Usher operator private keys: keep this file secret, and on the engines of this operator only",
                        {{"x25519_private", priv(keys.x25519_private)},
                         {"x25519_public", pub(keys.x25519_public)},
                         {"ed25519_private", priv(keys.ed25519_private)},
                         {"ed25519_public", pub(keys.ed25519_public)}});
}

Result<OperatorKeyFile> read_operator_key_file(const std::string& home) {
  const std::string path = (fs::path(home) / EntitlementStore::kOperatorKeyName).string();
  auto fields = read_key_file(path, {"x25519_private", "x25519_public", "ed25519_private", "ed25519_public"});
  if (!fields) {
    return make_error(Errc::storage, fields.error().message + ": the operator's keys on a database server are kept in the home " +
                                         "(copy the home that `usher entitlement init --db` made)");
  }
  auto& f = *fields;
  OperatorKeyFile keys;
  keys.x25519_private = Key256(std::span<const std::uint8_t, 32>(f["x25519_private"].data(), 32));
  keys.x25519_public = blob_key(f["x25519_public"]);
  keys.ed25519_private = Key256(std::span<const std::uint8_t, 32>(f["ed25519_private"].data(), 32));
  keys.ed25519_public = blob_key(f["ed25519_public"]);
  if (crypto::x25519_public(keys.x25519_private) != keys.x25519_public || crypto::ed25519_public(keys.ed25519_private) != keys.ed25519_public) {
    return make_error(Errc::storage, path + " holds a private key that does not match its public key");
  }
  return keys;
}

}  // namespace

Result<EntitlementStore> EntitlementStore::create(const std::string& home, std::uint16_t ca_system_id, const std::string& database_url) {
  if (has_store_database(home, kStoreNames)) return make_error(Errc::already_exists, "an operator already exists in " + home);
  return making_store_home(home, database_url, [&] { return create_in(home, ca_system_id); });
}

Result<EntitlementStore> EntitlementStore::create_in(const std::string& home, std::uint16_t ca_system_id) {
  USHER_TRY(auto db, open_store_database(home, kStoreNames, IfMissing::create));
  USHER_CHECK(bring_forward(db, db.where()));
  const bool keys_in_home = db.dialect() != sql::Dialect::sqlite;
  auto pair = crypto::X25519KeyPair::generate();
  auto signing = crypto::Ed25519KeyPair::generate();
  const std::vector<std::uint8_t> none;
  Status stored = db.atomically(
      [&] {
        auto existing = db.prepare("SELECT 1 FROM operator");
        if (existing.step()) throw std::runtime_error("it already holds an operator (use that operator's home, with its keys)");
        auto st = db.prepare("INSERT INTO operator VALUES (1, ?, ?, ?, ?)");
        st.bind(1, ca_system_id).bind(2, keys_in_home ? std::span<const std::uint8_t>(none) : pair.private_key.bytes())
            .bind(3, pair.public_key).bind(4, static_cast<std::int64_t>(unix_now()));
        st.run();
        auto sign = db.prepare("INSERT INTO signing VALUES (1, ?, ?)");
        sign.bind(1, keys_in_home ? std::span<const std::uint8_t>(none) : signing.private_key.bytes()).bind(2, signing.public_key);
        sign.run();
      },
      "cannot make the operator in " + db.where());
  USHER_CHECK(stored);
  if (keys_in_home) {
    USHER_CHECK(write_operator_key_file(home, {pair.private_key.clone(), pair.public_key, signing.private_key.clone(), signing.public_key}));
  }
  EntitlementStore store(std::move(db), ca_system_id, pair.public_key);
  if (keys_in_home) {
    store.operator_private_ = pair.private_key.clone();
    store.signing_private_ = signing.private_key.clone();
  }
  std::ofstream pub(fs::path(home) / kOperatorPublicName, std::ios::trunc);
  char id[8];
  std::snprintf(id, sizeof(id), "%04x", ca_system_id);
  pub << "# Usher operator public identity: STBs are initialised with this file\n"
      << "ca_system_id=" << id << "\nx25519=" << to_hex(pair.public_key) << "\ned25519=" << to_hex(store.signing_public())
      << "\n";
  if (!pub) return make_error(Errc::io, "cannot write operator.pub in " + home);
  return store;
}

Result<EntitlementStore> EntitlementStore::open(const std::string& home) {
  if (!has_store_database(home, kStoreNames)) {
    return make_error(Errc::not_found, "no operator in " + home + " (run `usher entitlement init --home " + home + "` first)");
  }
  USHER_TRY(auto db, open_store_database(home, kStoreNames, IfMissing::refuse));
  const std::string where = db.where();
  USHER_CHECK(bring_forward(db, where));
  auto st = db.prepare("SELECT ca_system_id, x25519_public FROM operator WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, where + " has no operator record");
  const auto ca = static_cast<std::uint16_t>(st.column_int(0));
  const auto pub = blob_key(st.column_blob(1));
  std::optional<OperatorKeyFile> keys;
  if (db.dialect() != sql::Dialect::sqlite) {
    USHER_TRY(keys, read_operator_key_file(home));
    if (keys->x25519_public != pub) {
      return make_error(Errc::storage, "the operator key in " + home + " is not the key of the operator in " + where + ": refused");
    }
  }
  EntitlementStore store(std::move(db), ca, pub);
  if (keys) {
    if (keys->ed25519_public != store.signing_public()) {
      return make_error(Errc::storage, "the signing key in " + home + " is not the key of the operator in " + where + ": refused");
    }
    store.operator_private_ = std::move(keys->x25519_private);
    store.signing_private_ = std::move(keys->ed25519_private);
  }
  USHER_CHECK(store.assign_missing_groups());
  return store;
}

Secret<32> EntitlementStore::operator_private() {
  if (operator_private_) return operator_private_->clone();
  auto st = db_.prepare("SELECT x25519_private FROM operator WHERE id = 1");
  st.step();
  return st.column_key(0);
}

Result<ServiceInfo> EntitlementStore::add_service(std::uint16_t service_id, const std::string& name) {
  if (service_id == 0) return make_error(Errc::invalid_argument, "service id 0 is reserved (network PID in the PAT)");
  auto exists = db_.prepare("SELECT 1 FROM services WHERE service_id = ?");
  exists.bind(1, service_id);
  if (exists.step()) return make_error(Errc::already_exists, "service " + std::to_string(service_id) + " already exists");
  Key256 key;
  crypto::random_bytes(key.mutable_bytes());
  sql::Transaction tx(db_);
  auto st = db_.prepare("INSERT INTO services (service_id, name, key_version, service_key) VALUES (?, ?, 1, ?)");
  st.bind(1, service_id).bind(2, name).bind(3, key.bytes());
  st.run();
  auto version = db_.prepare("INSERT INTO service_key_versions (service_id, key_version, service_key, starts, settled) VALUES (?, 1, ?, 0, 1)");
  version.bind(1, service_id).bind(2, key.bytes());
  version.run();
  tx.commit();
  return ServiceInfo{service_id, name, 1};
}

std::vector<ServiceInfo> EntitlementStore::services() {
  std::vector<ServiceInfo> out;
  // With the version current now.
  auto st = db_.prepare(
      "SELECT s.service_id, s.name, (SELECT MAX(v.key_version) FROM service_key_versions v WHERE v.service_id = s.service_id AND v.starts <= ?) "
      "FROM services s ORDER BY s.service_id");
  st.bind(1, static_cast<std::int64_t>(unix_now()));
  while (st.step()) {
    out.push_back({static_cast<std::uint16_t>(st.column_int(0)), st.column_text(1), static_cast<std::uint16_t>(st.column_int(2))});
  }
  return out;
}

Result<ServiceKeys> EntitlementStore::service_keys(std::uint16_t service_id, std::uint64_t at) {
  const auto version = [&](const char* query) -> std::optional<ServiceKeyVersion> {
    auto st = db_.prepare(query);
    st.bind(1, service_id).bind(2, static_cast<std::int64_t>(std::min<std::uint64_t>(at, kLatestGrantEnd)));
    if (!st.step()) return std::nullopt;
    return ServiceKeyVersion{static_cast<std::uint16_t>(st.column_int(0)), st.column_key(1), static_cast<std::uint64_t>(st.column_int(2))};
  };
  auto current = version(
      "SELECT key_version, service_key, starts FROM service_key_versions WHERE service_id = ? AND starts <= ? "
      "ORDER BY key_version DESC LIMIT 1");
  if (!current) return make_error(Errc::not_found, "no service " + std::to_string(service_id) + " in the catalogue");
  ServiceKeys keys{std::move(*current), version("SELECT key_version, service_key, starts FROM service_key_versions "
                                                "WHERE service_id = ? AND starts > ? ORDER BY key_version LIMIT 1")};
  return keys;
}

Result<ServiceKey> EntitlementStore::service_key(std::uint16_t service_id) {
  USHER_TRY(auto keys, service_keys(service_id, unix_now()));
  return ServiceKey{keys.current.key_version, std::move(keys.current.key)};
}

Status EntitlementStore::add_package(std::uint16_t package_id, const std::string& name,
                                     const std::vector<std::uint16_t>& services) {
  if (services.empty()) return make_error(Errc::invalid_argument, "a package needs at least one service");
  sql::Transaction tx(db_);
  {
    auto exists = db_.prepare("SELECT 1 FROM packages WHERE package_id = ?");
    exists.bind(1, package_id);
    if (exists.step()) return make_error(Errc::already_exists, "package " + std::to_string(package_id) + " already exists");
  }
  auto ins = db_.prepare("INSERT INTO packages VALUES (?, ?)");
  ins.bind(1, package_id).bind(2, name);
  ins.run();
  for (auto service : services) {
    if (!service_key(service)) return make_error(Errc::not_found, "no service " + std::to_string(service));
    auto member = db_.prepare("INSERT INTO package_services VALUES (?, ?) ON CONFLICT DO NOTHING");
    member.bind(1, package_id).bind(2, service);
    member.run();
  }
  tx.commit();
  return ok_status();
}

std::vector<std::pair<std::uint16_t, std::string>> EntitlementStore::packages() {
  std::vector<std::pair<std::uint16_t, std::string>> out;
  auto st = db_.prepare("SELECT package_id, name FROM packages ORDER BY package_id");
  while (st.step()) out.emplace_back(static_cast<std::uint16_t>(st.column_int(0)), st.column_text(1));
  return out;
}

Result<std::vector<std::uint16_t>> EntitlementStore::package_services(std::uint16_t package_id) {
  std::vector<std::uint16_t> out;
  auto st = db_.prepare("SELECT service_id FROM package_services WHERE package_id = ? ORDER BY service_id");
  st.bind(1, package_id);
  while (st.step()) out.push_back(static_cast<std::uint16_t>(st.column_int(0)));
  if (out.empty()) return make_error(Errc::not_found, "no package " + std::to_string(package_id));
  return out;
}

Status EntitlementStore::grant_package(std::uint32_t stb_id, std::uint16_t package_id, std::uint64_t not_before,
                                       std::uint64_t not_after) {
  USHER_TRY(auto services, package_services(package_id));
  sql::Transaction tx(db_);
  for (auto service : services) {
    USHER_CHECK(grant(stb_id, service, not_before, not_after));
  }
  // The unique EMMs reach the box now; its group's member grant carries the same on the carousel,
  // for a box switched on later.
  USHER_CHECK(queue_group_grants({stb_id}, services, not_before, not_after));
  tx.commit();
  return ok_status();
}

Status EntitlementStore::revoke_package(std::uint32_t stb_id, std::uint16_t package_id) {
  USHER_TRY(auto services, package_services(package_id));
  return revoke_services(stb_id, services);
}

Status EntitlementStore::register_stb(const StbInfo& stb) {
  auto exists = db_.prepare("SELECT 1 FROM stbs WHERE stb_id = ?");
  exists.bind(1, stb.stb_id);
  if (exists.step()) return make_error(Errc::already_exists, "STB " + std::to_string(stb.stb_id) + " is already registered");
  if (!crypto::x25519(operator_private(), stb.x25519_public)) {
    return make_error(Errc::invalid_argument, "STB " + std::to_string(stb.stb_id) + " has an unusable X25519 public key");
  }
  sql::Transaction tx(db_);
  auto st = db_.prepare("INSERT INTO stbs (stb_id, x25519_public, ed25519_public, registered) VALUES (?, ?, ?, ?)");
  st.bind(1, stb.stb_id).bind(2, stb.x25519_public).bind(3, stb.ed25519_public).bind(4, static_cast<std::int64_t>(unix_now()));
  try {
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::already_exists, "STB " + std::to_string(stb.stb_id) + " is already registered");
  }
  USHER_CHECK(assign_group(stb.stb_id));
  tx.commit();
  return ok_status();
}

bool EntitlementStore::has_stb(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT 1 FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  return st.step();
}

std::vector<StbInfo> EntitlementStore::stbs() {
  std::vector<StbInfo> out;
  auto st = db_.prepare("SELECT stb_id, x25519_public, ed25519_public FROM stbs ORDER BY stb_id");
  while (st.step()) {
    out.push_back({static_cast<std::uint32_t>(st.column_int(0)), blob_key(st.column_blob(1)), blob_key(st.column_blob(2))});
  }
  return out;
}

Result<std::vector<std::uint8_t>> EntitlementStore::queue_emm(std::uint32_t stb_id, std::vector<EmmItem> items, EmmPriority priority,
                                                             std::uint64_t carousel_until, std::uint64_t carousel_from,
                                                             const std::string& topic) {
  USHER_TRY(auto key, emm_key_for(stb_id));
  // From the operator-wide counter (docs/messages.md, "Sequence numbers"), not the box's own.
  const auto sequence = draw_emm_sequence();
  EmmContent emm{stb_id, sequence, unix_now(), std::move(items)};
  const auto section = encode_emm(emm, key);
  store_emm(EmmAddressType::unique, stb_id, topic, sequence, section, carousel_from, carousel_until, static_cast<int>(priority));
  return section;
}

std::uint64_t EntitlementStore::next_emm_change() {
  // One counter per store, moved on inside the writer's transaction: under the store's one write
  // lock (SQLite's, or the advisory lock on PostgreSQL) change numbers follow commit order, so a
  // reader that has seen change N has seen every change below it.
  auto up = db_.prepare("UPDATE settings SET value = value + 1 WHERE name = 'emm_change'");
  up.run();
  auto st = db_.prepare("SELECT value FROM settings WHERE name = 'emm_change'");
  if (!st.step()) throw std::runtime_error("the store has no EMM change counter");
  return static_cast<std::uint64_t>(st.column_int(0));
}

void EntitlementStore::remove_emm_entry(std::int64_t id) {
  sql::Transaction tx(db_);
  auto del = db_.prepare("DELETE FROM emm_queue WHERE id = ?");
  del.bind(1, id);
  del.run();
  if (db_.changes() > 0) {
    auto rm = db_.prepare("INSERT INTO emm_removed (change_number, id, removed) VALUES (?, ?, ?)");
    rm.bind(1, static_cast<std::int64_t>(next_emm_change())).bind(2, id).bind(3, static_cast<std::int64_t>(unix_now()));
    rm.run();
  }
  tx.commit();
}

Result<Key256> EntitlementStore::emm_key_for(std::uint32_t stb_id) {
  auto cached = emm_keys_.find(stb_id);
  if (cached != emm_keys_.end()) return cached->second.clone();
  auto st = db_.prepare("SELECT x25519_public FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return make_error(Errc::not_found, "no STB " + std::to_string(stb_id));
  USHER_TRY(auto key, derive_emm_key(operator_private(), blob_key(st.column_blob(0)), ca_system_id_, stb_id));
  return emm_keys_.emplace(stb_id, std::move(key)).first->second.clone();
}

Status EntitlementStore::grant(std::uint32_t stb_id, std::uint16_t service_id, std::uint64_t not_before,
                               std::uint64_t not_after) {
  if (not_after <= not_before) return make_error(Errc::invalid_argument, "a grant must end after it starts");
  // Times are stored as SQLite's signed 64-bit integers and carried in EMMs: a later end would
  // come back negative (issue 8: `--days 999999999999999` queued an EMM with a negative expiry).
  if (not_after > kLatestGrantEnd) {
    return make_error(Errc::invalid_argument, "a grant cannot end after 9999-12-31 (got unix time " + std::to_string(not_after) + ")");
  }
  USHER_TRY(auto keys, service_keys(service_id, unix_now()));
  USHER_CHECK(check_not_cut_off(stb_id));
  sql::Transaction tx(db_);
  // A grant the box holds already, extended or moved: a renewal, which can wait behind new rights.
  bool renewal = false;
  {
    auto held = db_.prepare("SELECT 1 FROM grants WHERE stb_id = ? AND service_id = ? AND revoked = 0");
    held.bind(1, stb_id).bind(2, service_id);
    renewal = held.step();
  }
  auto st = db_.prepare(
      "INSERT INTO grants (stb_id, service_id, not_before, not_after, revoked) VALUES (?, ?, ?, ?, 0) "
      "ON CONFLICT (stb_id, service_id) DO UPDATE SET not_before = excluded.not_before, "
      "not_after = excluded.not_after, revoked = 0");
  st.bind(1, stb_id).bind(2, service_id).bind(3, static_cast<std::int64_t>(not_before)).bind(4, static_cast<std::int64_t>(not_after));
  try {
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::not_found, "no STB " + std::to_string(stb_id) + " (register it first)");
  }
  std::vector<EmmItem> items;
  // The key current now and, ahead of a rotation, the next one: the box switches with the others.
  items.emplace_back(EmmGrant{service_id, keys.current.key_version, keys.current.key.clone(), not_before, not_after});
  if (keys.next && not_after > keys.next->starts) {
    items.emplace_back(EmmGrant{service_id, keys.next->key_version, keys.next->key.clone(), not_before, not_after});
  }
  USHER_CHECK(queue_emm(stb_id, std::move(items), renewal ? EmmPriority::renewal : EmmPriority::urgent, not_after));
  tx.commit();
  return ok_status();
}

Status EntitlementStore::revoke(std::uint32_t stb_id, std::uint16_t service_id) { return revoke_services(stb_id, {service_id}); }

Status EntitlementStore::revoke_services(std::uint32_t stb_id, const std::vector<std::uint16_t>& services) {
  sql::Transaction tx(db_);
  for (auto service_id : services) {
    auto st = db_.prepare("UPDATE grants SET revoked = 1 WHERE stb_id = ? AND service_id = ?");
    st.bind(1, stb_id).bind(2, service_id);
    st.run();
    if (db_.changes() == 0) {
      return make_error(Errc::not_found, "STB " + std::to_string(stb_id) + " has no grant for service " + std::to_string(service_id));
    }
    // The revoke replaces the service's grant on the carousel: the EMMs that grant (or earlier
    // revoked) this service stop being repeated. Everything else queued for the box stays: its other
    // grants, and the tickets, credit, offers and other revokes it has paid for or must still learn
    // (they used to be dropped with the whole queue, and only live grants queued again).
    USHER_TRY(auto key, emm_key_for(stb_id));
    auto queued = db_.prepare("SELECT id, section FROM emm_queue WHERE stb_id = ? AND address_type = 0");
    queued.bind(1, stb_id);
    std::vector<std::int64_t> replaced;
    while (queued.step()) {
      const auto emm = decode_emm(queued.column_blob(1), key);
      if (!emm) continue;  // not ours to judge: left as it is
      const bool about_this_service = std::any_of(emm->items.begin(), emm->items.end(), [&](const EmmItem& item) {
        if (const auto* g = std::get_if<EmmGrant>(&item)) return g->service_id == service_id;
        if (const auto* r = std::get_if<EmmRevoke>(&item)) return r->service_id == service_id;
        return false;
      });
      if (about_this_service) replaced.push_back(queued.column_int(0));
    }
    for (const auto id : replaced) {
      remove_emm_entry(id);
    }
    std::vector<EmmItem> items;
    items.emplace_back(EmmRevoke{service_id});
    USHER_CHECK(queue_emm(stb_id, std::move(items), EmmPriority::urgent, unix_now() + kRevokeCarouselSeconds));
  }
  // And the group's carousel member grants of the services lose the box's bit: a box off during the
  // revoke's carousel time would otherwise take the older group grant later, its bit still set.
  if (auto membership = group_of(stb_id)) USHER_CHECK(refresh_group_grants_after_revoke(*membership, services));
  tx.commit();
  return ok_status();
}

std::vector<GrantInfo> EntitlementStore::grants() {
  std::vector<GrantInfo> out;
  auto st = db_.prepare("SELECT stb_id, service_id, not_before, not_after, revoked FROM grants ORDER BY stb_id, service_id");
  while (st.step()) {
    out.push_back({static_cast<std::uint32_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)),
                   static_cast<std::uint64_t>(st.column_int(2)), static_cast<std::uint64_t>(st.column_int(3)), st.column_int(4) != 0});
  }
  return out;
}

Status EntitlementStore::set_emm_repeat_seconds(std::uint64_t seconds) {
  auto st = db_.prepare("INSERT INTO settings VALUES ('emm_repeat_seconds', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
  st.bind(1, static_cast<std::int64_t>(seconds));
  st.run();
  return ok_status();
}

std::uint64_t EntitlementStore::emm_repeat_seconds() {
  auto st = db_.prepare("SELECT value FROM settings WHERE name = 'emm_repeat_seconds'");
  return st.step() ? static_cast<std::uint64_t>(st.column_int(0)) : 0;
}

std::vector<std::vector<std::uint8_t>> EntitlementStore::emm_sections(std::uint64_t now) {
  std::vector<std::vector<std::uint8_t>> out;
  // An EMM is repeated while what it carries lasts, and at most for the configured repeat time (if
  // any) from when it was first sent.
  const auto repeat = emm_repeat_seconds();
  auto st = db_.prepare(
      "SELECT section FROM emm_queue WHERE carousel_until >= ?1 AND carousel_from <= ?1 "
      "AND (CAST(?2 AS INTEGER) = 0 OR (CASE WHEN created > carousel_from THEN created ELSE carousel_from END) + ?2 >= ?1) "
      "ORDER BY id");
  st.bind(1, static_cast<std::int64_t>(now)).bind(2, static_cast<std::int64_t>(repeat));
  while (st.step()) out.push_back(st.column_blob(0));
  return out;
}

EmmFeedPage EntitlementStore::emm_changes(std::uint64_t cursor, std::size_t max_entries, std::size_t max_bytes) {
  EmmFeedPage page;
  max_entries = std::max<std::size_t>(max_entries, 1);
  // The last committed change first: every change up to it is committed (numbers follow commit
  // order), so the page can end there without skipping a row committed late with a lower number.
  std::uint64_t last = 0;
  std::uint64_t horizon = 0;
  {
    auto st = db_.prepare("SELECT name, value FROM settings WHERE name IN ('emm_change', 'emm_removed_horizon')");
    while (st.step()) (st.column_text(0) == "emm_change" ? last : horizon) = static_cast<std::uint64_t>(st.column_int(1));
  }
  if (cursor > last) cursor = 0;  // a cursor from another store (or a store made again): start over
  if (cursor != 0 && cursor < horizon) cursor = 0;  // the removals after it are forgotten
  page.restart = cursor == 0;
  const auto repeat = emm_repeat_seconds();
  std::uint64_t bound = last;
  std::vector<std::uint64_t> added_changes;  // beside page.added
  {
    auto st = db_.prepare(
        "SELECT id, priority, carousel_from, carousel_until, created, section, change_number FROM emm_queue "
        "WHERE change_number > ? AND change_number <= ? ORDER BY change_number LIMIT ?");
    st.bind(1, static_cast<std::int64_t>(cursor)).bind(2, static_cast<std::int64_t>(last)).bind(3, static_cast<std::int64_t>(max_entries + 1));
    std::size_t bytes = 0;
    while (st.step()) {
      const auto change = static_cast<std::uint64_t>(st.column_int(6));
      if (page.added.size() == max_entries || bytes >= max_bytes) {
        page.more = true;
        bound = change - 1;
        break;
      }
      EmmFeedEntry e;
      e.id = static_cast<std::uint64_t>(st.column_int(0));
      e.priority = static_cast<EmmPriority>(std::clamp<std::int64_t>(st.column_int(1), 0, kEmmPriorityLast));
      e.carousel_from = static_cast<std::uint64_t>(st.column_int(2));
      e.carousel_until = static_cast<std::uint64_t>(st.column_int(3));
      if (repeat != 0) {
        // As emm_sections: repeated at most `repeat` seconds from when it was first sent.
        const auto created = static_cast<std::uint64_t>(st.column_int(4));
        e.carousel_until = std::min(e.carousel_until, std::max(created, e.carousel_from) + repeat);
      }
      e.section = st.column_blob(5);
      bytes += e.section.size();
      page.added.push_back(std::move(e));
      added_changes.push_back(change);
    }
  }
  {
    auto st = db_.prepare("SELECT change_number, id FROM emm_removed WHERE change_number > ? AND change_number <= ? ORDER BY change_number LIMIT ?");
    st.bind(1, static_cast<std::int64_t>(cursor)).bind(2, static_cast<std::int64_t>(bound)).bind(3, static_cast<std::int64_t>(max_entries + 1));
    std::vector<std::pair<std::uint64_t, std::uint64_t>> removals;
    while (st.step()) removals.emplace_back(static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint64_t>(st.column_int(1)));
    if (removals.size() > max_entries) {
      // Too many removals for one page: it ends before the first left out, and the entries added
      // after that wait for the next page.
      bound = removals[max_entries].first - 1;
      removals.resize(max_entries);
      page.more = true;
    }
    if (!page.restart) {
      for (const auto& r : removals) page.removed.push_back(r.second);
    }
  }
  // What was added after the bound goes in the next page (ordered by change number: at the end).
  while (!page.added.empty() && added_changes.back() > bound) {
    page.added.pop_back();
    added_changes.pop_back();
  }
  page.next_cursor = bound;
  return page;
}

std::size_t EntitlementStore::purge_expired_emms(std::uint64_t now, std::size_t at_most) {
  if (now < kEmmExpiryMarginSeconds) return 0;
  const auto before = static_cast<std::int64_t>(now - kEmmExpiryMarginSeconds);
  const auto repeat = static_cast<std::int64_t>(emm_repeat_seconds());
  std::vector<std::int64_t> expired;
  if (repeat == 0) {
    // The usual case, on the index: as cheap with a million entries queued as with ten.
    auto st = db_.prepare("SELECT id FROM emm_queue WHERE carousel_until < ? LIMIT ?");
    st.bind(1, before).bind(2, static_cast<std::int64_t>(at_most));
    while (st.step()) expired.push_back(st.column_int(0));
  } else {
    auto st = db_.prepare(
        "SELECT id FROM emm_queue WHERE carousel_until < ?1 OR "
        "(CASE WHEN created > carousel_from THEN created ELSE carousel_from END) + ?2 < ?1 LIMIT ?3");
    st.bind(1, before).bind(2, repeat).bind(3, static_cast<std::int64_t>(at_most));
    while (st.step()) expired.push_back(st.column_int(0));
  }
  const bool forget = now > kEmmRemovalKeepSeconds;
  std::int64_t forgotten = 0;
  if (forget) {
    auto st = db_.prepare("SELECT MAX(change_number) FROM emm_removed WHERE removed < ?");
    st.bind(1, static_cast<std::int64_t>(now - kEmmRemovalKeepSeconds));
    if (st.step()) forgotten = st.column_int(0);
  }
  if (expired.empty() && forgotten == 0) return 0;
  sql::Transaction tx(db_);
  for (const auto id : expired) remove_emm_entry(id);
  if (forgotten > 0) {
    // A headend whose cursor is older than the removals forgotten here starts over (restart).
    auto del = db_.prepare("DELETE FROM emm_removed WHERE change_number <= ?");
    del.bind(1, forgotten);
    del.run();
    auto up = db_.prepare("UPDATE settings SET value = ? WHERE name = 'emm_removed_horizon' AND value < ?");
    up.bind(1, forgotten).bind(2, forgotten);
    up.run();
  }
  tx.commit();
  return expired.size();
}

Status EntitlementStore::set_emm_kbps(std::uint64_t kbps) {
  auto st = db_.prepare("INSERT INTO settings VALUES ('emm_kbps', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value");
  st.bind(1, static_cast<std::int64_t>(kbps));
  st.run();
  return ok_status();
}

std::uint64_t EntitlementStore::emm_kbps() {
  auto st = db_.prepare("SELECT value FROM settings WHERE name = 'emm_kbps'");
  return st.step() ? static_cast<std::uint64_t>(st.column_int(0)) : 0;
}

}  // namespace usher::entitlement
