// stb.db lives on a disk the box's owner controls: rows edited, added or copied there grant
// nothing, a damaged store is refused as it is, read-only commands write nothing, and a full disk
// leaves the STB descrambling with what it holds. Everything here is a real SQLite file edited with
// SQLite, as an owner with the `sqlite3` tool would.
#include <gtest/gtest.h>

#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "broadcast_fixture.h"
#include "usher/core/sqlite.h"

namespace usher::stb {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kT0 = 1'900'000'000;
const entitlement::Currency kEur{'E', 'U', 'R'};

class StoreTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_stb(1002);
    world.add_event(7, 1, kT0 + 3600, 3600, 1250, "Final");
    world.add_event(8, 1, kT0 + 3 * 3600, 3600, 1250, "Replay");
  }
  void deliver_emms(std::uint32_t stb) {
    for (const auto& emm : world.store().emm_sections(0)) (void)world.stb(stb).apply_emm(emm);
  }
  std::string db_path(std::uint32_t stb) { return world.stb_home(stb) + "/stb.db"; }
  // An owner's edit: another SQLite connection on the same file.
  void edit(std::uint32_t stb, const std::string& sql) {
    auto db = sql::Database::open(db_path(stb), false);
    ASSERT_TRUE(db.ok()) << db.error().message;
    db->exec(sql);
  }
  std::vector<std::uint8_t> event_ecm(std::uint32_t event, std::uint64_t time) {
    auto key = world.store().current_event(1, time).value();
    entitlement::EcmContent e;
    e.service_id = 1;
    e.key_version = 1;
    // Both crypto periods inside the event: both control words under its key.
    for (auto* p : {&e.current, &e.next}) {
      p->event_id = event;
      p->time_unix = time;
      p->cw = ControlWord::random();
    }
    e.next.crypto_period = 1;
    return entitlement::encode_ecm(e, key.key, key.key);
  }
  std::vector<std::uint8_t> service_ecm(std::uint64_t time) {
    entitlement::EcmContent e;
    e.service_id = 1;
    e.key_version = 1;
    for (auto* p : {&e.current, &e.next}) {
      p->time_unix = time;
      p->cw = ControlWord::random();
    }
    e.next.crypto_period = 1;
    const auto key = world.store().service_key(1);
    return entitlement::encode_ecm(e, key->key, key->key);
  }
  testing::BroadcastWorld world;
};

std::string hex_of(std::span<const std::uint8_t> b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (auto c : b) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// The reproduced failure: an unsigned ticket row added to stb.db descrambled a whole event. The
// event key is on the disk already (the impulse offer carries it), so the row is all it took.
TEST_F(StoreTrustTest, AnUnsignedTicketRowAddedToTheStoreDescramblesNothing) {
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms(1001);
  EXPECT_EQ(world.stb(1001).open_ecm(event_ecm(7, kT0 + 3700)).error().code, Errc::not_entitled);

  entitlement::Ticket forged;
  forged.ticket_id = 4242;
  forged.event_id = 7;
  forged.service_id = 1;
  forged.stb_id = 1001;
  forged.valid_from = 0;
  forged.valid_until = kT0 * 2;
  forged.title = "Final";
  edit(1001, "INSERT INTO tickets (ticket_id, event_id, ticket, event_key, status, received, ack_relayed, mac) "
             "SELECT 4242, 7, x'" + hex_of(forged.encode()) + "', event_key, 'valid', 0, 1, zeroblob(32) FROM offers WHERE event_id = 7");
  // Signed with a key of the owner's own, and tagged with nothing they can compute: still nothing.
  forged.ticket_id = 4343;
  forged.sign(crypto::Ed25519KeyPair::generate().private_key);
  edit(1001, "INSERT INTO tickets (ticket_id, event_id, ticket, event_key, status, received, ack_relayed, mac) "
             "SELECT 4343, 7, x'" + hex_of(forged.encode()) + "', event_key, 'valid', 0, 1, zeroblob(32) FROM offers WHERE event_id = 7");

  auto& se = world.reopen(1001);
  EXPECT_EQ(se.rows_refused(), 2u);
  EXPECT_TRUE(se.tickets().empty());
  EXPECT_TRUE(se.pending_acks().empty());  // nor does the STB sign a delivery for them
  auto refused = se.open_ecm(event_ecm(7, kT0 + 3700));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  // The same through the live reload the descrambler does when an ECM is refused.
  ASSERT_TRUE(se.reload().ok());
  EXPECT_EQ(se.open_ecm(event_ecm(7, kT0 + 3700)).error().code, Errc::not_entitled);
}

TEST_F(StoreTrustTest, AnotherBoxsTicketCopiedInOrAnEditedTicketIsRefused) {
  // STB 1002 buys event 7 on impulse; its ticket row (tag and all) is copied into 1001's store.
  ASSERT_TRUE(world.store().set_credit(1002, {5000, kEur}, kT0).ok());
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms(1002);
  deliver_emms(1001);
  ASSERT_TRUE(world.stb(1002).impulse_buy(7, kT0).ok());
  ASSERT_TRUE(world.stb(1002).open_ecm(event_ecm(7, kT0 + 3700)).ok());
  edit(1001, "ATTACH '" + db_path(1002) + "' AS other; INSERT INTO tickets SELECT * FROM other.tickets; DETACH other;");
  auto& se = world.reopen(1001);
  EXPECT_EQ(se.rows_refused(), 1u);
  EXPECT_EQ(se.open_ecm(event_ecm(7, kT0 + 3700)).error().code, Errc::not_entitled);

  // 1001 buys event 7 itself (its ticket takes the place of the refused row with the same id):
  // its own ticket verifies after a restart, and plays.
  ASSERT_TRUE(se.impulse_buy(7, kT0).ok());
  auto& again = world.reopen(1001);
  EXPECT_EQ(again.rows_refused(), 0u);
  EXPECT_TRUE(again.open_ecm(event_ecm(7, kT0 + 3700)).ok());
  // Its event key swapped for another event's (from the offers on the disk): refused.
  edit(1001, "UPDATE tickets SET event_key = (SELECT event_key FROM offers WHERE event_id = 8)");
  auto& edited = world.reopen(1001);
  EXPECT_EQ(edited.rows_refused(), 1u);
  EXPECT_EQ(edited.open_ecm(event_ecm(7, kT0 + 3700)).error().code, Errc::not_entitled);
}

TEST_F(StoreTrustTest, EditedEntitlementsCreditLinesOffersAndPrepaidCreditAreRefused) {
  ASSERT_TRUE(world.store().grant(1001, 1, kT0, kT0 + 3600).ok());
  ASSERT_TRUE(world.store().set_credit(1001, {1000, kEur}, kT0).ok());
  deliver_emms(1001);
  ASSERT_TRUE(world.stb(1001).open_ecm(service_ecm(kT0 + 10)).ok());

  // A subscription stretched by ten years: the whole entitlement is refused.
  edit(1001, "UPDATE entitlements SET not_after = not_after + 315360000");
  auto& se = world.reopen(1001);
  EXPECT_EQ(se.rows_refused(), 1u);
  EXPECT_TRUE(se.entitlements().empty());
  EXPECT_EQ(se.open_ecm(service_ecm(kT0 + 10)).error().code, Errc::not_entitled);

  // A bigger credit line, a free event, prepaid credit out of nowhere: no purchase.
  edit(1001, "UPDATE credit SET limit_minor = 100000000");
  auto big = se.impulse_buy(7, kT0);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, Errc::auth_failed);
  EXPECT_NE(big.error().message.find("credit line does not verify"), std::string::npos) << big.error().message;
  EXPECT_EQ(se.credit_limit().error().code, Errc::auth_failed);
  EXPECT_TRUE(se.history().empty());

  ASSERT_TRUE(world.store().set_credit(1001, {1000, kEur}, kT0).ok());  // the operator's word again
  deliver_emms(1001);
  ASSERT_TRUE(se.credit_limit().ok());
  edit(1001, "UPDATE offers SET price_minor = 0 WHERE event_id = 7");
  auto free_event = se.impulse_buy(7, kT0);
  ASSERT_FALSE(free_event.ok());
  EXPECT_EQ(free_event.error().code, Errc::auth_failed);

  edit(1001, "INSERT INTO prepaid VALUES (1, 100000, 'EUR', zeroblob(32))");
  auto prepaid = se.impulse_buy(8, kT0);
  ASSERT_FALSE(prepaid.ok());
  EXPECT_EQ(prepaid.error().code, Errc::auth_failed);
  EXPECT_TRUE(se.history().empty());
  EXPECT_FALSE(se.settlement_status().prepaid.has_value());
}

TEST_F(StoreTrustTest, AParentalLimitLiftedByHandLocksEveryRatedEvent) {
  ASSERT_TRUE(world.stb(1001).set_parental("1234", 12, "").ok());
  EXPECT_EQ(world.reopen(1001).parental_max_age(), 12);
  edit(1001, "UPDATE parental SET max_age = 255");
  auto& se = world.reopen(1001);
  EXPECT_EQ(se.rows_refused(), 1u);
  EXPECT_EQ(se.parental_max_age(), 0);
  EXPECT_FALSE(se.verify_pin("1234"));
}

TEST_F(StoreTrustTest, ADroppedTableIsRefusedNeverRecreatedEmpty) {
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms(1001);
  ASSERT_TRUE(world.stb(1001).impulse_buy(7, kT0).ok());
  edit(1001, "DROP TABLE history");
  for (auto access : {SecureElement::Access::read_only, SecureElement::Access::read_write}) {
    auto opened = SecureElement::open(world.stb_home(1001), access);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.error().code, Errc::storage);
    EXPECT_NE(opened.error().message.find("table 'history' is missing"), std::string::npos) << opened.error().message;
  }
  // Still missing: nothing put an empty one back.
  auto db = sql::Database::open(db_path(1001), false);
  ASSERT_TRUE(db.ok());
  auto st = db->prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'history'");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 0);
}

TEST_F(StoreTrustTest, AlteredTablesOtherSchemaVersionsAndCorruptFilesAreRefused) {
  edit(1001, "ALTER TABLE tickets ADD COLUMN note TEXT");
  auto altered = SecureElement::open(world.stb_home(1001));
  ASSERT_FALSE(altered.ok());
  EXPECT_NE(altered.error().message.find("table 'tickets' was altered"), std::string::npos) << altered.error().message;

  edit(1002, "PRAGMA user_version = 1");
  auto old = SecureElement::open(world.stb_home(1002), SecureElement::Access::read_only);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.error().message.find("schema version 1"), std::string::npos) << old.error().message;

  // Bytes in the middle of the file overwritten.
  const auto home = world.dir().file("stb-1003");
  world.add_stb(1003);
  world.reopen(1003);
  {
    std::fstream f(home + "/stb.db", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    const std::string junk(4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto corrupt = SecureElement::open(home, SecureElement::Access::read_only);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().code, Errc::storage);
  EXPECT_NE(corrupt.error().message.find("damaged"), std::string::npos) << corrupt.error().message;
}

TEST_F(StoreTrustTest, ReadOnlyOpeningWritesNothingIntoTheFile) {
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms(1001);
  ASSERT_TRUE(world.stb(1001).impulse_buy(7, kT0).ok());
  const auto path = db_path(1001);
  auto read_all = [&] {
    std::ifstream f(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  };
  // Everything checkpointed into the file first, so that the comparison is of the file itself.
  edit(1001, "PRAGMA wal_checkpoint(TRUNCATE)");
  const auto before = read_all();
  {
    auto se = SecureElement::open(world.stb_home(1001), SecureElement::Access::read_only);
    ASSERT_TRUE(se.ok()) << se.error().message;
    EXPECT_EQ(se->history().size(), 1u);
    EXPECT_EQ(se->tickets().size(), 1u);
    EXPECT_EQ(se->settlement_status().unsettled_records, 1u);
  }
  EXPECT_EQ(read_all(), before);
}

// A real full file system (a 1 MiB tmpfs; CI and this test run as root, elsewhere it is skipped).
class FullDiskTest : public StoreTrustTest {
 protected:
  void SetUp() override {
    StoreTrustTest::SetUp();
    mount_point = world.dir().file("small-disk");
    fs::create_directories(mount_point);
    if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (errno " << errno << "): needs root";
    }
    mounted = true;
  }
  void TearDown() override {
    if (mounted) ::umount2(mount_point.c_str(), MNT_DETACH);
  }
  void fill_disk() {
    std::FILE* f = std::fopen((mount_point + "/filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::vector<char> block(4096, 1);
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  }
  std::string mount_point;
  bool mounted = false;
};

TEST_F(FullDiskTest, TheStbKeepsWhatItHoldsAndSaysItCannotStore) {
  auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
  const auto home = mount_point + "/stb-2001";
  auto made = SecureElement::init(home, 2001, op);
  ASSERT_TRUE(made.ok()) << made.error().message;
  auto pub = made->public_identity();
  ASSERT_TRUE(world.store().register_stb({pub.stb_id, pub.x25519_public, pub.ed25519_public}).ok());
  ASSERT_TRUE(world.store().grant(2001, 1, kT0, kT0 + 3600).ok());
  for (const auto& emm : world.store().emm_sections(0)) (void)made->apply_emm(emm);
  ASSERT_TRUE(made->open_ecm(service_ecm(kT0 + 10)).ok());

  fill_disk();
  // New EMMs (a second service, a credit line with offers) cannot be stored: refused as storage,
  // nothing half-applied, and what is held keeps opening ECMs.
  world.add_service(2);
  ASSERT_TRUE(world.store().grant(2001, 2, kT0, kT0 + 3600).ok());
  ASSERT_TRUE(world.store().set_credit(2001, {5000, kEur}, kT0).ok());
  int storage_failures = 0;
  for (int round = 0; round < 3; ++round) {
    for (const auto& emm : testing::box_emm_sections(world.store(), 0)) {
      auto r = made->apply_emm(emm);
      if (!r.ok()) {
        EXPECT_EQ(r.error().code, Errc::storage) << r.error().message;
        ++storage_failures;
      }
    }
  }
  EXPECT_GT(storage_failures, 0);
  EXPECT_TRUE(made->open_ecm(service_ecm(kT0 + 20)).ok());
  EXPECT_EQ(made->entitlements().size(), 1u);

  // A restart on the full disk opens the store and plays what it holds.
  { auto closing = std::move(made.value()); }
  auto reopened = SecureElement::open(home);
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  EXPECT_TRUE(reopened->open_ecm(service_ecm(kT0 + 30)).ok());

  // Room again: the carousel's next pass stores them.
  fs::remove(mount_point + "/filler");
  for (const auto& emm : world.store().emm_sections(0)) (void)reopened->apply_emm(emm);
  EXPECT_EQ(reopened->entitlements().size(), 2u);
  EXPECT_TRUE(reopened->credit_limit().ok());
}

}  // namespace
}  // namespace usher::stb
