// Service key rotation in the engine (issue 11, section 1): the next key announced ahead in the
// group EMMs the carousel already carries, grants made meanwhile carrying both keys, the older key
// no longer sent once the next one is in use; refusals; schema step 5. On a real store.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "postgres_server.h"
#include "group_store_fixture.h"
#include "temp_dir.h"
#include "usher/core/clock.h"
#include "usher/core/store_database.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {
namespace {

constexpr std::uint16_t kCa = testing::GroupStoreTest::kCa;

class EntitlementRotation : public testing::GroupStoreTest {
 protected:
  // Per group, its member grants on the carousel, opened with the group's current key.
  std::map<std::uint32_t, std::vector<EmmMemberGrant>> member_grants() {
    std::map<std::uint32_t, std::vector<EmmMemberGrant>> out;
    for (const auto& q : store->queued_emms()) {
      if (q.address.type != EmmAddressType::group) continue;
      auto emm = decode_shared_emm(q.section, store->group_key(q.address.id).value().key);
      EXPECT_TRUE(emm.ok()) << emm.error().message;
      if (!emm) continue;
      for (auto& item : emm->items) {
        if (auto* g = std::get_if<EmmMemberGrant>(&item)) out[q.address.id].push_back(std::move(*g));
      }
    }
    return out;
  }
};

// The (service, version) pairs a member grant carries.
std::multiset<std::pair<std::uint16_t, std::uint16_t>> versions_of(const EmmMemberGrant& g) {
  std::multiset<std::pair<std::uint16_t, std::uint16_t>> out;
  for (const auto& s : g.services) out.emplace(s.service_id, s.key_version);
  return out;
}

TEST_F(EntitlementRotation, TheNextKeyIsAnnouncedInEveryGroupsMemberGrantsWithTheirBitmapsUnchanged) {
  const auto now = unix_now();
  register_boxes(1, 300);  // groups 1 (256) and 2 (44)
  ASSERT_TRUE(store->batch([&] {
                      for (std::uint32_t id = 1; id <= 300; id += 3) {
                        if (!store->grant_package(id, 10, now - 86400, now + 30 * 86400)) throw std::runtime_error("grant");
                      }
                    }).ok());
  ASSERT_TRUE(store->revoke_package(4, 10).ok());  // revoked: no next key
  ASSERT_TRUE(store->cut_off(7).ok());             // cut off: no next key, and no key to open the group's EMMs
  std::map<std::uint32_t, MemberBitmap> before;
  for (const auto& [group, grants] : member_grants()) {
    ASSERT_EQ(grants.size(), 1u);
    before[group] = grants[0].members;
    EXPECT_EQ(versions_of(grants[0]), (std::multiset<std::pair<std::uint16_t, std::uint16_t>>{{1, 1}, {2, 1}}));
  }
  ASSERT_EQ(before.size(), 2u);
  const auto unique_before = store->queued_emms().size() - [&] {
    std::size_t n = 0;
    for (const auto& q : store->queued_emms()) n += q.address.type == EmmAddressType::group;
    return n;
  }();

  const auto rotated = store->rotate_service_key(1, now + 3600, now);
  ASSERT_TRUE(rotated.ok()) << rotated.error().message;
  EXPECT_EQ(rotated->key_version, 2);
  EXPECT_EQ(rotated->starts, now + 3600);

  const auto after = member_grants();
  ASSERT_EQ(after.size(), 2u);
  for (const auto& [group, grants] : after) {
    SCOPED_TRACE("group " + std::to_string(group));
    ASSERT_EQ(grants.size(), 1u) << "the member grant replaced, not a second one";
    EXPECT_EQ(grants[0].members, before.at(group)) << "the same boxes";
    EXPECT_EQ(versions_of(grants[0]), (std::multiset<std::pair<std::uint16_t, std::uint16_t>>{{1, 1}, {1, 2}, {2, 1}}));
    for (const auto& s : grants[0].services) {
      if (s.service_id == 1 && s.key_version == 2) {
        EXPECT_TRUE(s.key == rotated->key);
      }
    }
  }
  EXPECT_FALSE(after.at(1)[0].members.has(3)) << "box 4 (position 3) was revoked";
  // Sizes on the wire (docs/messages.md): two services grow from one TS packet (181 bytes, 184 of
  // payload with the pointer field) to two (217 bytes) with one service's next key beside.
  for (const auto& q : store->queued_emms()) {
    if (q.address.type == EmmAddressType::group) {
      EXPECT_EQ(q.section.size(), 217u);
    }
  }
  EXPECT_FALSE(store->group_of(7).has_value()) << "box 7 was cut off";
  // No unique EMM per box for the announcement.
  std::size_t unique_after = 0;
  for (const auto& q : store->queued_emms()) unique_after += q.address.type != EmmAddressType::group;
  EXPECT_EQ(unique_after, unique_before);

  // What the headend is told: the current key until the start, then the next one.
  auto keys = store->service_keys(1, now).value();
  EXPECT_EQ(keys.current.key_version, 1);
  ASSERT_TRUE(keys.next.has_value());
  EXPECT_EQ(keys.next->key_version, 2);
  EXPECT_EQ(keys.next->starts, now + 3600);
  EXPECT_EQ(keys.at(now + 3599).key_version, 1);
  EXPECT_EQ(keys.at(now + 3600).key_version, 2);
  auto later = store->service_keys(1, now + 3600).value();
  EXPECT_EQ(later.current.key_version, 2);
  EXPECT_TRUE(later.current.key == rotated->key);
  EXPECT_FALSE(later.next.has_value());
  EXPECT_FALSE(store->service_keys(2, now).value().next.has_value());
}

TEST_F(EntitlementRotation, ABoxGrantedTheServiceAloneGetsTheNextKeyInAMemberGrantToo) {
  const auto now = unix_now();
  register_boxes(1, 4);
  ASSERT_TRUE(store->grant_package(1, 10, now - 86400, now + 86400).ok());
  ASSERT_TRUE(store->grant(3, 1, now - 86400, now + 86400).ok());  // the package's window, service 1 alone
  ASSERT_TRUE(store->grant(4, 1, now, now + 7 * 86400).ok());      // a window of its own
  ASSERT_TRUE(store->grant(2, 2, now, now + 7 * 86400).ok());      // another service: not announced
  // Boxes 3 and 4 had their grants by unique EMM only: no member grant carried them.
  ASSERT_TRUE(store->rotate_service_key(1, now + 3600, now).ok());
  const auto all = member_grants();
  const auto& grants = all.at(1);
  // Per position, the windows of service 1 in which a member grant gives it the next key.
  std::map<std::uint8_t, std::set<std::uint64_t>> next_key_until;
  for (const auto& g : grants) {
    const auto versions = versions_of(g);
    EXPECT_EQ(versions.count({1, 1}), versions.count({1, 2})) << "the current key beside the next";
    if (versions.count({1, 2}) == 0) continue;
    for (int p = 0; p < 4; ++p) {
      if (g.members.has(static_cast<std::uint8_t>(p))) next_key_until[static_cast<std::uint8_t>(p)].insert(g.not_after);
    }
  }
  EXPECT_EQ(next_key_until[0], (std::set<std::uint64_t>{now + 86400}));
  EXPECT_EQ(next_key_until[2], (std::set<std::uint64_t>{now + 86400}));
  EXPECT_EQ(next_key_until[3], (std::set<std::uint64_t>{now + 7 * 86400}));
  EXPECT_EQ(next_key_until.count(1), 0u) << "box 2 does not hold service 1";
  // A member grant of one service with both keys still fits one TS packet.
  for (const auto& q : store->queued_emms()) {
    if (q.address.type == EmmAddressType::group && q.topic.ends_with("/1")) {
      EXPECT_EQ(q.section.size(), 181u) << q.topic;
    }
  }
}

TEST_F(EntitlementRotation, BadTimesAndASecondPendingRotationAreRefusedChangingNothing) {
  const auto now = unix_now();
  register_boxes(1, 2);
  ASSERT_TRUE(store->grant_package(1, 10, now - 86400, now + 86400).ok());
  const auto queued = store->queued_emms().size();
  for (const auto at : {now - 1, now}) {
    auto refused = store->rotate_service_key(1, at, now);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, Errc::invalid_argument);
    EXPECT_NE(refused.error().message.find("must start after now"), std::string::npos) << refused.error().message;
  }
  EXPECT_EQ(store->rotate_service_key(1, kLatestGrantEnd + 1, now).error().code, Errc::invalid_argument);
  EXPECT_EQ(store->rotate_service_key(99, now + 60, now).error().code, Errc::not_found);
  EXPECT_EQ(store->queued_emms().size(), queued);
  EXPECT_FALSE(store->service_keys(1, now).value().next.has_value());

  ASSERT_TRUE(store->rotate_service_key(1, now + 3600, now).ok());
  const auto announced = store->service_keys(1, now).value().next->key.clone();
  for (const auto at : {now + 60, now + 7200}) {
    auto second = store->rotate_service_key(1, at, now);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code, Errc::already_exists);
    EXPECT_NE(second.error().message.find("key version 2 announced for"), std::string::npos) << second.error().message;
  }
  const auto keys = store->service_keys(1, now).value();
  EXPECT_EQ(keys.next->starts, now + 3600);
  EXPECT_TRUE(keys.next->key == announced);
  // Once it has started, the next rotation may be announced.
  const auto third = store->rotate_service_key(1, now + 7200, now + 3600);
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_EQ(third->key_version, 3);
}

TEST_F(EntitlementRotation, GrantsAndRenewalsMadeWhileARotationIsPendingCarryBothKeys) {
  const auto now = unix_now();
  register_boxes(1, 3);
  ASSERT_TRUE(store->grant_package(1, 10, now - 86400, now + 86400).ok());
  ASSERT_TRUE(store->rotate_service_key(1, now + 3600, now).ok());
  // A single grant: its unique EMM names the service twice, the current key and the next.
  ASSERT_TRUE(store->grant(2, 1, now, now + 86400).ok());
  const auto queue = store->queued_emms();
  const auto& last = queue.back();
  ASSERT_EQ(last.address.type, EmmAddressType::unique);
  ASSERT_EQ(last.address.id, 2u);
  auto emm = decode_emm(last.section, unique_key(2));
  ASSERT_TRUE(emm.ok()) << emm.error().message;
  ASSERT_EQ(emm->items.size(), 2u);
  EXPECT_EQ(std::get<EmmGrant>(emm->items[0]).key_version, 1);
  EXPECT_EQ(std::get<EmmGrant>(emm->items[1]).key_version, 2);
  // A bulk grant and a renewal: member grants with both.
  const std::vector<std::uint32_t> boxes{3};
  const std::vector<std::uint16_t> services{1, 2};
  ASSERT_TRUE(store->grant_many(boxes, services, now, now + 2 * 86400).ok());
  ASSERT_TRUE(store->renew_package(10, now + 40 * 86400, now).ok());
  std::size_t seen = 0;
  for (const auto& [group, grants] : member_grants()) {
    for (const auto& g : grants) {
      const auto versions = versions_of(g);
      if (versions.count({1, 1}) == 0 && versions.count({1, 2}) == 0) continue;
      EXPECT_EQ(versions.count({1, 1}), 1u);
      EXPECT_EQ(versions.count({1, 2}), 1u);
      ++seen;
    }
  }
  EXPECT_GE(seen, 1u);
}

// A grant that ends before the next key comes into use has no use for it: last month's member grants
// stay on the carousel as they were when the new month's key is announced with the renewal (at a
// million boxes, not sealing them again halves the renewal's EMMs), and a grant ending first names
// the current key only.
TEST_F(EntitlementRotation, GrantsEndingBeforeTheSwitchAreLeftAsTheyWereAndTakeNoNextKey) {
  const auto now = unix_now();
  const auto month_end = now + 30 * 86400;
  register_boxes(1, 10);
  const std::vector<std::uint32_t> all{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<std::uint16_t> services{1, 2};
  ASSERT_TRUE(store->grant_many(all, services, now - 86400, month_end).ok());
  std::set<std::uint64_t> month_sequences;
  for (const auto& q : store->queued_emms()) {
    if (q.address.type == EmmAddressType::group) month_sequences.insert(q.sequence);
  }
  ASSERT_EQ(month_sequences.size(), 1u);
  // Boxes 1..8 renew; 9 and 10 do not. Then both services rotate at the month's end.
  const std::vector<std::uint32_t> renewing{1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(store->grant_many(renewing, services, now - 86400, month_end + 30 * 86400).ok());
  ASSERT_TRUE(store->rotate_service_key(1, month_end, now).ok());
  ASSERT_TRUE(store->rotate_service_key(2, month_end, now).ok());
  std::size_t month = 0;
  std::size_t renewal = 0;
  for (const auto& q : store->queued_emms()) {
    if (q.address.type != EmmAddressType::group) continue;
    auto emm = decode_shared_emm(q.section, store->group_key(q.address.id).value().key);
    ASSERT_TRUE(emm.ok());
    const auto& g = std::get<EmmMemberGrant>(emm->items.at(0));
    if (g.not_after == month_end) {
      ++month;
      EXPECT_TRUE(month_sequences.contains(q.sequence)) << "last month's member grant is not sealed again";
      EXPECT_EQ(versions_of(g), (std::multiset<std::pair<std::uint16_t, std::uint16_t>>{{1, 1}, {2, 1}}));
    } else {
      ++renewal;
      EXPECT_EQ(versions_of(g), (std::multiset<std::pair<std::uint16_t, std::uint16_t>>{{1, 1}, {1, 2}, {2, 1}, {2, 2}}));
    }
  }
  EXPECT_EQ(month, 1u);
  EXPECT_EQ(renewal, 1u);
  // A single grant that ends before the switch: the current key only.
  ASSERT_TRUE(store->grant(9, 1, now, month_end - 86400).ok());
  const auto queue = store->queued_emms();
  const auto& last = queue.back();
  ASSERT_EQ(last.address.type, EmmAddressType::unique);
  auto emm = decode_emm(last.section, unique_key(9));
  ASSERT_TRUE(emm.ok()) << emm.error().message;
  ASSERT_EQ(emm->items.size(), 1u);
  EXPECT_EQ(std::get<EmmGrant>(emm->items[0]).key_version, 1);
}

TEST_F(EntitlementRotation, OnceTheNextKeyIsInUseTheOlderOneIsNoLongerSent) {
  // The rotation's times are in the past of the real clock: it has started when the grants below
  // are made (they take their keys at the real time).
  const auto now = unix_now();
  register_boxes(1, 2);
  ASSERT_TRUE(store->grant_package(1, 10, now - 86400, now + 86400).ok());
  const auto starts = now - 100;
  ASSERT_TRUE(store->rotate_service_key(1, starts, now - 200).ok());
  EXPECT_EQ(store->settle_key_rotations(starts - 1).value(), 0u) << "not started yet";
  EXPECT_EQ(store->settle_key_rotations(starts).value(), 1u);
  for (const auto& [group, grants] : member_grants()) {
    ASSERT_EQ(grants.size(), 1u);
    EXPECT_EQ(versions_of(grants[0]), (std::multiset<std::pair<std::uint16_t, std::uint16_t>>{{1, 2}, {2, 1}}));
  }
  EXPECT_EQ(store->settle_key_rotations(now).value(), 0u) << "once per rotation";
  ASSERT_TRUE(store->grant(2, 1, now, now + 86400).ok());
  auto emm = decode_emm(store->queued_emms().back().section, unique_key(2));
  ASSERT_TRUE(emm.ok());
  ASSERT_EQ(emm->items.size(), 1u);
  EXPECT_EQ(std::get<EmmGrant>(emm->items[0]).key_version, 2);
  const auto listed = store->services();
  EXPECT_EQ(listed.at(0).key_version, 2);
  EXPECT_EQ(listed.at(1).key_version, 1);
}

// A store of schema 4 (before key versions): each service's one key becomes its version in use
// since always, and it rotates.
TEST_F(EntitlementRotation, AStoreOfSchemaFourKeepsEachServicesKeyAsItsCurrentVersion) {
  const auto now = unix_now();
  const auto key_before = store->service_key(1).value();
  store.reset();
  {
    auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
    db.exec("DROP TABLE service_key_versions");
    db.connection().set_schema_version(4);
  }
  auto opened = EntitlementStore::open(dir.path());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store.emplace(std::move(*opened));
  {
    auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
    EXPECT_EQ(sql::user_version(db), 5);
  }
  const auto keys = store->service_keys(1, now).value();
  EXPECT_EQ(keys.current.key_version, key_before.key_version);
  EXPECT_TRUE(keys.current.key == key_before.key);
  EXPECT_EQ(keys.current.starts, 0u);
  EXPECT_FALSE(keys.next.has_value());
  ASSERT_TRUE(store->rotate_service_key(1, now + 60, now).ok());
  EXPECT_EQ(store->service_keys(1, now + 60).value().current.key_version, 2);
}

}  // namespace
}  // namespace usher::entitlement
