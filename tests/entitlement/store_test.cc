#include "usher/entitlement/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "broadcast_fixture.h"
#include "postgres_server.h"
#include "usher/core/clock.h"
#include "usher/core/store_database.h"
#include "temp_dir.h"

namespace usher::entitlement {
namespace {

struct StbKeys {
  crypto::X25519KeyPair x = crypto::X25519KeyPair::generate();
  crypto::Ed25519KeyPair ed = crypto::Ed25519KeyPair::generate();
};

std::vector<std::vector<std::uint8_t>> box_sections(EntitlementStore& store, std::uint64_t now) {
  return testing::box_emm_sections(store, now);
}

TEST(EntitlementStore, CreateOpenAndRefuseSecondOperator) {
  testing::TempDir dir;
  {
    auto s = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url());
    ASSERT_TRUE(s.ok()) << s.error().message;
  }
  EXPECT_EQ(EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).error().code, Errc::already_exists);
  auto s = EntitlementStore::open(dir.path());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ca_system_id(), 0x4AFF);
  auto pub = OperatorPublicFile::read(dir.file("operator.pub"));
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->x25519_public, s->operator_public());
  EXPECT_EQ(EntitlementStore::open(dir.file("nothing")).error().code, Errc::not_found);
  // On a database server the home keeps the URL and the operator's keys, and no database file.
  const bool on_server = testing::stores_on_postgresql();
  EXPECT_EQ(std::filesystem::exists(dir.file("database.url")), on_server);
  EXPECT_EQ(std::filesystem::exists(dir.file("operator.key")), on_server);
  EXPECT_EQ(std::filesystem::exists(dir.file("entitlement.db")), !on_server);
}

// Schema versions on either backend: a store of the previous schema (before the engine kept the
// billings it certified) is brought forward on open, its rows kept.
TEST(EntitlementStore, AStoreOfThePreviousSchemaIsBroughtForwardWithItsRows) {
  testing::TempDir dir;
  {
    auto store = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).value();
    ASSERT_TRUE(store.add_service(1, "One").ok());
  }
  ASSERT_EQ(EntitlementStore::schema().latest(), 5) << "add the newest step's undoing here";
  {
    auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
    // Step 5 (service key versions; EntitlementRotation.AStoreOfSchemaFour... tests what it brings).
    db.exec("DROP TABLE service_key_versions");
    // Step 4 (groups; EntitlementGroups.AStoreOfSchemaTwo... tests what it brings), then step 3.
    db.exec(R"(
      DROP INDEX emm_queue_by_topic;
      DROP TABLE group_members;
      DROP TABLE emm_groups;
      DROP TABLE global_keys;
      DROP TABLE emm_counter;
      ALTER TABLE emm_queue DROP COLUMN address_type;
      ALTER TABLE emm_queue DROP COLUMN topic;
      ALTER TABLE stbs DROP COLUMN cut_off;
    )");
    // Step 3 undone: the EMM queue without change numbers, with an entry queued then.
    db.exec("DROP INDEX emm_queue_by_change; DROP INDEX emm_queue_by_until; DROP TABLE emm_removed; "
            "ALTER TABLE emm_queue DROP COLUMN change_number; ALTER TABLE emm_queue DROP COLUMN priority; "
            "DELETE FROM settings WHERE name IN ('emm_change', 'emm_removed_horizon')");
    const std::vector<std::uint8_t> section{0x82};
    auto queued = db.prepare("INSERT INTO emm_queue (stb_id, sequence, carousel_until, carousel_from, created, section) "
                             "VALUES (1001, 1, 4000000000, 0, 0, ?)");
    queued.bind(1, std::span<const std::uint8_t>(section));
    queued.run();
    // Step 2 undone.
    db.exec("DROP TABLE billings");
    db.connection().set_schema_version(1);
  }
  auto store = EntitlementStore::open(dir.path());
  ASSERT_TRUE(store.ok()) << store.error().message;
  ASSERT_EQ(store->services().size(), 1u);
  const auto billing = crypto::Ed25519KeyPair::generate();
  (void)store->certify_billing(7, billing.public_key, crypto::X25519KeyPair::generate().public_key, 1'900'000'000);
  ASSERT_TRUE(store->billing_public(7).has_value());
  EXPECT_EQ(*store->billing_public(7), billing.public_key);
  // The entry queued before the feed existed is in it, with the change number of its id.
  const auto feed = store->emm_changes(0);
  ASSERT_EQ(feed.added.size(), 1u);
  EXPECT_EQ(feed.added[0].section, std::vector<std::uint8_t>{0x82});
  EXPECT_EQ(feed.next_cursor, feed.added[0].id);
  auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
  EXPECT_EQ(sql::user_version(db), 5);
}

// Schema versions on either backend: a store from a newer Usher is refused and left as it is.
TEST(EntitlementStore, AStoreOfANewerSchemaIsRefusedAndLeftAsItIs) {
  testing::TempDir dir;
  ASSERT_TRUE(EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).ok());
  const int newer = EntitlementStore::schema().latest() + 1;
  {
    auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
    EXPECT_EQ(sql::user_version(db), EntitlementStore::schema().latest());
    db.connection().set_schema_version(newer);
  }
  auto refused = EntitlementStore::open(dir.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::storage);
  EXPECT_NE(refused.error().message.find("newer Usher"), std::string::npos) << refused.error().message;
  auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
  EXPECT_EQ(sql::user_version(db), newer);
}

TEST(EntitlementStore, ADatabaseUrlThatIsNotPostgresIsRefusedAndLeavesNoHome) {
  testing::TempDir dir;
  auto s = EntitlementStore::create(dir.file("op"), 0x4AFF, "mysql://db/usher");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::invalid_argument);
  EXPECT_NE(s.error().message.find("postgresql://"), std::string::npos) << s.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir.file("op/database.url")));
  // A server that is not there: a clear error naming it, without its password, and no operator made.
  auto down = EntitlementStore::create(dir.file("op"), 0x4AFF, "postgresql://usher:secret@127.0.0.1:1/usher?connect_timeout=2");
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().message.find("secret"), std::string::npos) << down.error().message;
  EXPECT_NE(down.error().message.find("127.0.0.1"), std::string::npos) << down.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir.file("op"))) << "a home made for nothing is left behind";
  EXPECT_EQ(EntitlementStore::open(dir.file("op")).error().code, Errc::not_found);
}

TEST(EntitlementStore, GrantQueuesAnEmmOnlyThatStbCanRead) {
  testing::TempDir dir;
  auto store = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).value();
  ASSERT_TRUE(store.add_service(1, "One").ok());
  EXPECT_EQ(store.add_service(1, "Again").error().code, Errc::already_exists);
  EXPECT_EQ(store.add_service(0, "Zero").error().code, Errc::invalid_argument);
  StbKeys a, b;
  ASSERT_TRUE(store.register_stb({1001, a.x.public_key, a.ed.public_key}).ok());
  ASSERT_TRUE(store.register_stb({1002, b.x.public_key, b.ed.public_key}).ok());
  EXPECT_EQ(store.register_stb({1001, a.x.public_key, a.ed.public_key}).error().code, Errc::already_exists);
  EXPECT_EQ(store.grant(1001, 9, 0, 10).error().code, Errc::not_found);
  EXPECT_EQ(store.grant(1001, 1, 10, 10).error().code, Errc::invalid_argument);
  EXPECT_EQ(store.grant(4242, 1, 0, 10).error().code, Errc::not_found);
  ASSERT_TRUE(store.grant(1001, 1, 100, 2'000'000'000).ok());

  const auto sections = box_sections(store, 1000);
  ASSERT_EQ(sections.size(), 1u);
  auto key_a = derive_emm_key(a.x.private_key, store.operator_public(), 0x4AFF, 1001).value();
  auto key_b = derive_emm_key(b.x.private_key, store.operator_public(), 0x4AFF, 1001).value();
  auto emm = decode_emm(sections[0], key_a);
  ASSERT_TRUE(emm.ok());
  EXPECT_EQ(emm->sequence, 3u);  // after the two boxes' key EMMs: one counter for the operator
  const auto& g = std::get<EmmGrant>(emm->items.at(0));
  EXPECT_TRUE(g.service_key == store.service_key(1)->key);
  EXPECT_FALSE(decode_emm(sections[0], key_b).ok());
  EXPECT_TRUE(box_sections(store, 2'000'000'001).empty());  // past the grant: off the carousel
}

TEST(EntitlementStore, RevokeReplacesTheCarouselAndKeepsOtherGrants) {
  testing::TempDir dir;
  auto store = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).value();
  ASSERT_TRUE(store.add_service(1, "One").ok());
  ASSERT_TRUE(store.add_service(2, "Two").ok());
  StbKeys a;
  ASSERT_TRUE(store.register_stb({7, a.x.public_key, a.ed.public_key}).ok());
  ASSERT_TRUE(store.grant(7, 1, 0, 2'000'000'000).ok());
  ASSERT_TRUE(store.grant(7, 2, 0, 2'000'000'000).ok());
  ASSERT_TRUE(store.revoke(7, 1).ok());
  EXPECT_EQ(store.revoke(7, 3).error().code, Errc::not_found);
  auto key = derive_emm_key(a.x.private_key, store.operator_public(), 0x4AFF, 7).value();
  const auto sections = box_sections(store, 1000);
  ASSERT_EQ(sections.size(), 2u);
  auto first = decode_emm(sections[0], key).value();
  auto second = decode_emm(sections[1], key).value();
  EXPECT_EQ(std::get<EmmGrant>(first.items[0]).service_id, 2);  // the other grant stays, as it was
  EXPECT_EQ(first.sequence, 3u);  // 1 was the box's key EMM
  EXPECT_EQ(std::get<EmmRevoke>(second.items[0]).service_id, 1);  // the revoke replaces service 1's grant
  EXPECT_EQ(second.sequence, 4u);                                 // newer than both grants
  const auto grants = store.grants();
  ASSERT_EQ(grants.size(), 2u);
  EXPECT_TRUE(grants[0].revoked);
  EXPECT_FALSE(grants[1].revoked);
}

// A revoke used to empty the box's whole EMM queue and queue again only its live grants: the credit
// line, offers and tickets queued for it, and the revoke of another service still on the carousel,
// stopped being broadcast (a box that had not heard that other revoke kept the service). Only the
// EMMs about the revoked service go now.
TEST(EntitlementStore, RevokeKeepsWhatElseIsQueuedForTheBox) {
  testing::TempDir dir;
  auto store = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).value();
  for (int s : {1, 2, 3}) ASSERT_TRUE(store.add_service(static_cast<std::uint16_t>(s), "svc").ok());
  StbKeys a;
  ASSERT_TRUE(store.register_stb({7, a.x.public_key, a.ed.public_key}).ok());
  ASSERT_TRUE(store.grant(7, 1, 0, 2'000'000'000).ok());  // 1
  ASSERT_TRUE(store.grant(7, 3, 0, 2'000'000'000).ok());  // 2
  ASSERT_TRUE(store.revoke(7, 3).ok());                   // 3
  ASSERT_TRUE(store.set_credit(7, Money{2000, *parse_currency("EUR")}, 1000, 7 * 86400).ok());  // 4
  ASSERT_TRUE(store.grant(7, 2, 0, 2'000'000'000).ok());  // 5
  ASSERT_TRUE(store.revoke(7, 1).ok());                   // 6
  const auto key = derive_emm_key(a.x.private_key, store.operator_public(), 0x4AFF, 7).value();
  std::vector<std::uint64_t> sequences;
  bool credit = false, revoke_of_3 = false, grant_of_2 = false, revoke_of_1 = false, grant_of_1 = false;
  for (const auto& section : box_sections(store, 1000)) {
    const auto emm = decode_emm(section, key).value();
    sequences.push_back(emm.sequence);
    for (const auto& item : emm.items) {
      if (std::holds_alternative<EmmCredit>(item)) credit = true;
      if (const auto* r = std::get_if<EmmRevoke>(&item)) (r->service_id == 3 ? revoke_of_3 : revoke_of_1) = true;
      if (const auto* g = std::get_if<EmmGrant>(&item)) (g->service_id == 2 ? grant_of_2 : grant_of_1) = true;
    }
  }
  EXPECT_TRUE(credit);
  EXPECT_TRUE(revoke_of_3);
  EXPECT_TRUE(grant_of_2);
  EXPECT_TRUE(revoke_of_1);
  EXPECT_FALSE(grant_of_1);
  EXPECT_EQ(sequences, (std::vector<std::uint64_t>{4, 5, 6, 7}));  // nothing queued twice (1: the key EMM)
}

}  // namespace
}  // namespace usher::entitlement

namespace usher::entitlement {
namespace {

TEST(EntitlementStore, PackageGrantsAndRevokesEachOfItsServices) {
  testing::TempDir dir;
  auto store = EntitlementStore::create(dir.path(), 0x4AFF, testing::store_database_url()).value();
  for (int s : {1, 2, 3}) ASSERT_TRUE(store.add_service(static_cast<std::uint16_t>(s), "svc").ok());
  ASSERT_TRUE(store.add_package(10, "Sports", {1, 2}).ok());
  EXPECT_EQ(store.add_package(10, "Again", {3}).error().code, Errc::already_exists);
  EXPECT_EQ(store.add_package(11, "Bad", {9}).error().code, Errc::not_found);
  EXPECT_TRUE(store.packages().size() == 1);  // the failed one left nothing behind
  StbKeys k;
  ASSERT_TRUE(store.register_stb({7, k.x.public_key, k.ed.public_key}).ok());
  ASSERT_TRUE(store.grant_package(7, 10, 0, 2'000'000'000).ok());
  auto grants = store.grants();
  ASSERT_EQ(grants.size(), 2u);
  EXPECT_EQ(grants[0].service_id, 1);
  EXPECT_EQ(grants[1].service_id, 2);
  EXPECT_EQ(box_sections(store, 1000).size(), 2u);
  EXPECT_EQ(store.emm_sections(1000).size(), 4u);  // and the box's key EMM, and its group's member grant
  ASSERT_TRUE(store.revoke_package(7, 10).ok());
  for (const auto& g : store.grants()) EXPECT_TRUE(g.revoked);
  EXPECT_EQ(store.grant_package(7, 99, 0, 10).error().code, Errc::not_found);
}

// Issue 8: `grant --days 999999999999999` queued an EMM whose expiry came back negative. The store
// refuses an end its signed 64-bit columns and EMMs cannot carry, and queues nothing.
TEST(EntitlementStore, GrantEndingAfterTheLatestTimeIsRefusedAndQueuesNothing) {
  testing::TempDir dir;
  auto store = EntitlementStore::create(dir.path(), kDefaultCaSystemId, testing::store_database_url()).value();
  ASSERT_TRUE(store.add_service(1, "svc").ok());
  ASSERT_TRUE(store.add_package(10, "Both", {1}).ok());
  StbKeys k;
  ASSERT_TRUE(store.register_stb({7, k.x.public_key, k.ed.public_key}).ok());
  const std::uint64_t overflowing = 1'000'000 + 999'999'999'999'999ULL * 86'400;
  for (const std::uint64_t not_after : {kLatestGrantEnd + 1, overflowing, std::uint64_t{1} << 63}) {
    EXPECT_EQ(store.grant(7, 1, 1'000'000, not_after).error().code, Errc::invalid_argument) << not_after;
    EXPECT_EQ(store.grant_package(7, 10, 1'000'000, not_after).error().code, Errc::invalid_argument) << not_after;
  }
  EXPECT_TRUE(store.grants().empty());
  EXPECT_TRUE(box_sections(store, 1'000'000).empty());
  EXPECT_EQ(store.emm_sections(1'000'000).size(), 1u);  // the key EMM of the box's registration only
  ASSERT_TRUE(store.grant(7, 1, 1'000'000, kLatestGrantEnd).ok());
  ASSERT_EQ(store.grants().size(), 1u);
  EXPECT_EQ(store.grants()[0].not_after, kLatestGrantEnd);
}

// Issue 11 §2: two engines writing one store (two connections: on PostgreSQL two engines of the
// operator, each with its advisory lock per store; on SQLite two processes' worth of connections to
// one file) while a headend follows the EMM feed: change numbers follow commit order, so the reader
// skips no row committed late, and what it holds at the end is the queue.
TEST(EntitlementStore, TwoWritersAndAReaderOfTheEmmFeedAgreeOnTheQueue) {
  testing::TempDir dir;
  const std::string home = dir.file("ops");
  constexpr std::uint32_t kBoxes = 12;
  std::map<std::uint32_t, Key256> box_private;
  {
    auto store = EntitlementStore::create(home, 0x4AFF, testing::store_database_url()).value();
    ASSERT_TRUE(store.add_service(1, "One").ok());
    ASSERT_TRUE(store.add_service(2, "Two").ok());
    for (std::uint32_t id = 1001; id < 1001 + kBoxes; ++id) {
      StbKeys box;
      ASSERT_TRUE(store.register_stb({id, box.x.public_key, box.ed.public_key}).ok());
      box_private.emplace(id, std::move(box.x.private_key));
    }
  }
  constexpr std::uint64_t kNow = 1'900'000'000;
  std::atomic<bool> writing{true};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      auto engine = EntitlementStore::open(home);
      if (!engine) {
        ++failures;
        return;
      }
      for (std::uint32_t round = 0; round < 6; ++round) {
        for (std::uint32_t id = 1001; id < 1001 + kBoxes; ++id) {
          const auto service = static_cast<std::uint16_t>(1 + w);
          if (!engine->grant(id, service, kNow, kNow + 86400 + round)) ++failures;
          if (round % 3 == 2 && !engine->revoke(id, service)) ++failures;
        }
      }
    });
  }
  std::map<std::uint64_t, std::vector<std::uint8_t>> held;
  std::uint64_t cursor = 0;
  auto headend = EntitlementStore::open(home).value();
  const auto follow = [&] {
    for (;;) {
      auto page = headend.emm_changes(cursor, 7);
      ASSERT_GE(page.next_cursor, cursor);
      if (page.restart) held.clear();
      for (auto& e : page.added) held[e.id] = std::move(e.section);
      for (const auto id : page.removed) held.erase(id);
      cursor = page.next_cursor;
      if (!page.more) break;
    }
  };
  std::thread reader([&] {
    while (writing) follow();
  });
  for (auto& t : writers) t.join();
  writing = false;
  reader.join();
  follow();
  EXPECT_EQ(failures.load(), 0);
  std::vector<std::vector<std::uint8_t>> sections;
  for (auto& [id, s] : held) sections.push_back(s);
  EXPECT_EQ(sections, headend.emm_sections(unix_now()));  // the revokes: repeated for a week from now
  // Per box: its key EMM from its registration (issue 11), and per service the last revoke, which
  // replaced its grants. Each opened with the box's own key.
  EXPECT_EQ(sections.size(), 3u * kBoxes);
  std::map<std::uint32_t, int> key_emms;
  std::map<std::pair<std::uint32_t, std::uint16_t>, int> revokes;
  for (const auto& section : sections) {
    const auto header = peek_any_emm(section);
    ASSERT_TRUE(header.ok());
    ASSERT_EQ(header->address.type, EmmAddressType::unique);
    const auto stb_id = header->address.id;
    ASSERT_EQ(box_private.count(stb_id), 1u) << stb_id;
    const auto emm = decode_emm(section, derive_emm_key(box_private.at(stb_id), headend.operator_public(), 0x4AFF, stb_id).value());
    ASSERT_TRUE(emm.ok()) << emm.error().message;
    if (emm->items.size() == 2 && std::holds_alternative<EmmGroupKey>(emm->items[0]) && std::holds_alternative<EmmGlobalKey>(emm->items[1])) {
      ++key_emms[stb_id];
      continue;
    }
    ASSERT_EQ(emm->items.size(), 1u);
    const auto* revoke = std::get_if<EmmRevoke>(&emm->items[0]);
    ASSERT_NE(revoke, nullptr) << "only the last revoke of each service stays, no grant";
    ++revokes[{stb_id, revoke->service_id}];
  }
  for (std::uint32_t id = 1001; id < 1001 + kBoxes; ++id) {
    EXPECT_EQ(key_emms[id], 1) << id;
    EXPECT_EQ((revokes[{id, std::uint16_t{1}}]), 1) << id;
    EXPECT_EQ((revokes[{id, std::uint16_t{2}}]), 1) << id;
  }
  EXPECT_EQ(box_sections(headend, unix_now()).size(), 2u * kBoxes);  // without the key EMMs: the revokes
}

}  // namespace
}  // namespace usher::entitlement
