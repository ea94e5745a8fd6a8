// Every SQLite store opens a file written by the previous schema (made with the exact SQL that code
// wrote, kept in tests/data/schema/ by scripts/dump-schemas.sh) and keeps its rows and takes new
// ones; a file written by a newer Usher is refused, left byte for byte as it was, also through the
// `usher` command line; and today's code still writes the newest dumped schema.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <tuple>

#include "cli_process.h"
#include "running_engine.h"
#include "temp_dir.h"
#include "usher/billing/billing_store.h"
#include "usher/core/crypto.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/messages.h"
#include "usher/entitlement/store.h"
#include "usher/headend/engine_link.h"
#include "usher/stb/local_link.h"
#include "usher/stb/secure_element.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher {
namespace {
namespace fs = std::filesystem;
using entitlement::EntitlementStore;

constexpr std::int64_t kT0 = 1'790'000'000;  // 2026-09-21

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string dump_path(const std::string& store, int version) {
  return std::string(USHER_TEST_DATA) + "/schema/" + store + "-v" + std::to_string(version) + ".sql";
}

// A store file as the code of that schema wrote it: its dumped SQL (with its user_version) run in
// a new file.
sql::Database make_from_dump(const std::string& path, const std::string& store, int version) {
  fs::create_directories(fs::path(path).parent_path());
  const auto dump = read_all(dump_path(store, version));
  EXPECT_FALSE(dump.empty()) << dump_path(store, version);
  auto db = sql::Database::open(path).value();
  db.exec(dump);
  return db;
}

int version_of(const std::string& path) {
  auto db = sql::Database::open_read_only(path).value();
  return sql::user_version(db);
}

// Sets the file's user_version one past what this code knows, and returns its bytes.
std::string make_newer(const std::string& path, const sql::Schema& schema) {
  {
    auto db = sql::Database::open(path, false).value();
    db.exec("PRAGMA user_version = " + std::to_string(schema.latest() + 1));
  }
  return read_all(path);
}

std::string newer_message(const std::string& path, const sql::Schema& schema) {
  return path + " was written by a newer Usher (schema " + std::to_string(schema.latest() + 1) + ", this one knows up to " +
         std::to_string(schema.latest()) + "): refused, nothing changed";
}

template <typename T>
void expect_newer_refused(const Result<T>& opened, const std::string& path, const sql::Schema& schema) {
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::storage);
  EXPECT_EQ(opened.error().message, newer_message(path, schema));
}

void bind_key(sql::Statement& st, int index, const crypto::PublicKey& key) { st.bind(index, std::span<const std::uint8_t>(key)); }

// --- The engine store ---

// entitlement.db of schema 1 with an operator, a service and an event, an STB, a card topped up with
// 50.00 EUR and a ticket for 12.50 EUR paid from it, the ledger balanced.
void write_engine_v1(const std::string& home) {
  auto db = make_from_dump(home + "/" + EntitlementStore::kDatabaseName, "engine", 1);
  auto op = crypto::X25519KeyPair::generate();
  auto signing = crypto::Ed25519KeyPair::generate();
  auto stb_x = crypto::X25519KeyPair::generate();
  auto stb_ed = crypto::Ed25519KeyPair::generate();
  auto handset = crypto::Ed25519KeyPair::generate();
  Key256 service_key;
  Key256 event_key;
  crypto::random_bytes(service_key.mutable_bytes());
  crypto::random_bytes(event_key.mutable_bytes());
  auto st = db.prepare("INSERT INTO operator VALUES (1, 19199, ?, ?, ?)");
  st.bind(1, op.private_key.bytes());
  bind_key(st, 2, op.public_key);
  st.bind(3, kT0);
  st.run();
  st = db.prepare("INSERT INTO signing VALUES (1, ?, ?)");
  st.bind(1, signing.private_key.bytes());
  bind_key(st, 2, signing.public_key);
  st.run();
  st = db.prepare("INSERT INTO services (service_id, name, key_version, service_key) VALUES (1, 'News', 1, ?)");
  st.bind(1, service_key.bytes());
  st.run();
  st = db.prepare("INSERT INTO events VALUES (7, 1, ?, 7200, 'Cup Final', 0, 1250, 'EUR', ?)");
  st.bind(1, kT0 + 86400).bind(2, event_key.bytes());
  st.run();
  st = db.prepare("INSERT INTO stbs (stb_id, x25519_public, ed25519_public, registered, account) VALUES (1001, ?, ?, ?, 'alice')");
  bind_key(st, 1, stb_x.public_key);
  bind_key(st, 2, stb_ed.public_key);
  st.bind(3, kT0);
  st.run();
  st = db.prepare("INSERT INTO cards (card_id, account, handset_public, currency, issued, balance) VALUES (1, 'alice', ?, 'EUR', ?, 3750)");
  bind_key(st, 1, handset.public_key);
  st.bind(2, kT0);
  st.run();
  db.exec(R"(
    INSERT INTO journal VALUES (1, 'top-up', 'test-auth-1', 1790000000);
    INSERT INTO postings VALUES (1, 'funding:test-acquirer', -5000, 'EUR'), (1, 'card:1', 5000, 'EUR');
    INSERT INTO tickets (ticket_id, event_id, stb_id, card_id, status) VALUES (1, 7, 1001, 1, 'valid');
    INSERT INTO journal VALUES (2, 'ppv', 'ticket:1', 1790000100);
    INSERT INTO postings VALUES (2, 'card:1', -1250, 'EUR'), (2, 'revenue:ppv', 1250, 'EUR');
  )");
}

TEST(PreviousSchema, TheEngineStoreOpensAStoreOfTheLastSchemaWithItsRowsAndTakesNewOnes) {
  testing::TempDir dir;
  const auto home = dir.file("operator");
  write_engine_v1(home);
  const auto path = home + "/" + EntitlementStore::kDatabaseName;
  ASSERT_EQ(version_of(path), 0);  // as today's stores are: written before versions were kept
  {
    auto store = EntitlementStore::open(home);
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ(store->ca_system_id(), 19199);
    auto stbs = store->stbs();
    ASSERT_EQ(stbs.size(), 1u);
    EXPECT_EQ(stbs[0].stb_id, 1001u);
    auto tickets = store->tickets();
    ASSERT_EQ(tickets.size(), 1u);
    EXPECT_EQ(tickets[0].event_id, 7u);
    EXPECT_EQ(tickets[0].status, entitlement::TicketStatus::valid);
    EXPECT_EQ(store->balance(1)->minor, 3750);
    EXPECT_TRUE(store->balances_match_ledger());
    EXPECT_EQ(store->ledger_check().first, 0);
    ASSERT_TRUE(store->holding(1001, 7).has_value());
    EXPECT_EQ(store->holding(1001, 7)->ticket_id, 1u);
    // The box got a group (schema 3) and its key EMM.
    ASSERT_TRUE(store->group_of(1001).has_value());
    EXPECT_EQ(store->group_of(1001)->position, 0);
    ASSERT_EQ(store->queued_emms().size(), 1u);
    EXPECT_EQ(store->queued_emms()[0].topic, "keys");
    // New writes: another STB, a top-up through the ledger.
    ASSERT_TRUE(store->register_stb({1002, crypto::X25519KeyPair::generate().public_key, crypto::Ed25519KeyPair::generate().public_key}).ok());
    entitlement::TestAcquirer acquirer;
    auto topped = store->top_up(1, 1000, "visa-test", acquirer);
    ASSERT_TRUE(topped.ok()) << topped.error().message;
    EXPECT_EQ(topped->minor, 4750);
    EXPECT_TRUE(store->balances_match_ledger());
  }
  EXPECT_EQ(version_of(path), EntitlementStore::schema().latest());
  auto again = EntitlementStore::open(home);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->stbs().size(), 2u);
  EXPECT_EQ(again->balance(1)->minor, 4750);
}

// A store from before versions made by older code still, without a table added since (as
// impulse_purchases was): step 1 finds the tables it has, keeps them, and adds the missing one.
TEST(PreviousSchema, StepOneCompletesAnUnversionedStoreThatLacksALaterTable) {
  testing::TempDir dir;
  const auto home = dir.file("operator");
  write_engine_v1(home);
  const auto path = home + "/" + EntitlementStore::kDatabaseName;
  {
    auto db = sql::Database::open(path, false).value();
    db.exec("DROP TABLE impulse_purchases");
  }
  auto store = EntitlementStore::open(home);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->tickets().size(), 1u);
  EXPECT_EQ(store->balance(1)->minor, 3750);
  EXPECT_EQ(store->holding(1001, 7)->ticket_id, 1u);
  EXPECT_FALSE(store->holding(1001, 8).has_value());  // no ticket: looked up in impulse_purchases
  store->record_impulse_purchases(1001, {});
  EXPECT_EQ(version_of(path), EntitlementStore::schema().latest());
}

TEST(NewerSchema, TheEngineStoreRefusesAFileFromANewerUsherAndLeavesIt) {
  testing::TempDir dir;
  const auto home = dir.file("operator");
  ASSERT_TRUE(EntitlementStore::create(home, 0x4aff).ok());
  const auto path = home + "/" + EntitlementStore::kDatabaseName;
  const auto before = make_newer(path, EntitlementStore::schema());
  expect_newer_refused(EntitlementStore::open(home), path, EntitlementStore::schema());
  EXPECT_EQ(read_all(path), before);
}

// The command line says so and fails; the file is as it was.
TEST(NewerSchema, UsherCommandsReportTheRefusalAndExitNonZero) {
  testing::TempDir dir;
  const auto home = dir.file("operator");
  ASSERT_EQ(testing::run(testing::usher("entitlement init --home " + home)).status, 0);
  const auto path = home + "/" + EntitlementStore::kDatabaseName;
  const auto before = make_newer(path, EntitlementStore::schema());
  auto listed = testing::run(testing::usher("entitlement device list --home " + home));
  EXPECT_NE(listed.status, 0);
  EXPECT_NE(listed.output.find(newer_message(path, EntitlementStore::schema())), std::string::npos) << listed.output;
  EXPECT_EQ(read_all(path), before);
}

// --- Billing ---

// A billing whose store an older Usher wrote: step 3 made it an X25519 key and open() wrote
// billing.pub with it and the signing key it had. Its certificate names no such key, so a relay is
// refused saying how to certify billing.pub; once the operator's certificate of it is installed,
// STBs seal for it and billing opens what they seal.
void expect_billing_certified_again(billing::BillingStore& store, EntitlementStore& engine, const std::string& home) {
  const auto signing_before = store.certificate().billing_public;
  auto pub = entitlement::BillingPublicFile::read(home + "/" + billing::BillingStore::kPublicName);
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(pub->ed25519_public, signing_before);
  EXPECT_EQ(pub->x25519_public, store.public_file().x25519_public);
  const auto sealed = entitlement::seal_history({}, 1004, 1, store.certificate().billing_x25519);
  auto refused = store.relay(sealed, 1, kT0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_NE(refused.error().message.find("usher entitlement billing add"), std::string::npos) << refused.error().message;
  ASSERT_TRUE(store.install_certificate(engine.certify_billing(pub->billing_id, pub->ed25519_public, pub->x25519_public, kT0 + 9)).ok());
  EXPECT_EQ(store.certificate().version, entitlement::BillingCertificate::kVersionWithSealing);
  EXPECT_EQ(store.certificate().billing_public, signing_before);
  const auto resealed = entitlement::seal_history({}, 1004, 1, store.certificate().sealing_key().value());
  auto opened = store.relay(resealed, 1, kT0);
  EXPECT_TRUE(opened.ok()) << opened.error().message;
}

TEST(PreviousSchema, BillingOpensAStoreOfTheLastSchemaWithItsRowsAndTakesNewOnes) {
  testing::TempDir dir;
  const auto engine_home = dir.file("operator");
  auto engine = EntitlementStore::create(engine_home, 0x4aff);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  ASSERT_TRUE(engine->register_stb({1004, crypto::X25519KeyPair::generate().public_key, crypto::Ed25519KeyPair::generate().public_key}).ok());
  const auto home = dir.file("billing");
  const auto path = home + "/" + billing::BillingStore::kDatabaseName;
  {
    auto db = make_from_dump(path, "billing", 1);
    auto keys = crypto::Ed25519KeyPair::generate();
    auto cert = engine->certify_billing(1, keys.public_key, crypto::X25519KeyPair::generate().public_key, kT0);
    auto st = db.prepare("INSERT INTO identity VALUES (1, 1, ?, ?, ?)");
    st.bind(1, fs::absolute(engine_home).string()).bind(2, keys.private_key.bytes()).bind(3, cert.encode());
    st.run();
    const std::vector<std::uint8_t> hash(32, 0x11);
    st = db.prepare("INSERT INTO stbs (stb_id, settled_sequence, settled_hash) VALUES (1001, 1, ?)");
    st.bind(1, hash);
    st.run();
    st = db.prepare("INSERT INTO settlements (settlement_id, kind, stb_id, first_sequence, last_sequence, last_hash, amount_minor, "
                    "currency, card_id, state, created, paid) VALUES (1, 1, 1001, 1, 1, ?, 800, 'EUR', 1, 'paid', ?, ?)");
    st.bind(1, hash).bind(2, kT0).bind(3, kT0 + 5);
    st.run();
    st = db.prepare("INSERT INTO records VALUES (1001, 1, ?, ?, 9, 'Cup Gala', 1, 0, 800, 'EUR', 1)");
    st.bind(1, hash).bind(2, kT0);
    st.run();
    db.exec("INSERT INTO rooms (room, stb_id, link_endpoint) VALUES ('101', 1003, 'tcp://127.0.0.1:7803')");
  }
  ASSERT_EQ(version_of(path), 0);
  {
    // Billing asks the engine over its protocol (a new room's STB is checked there).
    testing::RunningEngine served(*engine);
    auto store = billing::BillingStore::open(home, served.endpoint());
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ(store->settled_sequence(1001), 1u);
    EXPECT_EQ(store->settled_minor(1001), 800);
    auto rooms = store->rooms();
    ASSERT_EQ(rooms.size(), 1u);
    EXPECT_EQ(rooms[0].room, "101");
    EXPECT_EQ(rooms[0].stb_id, 1003u);
    // New writes: a room, the hotel's credit.
    auto added = store->add_room("102", 1004, "tcp://127.0.0.1:7804");
    ASSERT_TRUE(added.ok()) << added.error().message;
    ASSERT_TRUE(store->set_hotel_credit({10000, *entitlement::parse_currency("EUR")}).ok());
    EXPECT_EQ(store->rooms().size(), 2u);
    EXPECT_EQ(store->hotel_credit()->minor, 10000);
    // Step 3 made billing an X25519 key, which its certificate does not name: it cannot open a
    // history yet, and says what to do.
    expect_billing_certified_again(*store, *engine, home);
  }
  EXPECT_EQ(version_of(path), billing::BillingStore::schema().latest());
  // Step 2 took the operator's public identity from the home step 1 named, and forgot the home.
  auto db = sql::Database::open_read_only(path).value();
  auto st = db.prepare("SELECT operator_ed25519, engine_endpoint FROM identity");
  ASSERT_TRUE(st.step());
  const auto signing = engine->signing_public();
  EXPECT_EQ(st.column_blob(0), std::vector<std::uint8_t>(signing.begin(), signing.end()));
  EXPECT_EQ(st.column_text(1), "tcp://127.0.0.1:7700");
  auto cols = db.prepare("SELECT name FROM pragma_table_info('identity')");
  while (cols.step()) EXPECT_NE(cols.column_text(0), "engine_home");
}

// Schema 2 (billing as the engine's client: its endpoint and the operator's public identity, no
// X25519 key yet) brought forward by step 3.
TEST(PreviousSchema, BillingOpensAStoreOfSchemaTwoAndGetsItsOwnX25519Key) {
  testing::TempDir dir;
  auto engine = EntitlementStore::create(dir.file("operator"), 0x4aff);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  ASSERT_TRUE(engine->register_stb({1004, crypto::X25519KeyPair::generate().public_key, crypto::Ed25519KeyPair::generate().public_key}).ok());
  const auto op = entitlement::OperatorPublicFile::read(dir.file("operator/operator.pub")).value();
  const auto home = dir.file("billing");
  const auto path = home + "/" + billing::BillingStore::kDatabaseName;
  testing::RunningEngine served(*engine);
  {
    auto db = make_from_dump(path, "billing", 2);
    auto keys = crypto::Ed25519KeyPair::generate();
    auto cert = engine->certify_billing(1, keys.public_key, crypto::X25519KeyPair::generate().public_key, kT0);
    auto st = db.prepare("INSERT INTO identity VALUES (1, 1, ?, ?, ?, ?, ?, ?)");
    st.bind(1, keys.private_key.bytes()).bind(2, cert.encode()).bind(3, served.endpoint()).bind(4, op.ca_system_id);
    bind_key(st, 5, op.x25519_public);
    bind_key(st, 6, op.ed25519_public);
    st.run();
    const std::vector<std::uint8_t> hash(32, 0x22);
    st = db.prepare("INSERT INTO stbs (stb_id, settled_sequence, settled_hash) VALUES (1001, 3, ?)");
    st.bind(1, hash);
    st.run();
  }
  ASSERT_EQ(version_of(path), 2);
  ASSERT_FALSE(std::filesystem::exists(home + "/" + billing::BillingStore::kPublicName));
  {
    auto store = billing::BillingStore::open(home);
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ(store->settled_sequence(1001), 3u);
    EXPECT_EQ(store->engine().endpoint(), served.endpoint());
    expect_billing_certified_again(*store, *engine, home);
  }
  EXPECT_EQ(version_of(path), billing::BillingStore::schema().latest());
  auto reopened = billing::BillingStore::open(home);
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  EXPECT_TRUE(reopened->certified());
  EXPECT_EQ(reopened->certificate().issued, static_cast<std::uint64_t>(kT0 + 9));
}

TEST(NewerSchema, BillingRefusesAFileFromANewerUsherAndLeavesIt) {
  testing::TempDir dir;
  ASSERT_TRUE(EntitlementStore::create(dir.file("operator"), 0x4aff).ok());
  const auto op = entitlement::OperatorPublicFile::read(dir.file("operator/operator.pub")).value();
  ASSERT_TRUE(billing::BillingStore::create(dir.file("billing"), 1, op).ok());
  const auto path = dir.file("billing") + "/" + billing::BillingStore::kDatabaseName;
  const auto before = make_newer(path, billing::BillingStore::schema());
  expect_newer_refused(billing::BillingStore::open(dir.file("billing")), path, billing::BillingStore::schema());
  EXPECT_EQ(read_all(path), before);
}

// --- The wallet ---

TEST(PreviousSchema, TheWalletOpensAWalletOfTheLastSchemaWithItsRowsAndTakesNewOnes) {
  testing::TempDir dir;
  auto engine = EntitlementStore::create(dir.file("operator"), 0x4aff);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  auto handset = crypto::Ed25519KeyPair::generate();
  auto card = engine->register_handset("alice", handset.public_key, *entitlement::parse_currency("EUR"));
  ASSERT_TRUE(card.ok()) << card.error().message;
  const auto home = dir.file("phone");
  const auto path = home + "/" + wallet::Wallet::kDatabaseName;
  {
    auto db = make_from_dump(path, "wallet", 1);
    auto st = db.prepare("INSERT INTO identity VALUES (1, 'alice', 'EUR', 'tcp://127.0.0.1:7700', ?, ?, ?, ?, ?)");
    st.bind(1, static_cast<std::int64_t>(card->card_id)).bind(2, handset.private_key.bytes());
    bind_key(st, 3, handset.public_key);
    bind_key(st, 4, engine->signing_public());
    st.bind(5, card->certificate.encode());
    st.run();
    db.exec("INSERT INTO stb_links VALUES (1001, 'tcp://127.0.0.1:7801')");
  }
  ASSERT_EQ(version_of(path), 0);
  {
    auto w = wallet::Wallet::open(home);
    ASSERT_TRUE(w.ok()) << w.error().message;
    EXPECT_EQ(w->account(), "alice");
    EXPECT_EQ(w->card_id(), card->card_id);
    auto cert = w->card_certificate();
    ASSERT_TRUE(cert.ok()) << cert.error().message;
    EXPECT_EQ(*w->link_of(1001), "tcp://127.0.0.1:7801");
    // A new write: another STB's link.
    ASSERT_TRUE(w->remember_link(1002, "tcp://127.0.0.1:7802").ok());
    EXPECT_EQ(*w->link_of(1002), "tcp://127.0.0.1:7802");
  }
  EXPECT_EQ(version_of(path), wallet::Wallet::schema().latest());
}

TEST(NewerSchema, TheWalletRefusesAFileFromANewerUsherAndLeavesIt) {
  testing::TempDir dir;
  const auto home = dir.file("phone");
  const auto path = home + "/" + wallet::Wallet::kDatabaseName;
  {
    auto db = make_from_dump(path, "wallet", 1);
    ASSERT_TRUE(wallet::Wallet::schema().migrate(db, path).ok());
  }
  const auto before = make_newer(path, wallet::Wallet::schema());
  expect_newer_refused(wallet::Wallet::open(home), path, wallet::Wallet::schema());
  EXPECT_EQ(read_all(path), before);
}

// --- The STB: its secure element and its local link ---

struct StbFiles {
  entitlement::OperatorPublicFile op;
  std::string home;
};

// stb.db of schema 2 (the secure element's versions start there) with an identity, as `stb init`
// wrote it.
StbFiles write_stb_v2(const testing::TempDir& dir) {
  auto engine = EntitlementStore::create(dir.file("operator"), 0x4aff);
  EXPECT_TRUE(engine.ok());
  auto op = entitlement::OperatorPublicFile::read(dir.file("operator/operator.pub")).value();
  const auto home = dir.file("box");
  auto db = make_from_dump(home + "/" + stb::SecureElement::kDatabaseName, "stb", 2);
  auto x = crypto::X25519KeyPair::generate();
  auto ed = crypto::Ed25519KeyPair::generate();
  auto st = db.prepare("INSERT INTO identity VALUES (1, 1001, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, op.ca_system_id);
  bind_key(st, 2, op.x25519_public);
  bind_key(st, 3, op.ed25519_public);
  st.bind(4, x.private_key.bytes());
  bind_key(st, 5, x.public_key);
  st.bind(6, ed.private_key.bytes());
  bind_key(st, 7, ed.public_key);
  st.bind(8, kT0);
  st.run();
  return {op, home};
}

TEST(PreviousSchema, TheSecureElementOpensAStoreOfItsSchemaAndTakesNewRows) {
  testing::TempDir dir;
  auto files = write_stb_v2(dir);
  const auto path = files.home + "/" + stb::SecureElement::kDatabaseName;
  ASSERT_EQ(version_of(path), 2);
  // Schema 3 added the billing certificate's table: a read-only open of a version 2 file says how to
  // bring it forward and writes nothing; a read-write open brings it forward.
  auto refused = stb::SecureElement::open(files.home, stb::SecureElement::Access::read_only);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("open it once for writing"), std::string::npos) << refused.error().message;
  EXPECT_EQ(version_of(path), 2);
  auto se = stb::SecureElement::open(files.home);
  ASSERT_TRUE(se.ok()) << se.error().message;
  auto shown = stb::SecureElement::open(files.home, stb::SecureElement::Access::read_only);
  ASSERT_TRUE(shown.ok()) << shown.error().message;
  EXPECT_EQ(shown->stb_id(), 1001u);
  EXPECT_FALSE(se->billing_certificate().ok());  // none yet: the next relay brings it
  // A new row: a parental PIN, then a change of it that must name the stored one.
  ASSERT_TRUE(se->set_parental("2468", 12, "").ok());
  EXPECT_FALSE(se->set_parental("1357", 16, "0000").ok());
  EXPECT_TRUE(se->set_parental("1357", 16, "2468").ok());
  EXPECT_EQ(version_of(path), stb::SecureElement::schema().latest());
}

TEST(NewerSchema, TheSecureElementRefusesAFileFromANewerUsherAndLeavesIt) {
  testing::TempDir dir;
  auto files = write_stb_v2(dir);
  const auto path = files.home + "/" + stb::SecureElement::kDatabaseName;
  const auto before = make_newer(path, stb::SecureElement::schema());
  for (auto access : {stb::SecureElement::Access::read_only, stb::SecureElement::Access::read_write}) {
    expect_newer_refused(stb::SecureElement::open(files.home, access), path, stb::SecureElement::schema());
  }
  EXPECT_EQ(read_all(path), before);
}

// Its versions start at 2: a file of version 1 (untagged rows) or 0 is refused for writing too,
// never filled in or brought forward.
TEST(OlderSchema, TheSecureElementRefusesFilesBelowItsFirstStepUnchanged) {
  testing::TempDir dir;
  auto files = write_stb_v2(dir);
  const auto path = files.home + "/" + stb::SecureElement::kDatabaseName;
  for (int version : {1, 0}) {
    {
      auto db = sql::Database::open(path, false).value();
      db.exec("PRAGMA user_version = " + std::to_string(version));
    }
    const auto before = read_all(path);
    for (auto access : {stb::SecureElement::Access::read_write, stb::SecureElement::Access::read_only}) {
      auto opened = stb::SecureElement::open(files.home, access);
      ASSERT_FALSE(opened.ok());
      EXPECT_EQ(opened.error().code, Errc::storage);
      EXPECT_NE(opened.error().message.find(path + " has schema version " + std::to_string(version)), std::string::npos)
          << opened.error().message;
    }
    EXPECT_EQ(read_all(path), before);
  }
}

// Schema 4 (issue 11) added the group key, the global keys, the other versions of each service key
// and operator messages: a store of schema 3 holding a grant (its row tagged as schema 3 wrote it)
// is brought forward, its grant still opens its ECMs, and the new rows are taken.
TEST(PreviousSchema, TheSecureElementKeepsASchema3GrantAndTakesGroupEmmsAfterTheStep) {
  testing::TempDir dir;
  auto op_x = crypto::X25519KeyPair::generate();
  entitlement::OperatorPublicFile op;
  op.ca_system_id = 0x4aff;
  op.x25519_public = op_x.public_key;
  op.ed25519_public = crypto::Ed25519KeyPair::generate().public_key;
  Key256 v1;
  crypto::random_bytes(v1.mutable_bytes());
  std::vector<std::uint8_t> grant_emm;
  {
    // The rows as the secure element writes them (identity, and a grant's entitlement row)...
    auto made = stb::SecureElement::init(dir.file("made"), 1001, op);
    ASSERT_TRUE(made.ok()) << made.error().message;
    const auto key = entitlement::derive_emm_key(op_x.private_key, made->public_identity().x25519_public, 0x4aff, 1001).value();
    entitlement::EmmContent emm{1001, 1, static_cast<std::uint64_t>(kT0), {}};
    emm.items.emplace_back(entitlement::EmmGrant{1, 1, v1.clone(), 0, static_cast<std::uint64_t>(kT0) * 2});
    ASSERT_EQ(*made->apply_emm(entitlement::encode_emm(emm, key)), stb::EmmOutcome::applied);
  }
  // ... copied into a file of schema 3.
  const auto home = dir.file("box");
  const auto path = home + "/" + stb::SecureElement::kDatabaseName;
  {
    auto db = make_from_dump(path, "stb", 3);
    auto attach = db.prepare("ATTACH DATABASE ? AS made");
    attach.bind(1, dir.file("made") + "/" + stb::SecureElement::kDatabaseName);
    attach.run();
    db.exec("INSERT INTO identity SELECT * FROM made.identity; INSERT INTO entitlements SELECT * FROM made.entitlements;"
            "INSERT INTO emm_applied SELECT * FROM made.emm_applied;");
    db.exec("DETACH DATABASE made");
  }
  ASSERT_EQ(version_of(path), 3);
  auto se = stb::SecureElement::open(home);
  ASSERT_TRUE(se.ok()) << se.error().message;
  EXPECT_EQ(version_of(path), 4);
  EXPECT_EQ(se->rows_refused(), 0u);
  auto ecm_of = [](std::uint16_t version, const Key256& key) {
    entitlement::EcmContent e;
    e.service_id = 1;
    e.key_version = version;
    e.current.time_unix = static_cast<std::uint64_t>(kT0);
    e.next.time_unix = static_cast<std::uint64_t>(kT0);
    e.next.crypto_period = 1;
    e.current.cw = ControlWord::random();
    e.next.cw = ControlWord::random();
    return entitlement::encode_ecm(e, key, key);
  };
  EXPECT_TRUE(se->open_ecm(ecm_of(1, v1)).ok());
  // The group key by a unique EMM, then version 2 of the service key by a group EMM: both versions open.
  const auto key = entitlement::derive_emm_key(op_x.private_key, se->public_identity().x25519_public, 0x4aff, 1001).value();
  Key256 group_key;
  crypto::random_bytes(group_key.mutable_bytes());
  entitlement::EmmContent join{1001, 2, static_cast<std::uint64_t>(kT0), {}};
  join.items.emplace_back(entitlement::EmmGroupKey{9, 0, 1, group_key.clone()});
  ASSERT_EQ(*se->apply_emm(entitlement::encode_emm(join, key)), stb::EmmOutcome::applied);
  Key256 v2;
  crypto::random_bytes(v2.mutable_bytes());
  entitlement::EmmMemberGrant grant;
  grant.members.set(0);
  grant.not_after = static_cast<std::uint64_t>(kT0) * 2;
  grant.services.push_back({1, 2, v2.clone()});
  std::vector<entitlement::EmmItem> items;
  items.emplace_back(std::move(grant));
  const auto group_emm =
      entitlement::encode_shared_emm({{entitlement::EmmAddressType::group, 9, 1}, 3, static_cast<std::uint64_t>(kT0), std::move(items)}, group_key);
  ASSERT_EQ(*se->apply_emm(group_emm), stb::EmmOutcome::applied);
  auto again = stb::SecureElement::open(home, stb::SecureElement::Access::read_only);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->open_ecm(ecm_of(1, v1)).ok());
  EXPECT_TRUE(again->open_ecm(ecm_of(2, v2)).ok());
  EXPECT_EQ(again->group()->group_id, 9u);
}

TEST(PreviousSchema, TheLocalLinkOpensItsStoreOfTheLastSchemaWithItsPairedHandsets) {
  testing::TempDir dir;
  auto files = write_stb_v2(dir);
  const auto path = files.home + "/" + stb::LocalLink::kDatabaseName;
  {
    auto db = make_from_dump(path, "stb-link", 1);
    auto st = db.prepare("INSERT INTO paired_handsets VALUES (?, ?)");
    bind_key(st, 1, crypto::Ed25519KeyPair::generate().public_key);
    st.bind(2, kT0);
    st.run();
  }
  ASSERT_EQ(version_of(path), 0);
  auto se = stb::SecureElement::open(files.home);
  ASSERT_TRUE(se.ok()) << se.error().message;
  {
    stb::LocalLink link(*se, files.home);
    EXPECT_EQ(link.paired_handsets(), 1u);
  }
  EXPECT_EQ(version_of(path), stb::LocalLink::schema().latest());
  // A newer one is refused, untouched.
  const auto before = make_newer(path, stb::LocalLink::schema());
  try {
    stb::LocalLink refused(*se, files.home);
    ADD_FAILURE() << "a link store from a newer Usher was opened";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), newer_message(path, stb::LocalLink::schema()));
  }
  EXPECT_EQ(read_all(path), before);
}

// --- The headend's identity ---

TEST(PreviousSchema, TheHeadendOpensAnIdentityOfTheLastSchema) {
  testing::TempDir dir;
  ASSERT_TRUE(EntitlementStore::create(dir.file("operator"), 0x4aff).ok());
  auto op = entitlement::OperatorPublicFile::read(dir.file("operator/operator.pub")).value();
  const auto home = dir.file("head");
  const auto path = home + "/" + headend::HeadendIdentity::kDatabaseName;
  {
    auto db = make_from_dump(path, "headend", 1);
    auto x = crypto::X25519KeyPair::generate();
    auto st = db.prepare("INSERT INTO identity VALUES (1, 3, ?, ?, ?)");
    st.bind(1, op.ca_system_id);
    bind_key(st, 2, op.x25519_public);
    st.bind(3, x.private_key.bytes());
    st.run();
  }
  ASSERT_EQ(version_of(path), 0);
  auto identity = headend::HeadendIdentity::open(home);
  ASSERT_TRUE(identity.ok()) << identity.error().message;
  EXPECT_EQ(identity->headend_id(), 3u);
  EXPECT_EQ(identity->ca_system_id(), op.ca_system_id);
  EXPECT_EQ(version_of(path), headend::HeadendIdentity::schema().latest());

  const auto before = make_newer(path, headend::HeadendIdentity::schema());
  expect_newer_refused(headend::HeadendIdentity::open(home), path, headend::HeadendIdentity::schema());
  EXPECT_EQ(read_all(path), before);
}

// --- The dumps stay true ---

// What the steps of a schema make in an empty file, as (type, name, sql) rows.
std::set<std::tuple<std::string, std::string, std::string>> objects(sql::Database& db) {
  std::set<std::tuple<std::string, std::string, std::string>> out;
  auto st = db.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'");
  while (st.step()) out.emplace(st.column_text(0), st.column_text(1), st.column_text(2));
  return out;
}

// Today's code writes exactly the newest dumped schema of each store: a step added without a new
// dump (scripts/dump-schemas.sh) fails here, so the next step's "previous schema" test has its file.
TEST(SchemaDumps, EachStoreWritesItsNewestDumpedSchema) {
  const std::vector<std::pair<std::string, const sql::Schema*>> stores = {
      {"engine", &EntitlementStore::schema()},           {"billing", &billing::BillingStore::schema()},
      {"wallet", &wallet::Wallet::schema()},             {"stb", &stb::SecureElement::schema()},
      {"stb-link", &stb::LocalLink::schema()},           {"headend", &headend::HeadendIdentity::schema()}};
  for (const auto& [name, schema] : stores) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(fs::exists(dump_path(name, schema->latest()))) << "run scripts/dump-schemas.sh: " << dump_path(name, schema->latest());
    auto fresh = sql::Database::open(":memory:").value();
    ASSERT_TRUE(schema->migrate(fresh, ":memory:").ok());
    EXPECT_EQ(sql::user_version(fresh), schema->latest());
    auto dumped = sql::Database::open(":memory:").value();
    dumped.exec(read_all(dump_path(name, schema->latest())));
    EXPECT_EQ(objects(fresh), objects(dumped));
  }
}

}  // namespace
}  // namespace usher
