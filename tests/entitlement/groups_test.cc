// Groups of 256, group and global keys, group EMMs for grants, renewals and revocations, global
// EMMs for offers and messages, cut-off by re-keying (issue 11, section 1), on a real store.
#include <gtest/gtest.h>

#include <algorithm>
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

class EntitlementGroups : public testing::GroupStoreTest {
 protected:
  std::vector<QueuedEmm> queued(EmmAddressType type) {
    std::vector<QueuedEmm> out;
    for (auto& q : store->queued_emms()) {
      if (q.address.type == type) out.push_back(std::move(q));
    }
    return out;
  }

  // The member grants queued for a group, opened with the group's current key.
  std::vector<EmmMemberGrant> member_grants(std::uint32_t group_id) {
    std::vector<EmmMemberGrant> out;
    const auto key = store->group_key(group_id).value();
    for (const auto& q : queued(EmmAddressType::group)) {
      if (q.address.id != group_id) continue;
      auto emm = decode_shared_emm(q.section, key.key);
      EXPECT_TRUE(emm.ok()) << emm.error().message;
      if (!emm) continue;
      for (auto& item : emm->items) {
        if (auto* g = std::get_if<EmmMemberGrant>(&item)) out.push_back(std::move(*g));
      }
    }
    return out;
  }
};

std::set<std::uint16_t> services_of(const EmmMemberGrant& g) {
  std::set<std::uint16_t> out;
  for (const auto& s : g.services) out.insert(s.service_id);
  return out;
}

TEST_F(EntitlementGroups, RegistrationFillsPositionsZeroTo255ThenOpensANewGroup) {
  register_boxes(5000, 257);
  for (std::uint32_t i = 0; i < 256; ++i) {
    auto m = store->group_of(5000 + i);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->group_id, 1u);
    EXPECT_EQ(m->position, i);
    EXPECT_EQ(m->key_version, 1u);
  }
  auto last = store->group_of(5256);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->group_id, 2u);
  EXPECT_EQ(last->position, 0);
  const auto groups = store->groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].members, 256u);
  EXPECT_EQ(groups[1].members, 1u);
  EXPECT_FALSE(store->group_key(1).value().key == store->group_key(2).value().key);
}

TEST_F(EntitlementGroups, EachBoxsKeyEmmOpensWithItsUniqueKeyAndHoldsItsGroupKeyAndTheGlobalKey) {
  register_boxes(7000, 3);
  const auto unique = queued(EmmAddressType::unique);
  ASSERT_EQ(unique.size(), 3u);  // one each, nothing else
  const auto global = store->global_key();
  EXPECT_EQ(global.key_version, 1u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    const auto& q = unique[i];
    EXPECT_EQ(q.address.id, 7000 + i);
    EXPECT_EQ(q.topic, "keys");
    auto emm = decode_emm(q.section, unique_key(7000 + i));
    ASSERT_TRUE(emm.ok()) << emm.error().message;
    ASSERT_EQ(emm->items.size(), 2u);
    const auto* group = std::get_if<EmmGroupKey>(&emm->items[0]);
    ASSERT_NE(group, nullptr);
    EXPECT_EQ(group->group_id, 1u);
    EXPECT_EQ(group->position, i);
    EXPECT_EQ(group->key_version, 1u);
    EXPECT_TRUE(group->key == store->group_key(1).value().key);
    const auto* global_item = std::get_if<EmmGlobalKey>(&emm->items[1]);
    ASSERT_NE(global_item, nullptr);
    EXPECT_EQ(global_item->key_version, 1u);
    EXPECT_TRUE(global_item->key == global.key);
    // Another box's key does not open it.
    EXPECT_FALSE(decode_emm(q.section, unique_key(7000 + (i + 1) % 3)).ok());
  }
}

TEST_F(EntitlementGroups, SequenceNumbersComeFromOneCounterForEveryAddress) {
  register_boxes(100, 2);
  const auto now = unix_now();
  ASSERT_TRUE(store->grant_package(100, 10, now, now + 86400).ok());
  ASSERT_TRUE(store->grant(101, 3, now, now + 86400).ok());
  ASSERT_TRUE(store->send_message("Maintenance tonight", now + 3600).ok());
  std::set<std::uint64_t> seen;
  std::uint64_t last = 0;
  std::set<EmmAddressType> types;
  for (const auto& q : store->queued_emms()) {
    auto header = peek_any_emm(q.section);
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header->sequence, q.sequence);
    EXPECT_GT(q.sequence, last) << "queued in the order drawn";
    last = q.sequence;
    EXPECT_TRUE(seen.insert(q.sequence).second);
    types.insert(q.address.type);
  }
  EXPECT_EQ(types.size(), 3u);
  EXPECT_EQ(store->next_emm_sequence(), last + 1);
}

TEST_F(EntitlementGroups, RenewalOf600BoxesQueuesOneGroupEmmPerGroupWithExactlyTheSubscribersBits) {
  register_boxes(1, 700);
  const auto now = unix_now();
  std::set<std::uint32_t> subscribers;
  for (std::uint32_t id = 1; id <= 700; ++id) {
    if (id % 7 != 0) subscribers.insert(id);  // 600 of the 700, in all three groups
  }
  ASSERT_EQ(subscribers.size(), 600u);
  ASSERT_TRUE(store->batch([&] {
                      for (auto id : subscribers) {
                        if (!store->grant_package(id, 10, now - 86400, now + 86400)) throw std::runtime_error("grant");
                      }
                      // Boxes 7 and 14: a revoked grant and an expired one, neither renewed.
                      if (!store->grant_package(7, 10, now - 86400, now + 86400) || !store->revoke_package(7, 10)) throw std::runtime_error("7");
                      if (!store->grant_package(14, 10, now - 3 * 86400, now - 86400)) throw std::runtime_error("14");
                    }).ok());
  const auto until = now + 31 * 86400;
  const auto renewed = store->renew_package(10, until, now);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_EQ(*renewed, 600u);

  const auto group_emms = queued(EmmAddressType::group);
  ASSERT_EQ(group_emms.size(), 3u) << "one member grant per group: the grants before the renewal are replaced";
  std::size_t bits = 0;
  for (std::uint32_t group_id = 1; group_id <= 3; ++group_id) {
    const auto grants = member_grants(group_id);
    ASSERT_EQ(grants.size(), 1u);
    const auto& g = grants[0];
    EXPECT_EQ(g.not_after, until);
    EXPECT_EQ(services_of(g), (std::set<std::uint16_t>{1, 2}));
    EXPECT_TRUE(g.services[0].key == store->service_key(g.services[0].service_id).value().key);
    for (std::uint32_t id = 1; id <= 700; ++id) {
      const auto m = store->group_of(id).value();
      if (m.group_id != group_id) continue;
      EXPECT_EQ(g.members.has(m.position), subscribers.count(id) == 1) << "STB " << id;
    }
    bits += g.members.count();
  }
  EXPECT_EQ(bits, 600u);
  for (const auto& g : store->grants()) {
    if (subscribers.count(g.stb_id)) {
      EXPECT_EQ(g.not_after, until);
    } else {
      EXPECT_NE(g.not_after, until) << "STB " << g.stb_id;
    }
  }
}

// A pass is carried as a grant of its service for the days paid: a renewal of a package of that
// service does not lengthen it for nothing.
TEST_F(EntitlementGroups, ARenewalLeavesPassesAlone) {
  register_boxes(1, 2);
  const auto now = unix_now();
  const Currency eur{'E', 'U', 'R'};
  ASSERT_TRUE(store->add_package(11, "News only", {1}).ok());
  ASSERT_TRUE(store->set_pass_price(1, {100, eur}).ok());
  const auto handset = crypto::Ed25519KeyPair::generate();
  const auto card = store->register_handset("alice", handset.public_key, eur).value();
  TestAcquirer acquirer;
  ASSERT_TRUE(store->top_up(card.card_id, 1000, "visa-test", acquirer).ok());
  SpendAuthorization spend;
  spend.card_id = card.card_id;
  spend.amount = {300, eur};
  spend.payee = pass_payee_for(1, 3, 1);
  crypto::random_bytes(spend.nonce);
  spend.sign(handset.private_key);
  const auto pass = store->buy_pass(1, 3, 1, spend, now);
  ASSERT_TRUE(pass.ok()) << pass.error().message;
  ASSERT_TRUE(store->grant_package(2, 11, now, now + 86400).ok());
  const auto renewed = store->renew_package(11, now + 40 * 86400, now);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_EQ(*renewed, 1u);
  for (const auto& g : store->grants()) EXPECT_EQ(g.not_after, g.stb_id == 1 ? now + 3 * 86400 : now + 40 * 86400) << "STB " << g.stb_id;
}

TEST_F(EntitlementGroups, GrantingOneBoxSendsItsUniqueEmmAndPutsItsBitInTheGroupsMemberGrant) {
  register_boxes(1, 3);
  const auto now = unix_now();
  ASSERT_TRUE(store->grant_package(1, 10, now, now + 86400).ok());
  ASSERT_TRUE(store->grant_package(3, 10, now, now + 86400).ok());
  const auto grants = member_grants(1);
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_TRUE(grants[0].members.has(0));
  EXPECT_FALSE(grants[0].members.has(1));
  EXPECT_TRUE(grants[0].members.has(2));
  // And each box its unique grant EMMs (one per service), beside its key EMM.
  std::size_t unique_grants = 0;
  for (const auto& q : queued(EmmAddressType::unique)) {
    if (q.address.id != 3 || q.topic == "keys") continue;
    auto emm = decode_emm(q.section, unique_key(3));
    ASSERT_TRUE(emm.ok());
    unique_grants += std::count_if(emm->items.begin(), emm->items.end(), [](const EmmItem& i) { return std::holds_alternative<EmmGrant>(i); });
  }
  EXPECT_EQ(unique_grants, 2u);
}

TEST_F(EntitlementGroups, RevokingReplacesTheGroupsCarouselGrantWithOneWithoutTheBox) {
  register_boxes(1, 3);
  const auto now = unix_now();
  ASSERT_TRUE(store->batch([&] {
                      for (std::uint32_t id = 1; id <= 3; ++id) {
                        if (!store->grant_package(id, 10, now, now + 86400)) throw std::runtime_error("grant");
                      }
                    }).ok());
  const auto before = queued(EmmAddressType::group);
  ASSERT_EQ(before.size(), 1u);
  ASSERT_TRUE(store->revoke(2, 1).ok());  // box 2 (position 1) loses News, keeps Sport

  std::uint64_t unique_revoke_sequence = 0;
  for (const auto& q : queued(EmmAddressType::unique)) {
    if (q.address.id != 2) continue;
    auto emm = decode_emm(q.section, unique_key(2));
    ASSERT_TRUE(emm.ok());
    for (const auto& item : emm->items) {
      if (const auto* r = std::get_if<EmmRevoke>(&item); r && r->service_id == 1) unique_revoke_sequence = q.sequence;
    }
  }
  ASSERT_NE(unique_revoke_sequence, 0u) << "the unique revoke, as before";
  for (const auto& q : queued(EmmAddressType::group)) {
    EXPECT_NE(q.sequence, before[0].sequence) << "the old member grant is off the carousel";
    EXPECT_GT(q.sequence, unique_revoke_sequence);
  }
  bool sport_for_box_2 = false;
  for (const auto& g : member_grants(1)) {
    const auto services = services_of(g);
    if (services.count(1)) {
      EXPECT_FALSE(g.members.has(1)) << "box 2's bit is clear in every member grant of News";
      EXPECT_TRUE(g.members.has(0));
      EXPECT_TRUE(g.members.has(2));
    }
    if (services == std::set<std::uint16_t>{2} && g.members.has(1)) sport_for_box_2 = true;
  }
  EXPECT_TRUE(sport_for_box_2) << "what box 2 keeps stays on its group's carousel";

  // Revoking the whole package leaves no member grant with its bit.
  ASSERT_TRUE(store->revoke(2, 2).ok());
  for (const auto& g : member_grants(1)) EXPECT_FALSE(g.members.has(1));
}

TEST_F(EntitlementGroups, CutOffReKeysTheGroupSoTheBoxsOldKeyOpensNothingIssuedAfter) {
  register_boxes(1, 4);
  const auto now = unix_now();
  ASSERT_TRUE(store->batch([&] {
                      for (std::uint32_t id = 1; id <= 4; ++id) {
                        if (!store->grant_package(id, 10, now, now + 86400)) throw std::runtime_error("grant");
                      }
                    }).ok());
  const auto old_key = store->group_key(1).value();
  ASSERT_EQ(old_key.key_version, 1u);
  const auto sequence_before = store->next_emm_sequence();

  ASSERT_TRUE(store->cut_off(3).ok());  // position 2
  EXPECT_FALSE(store->group_of(3).has_value());
  const auto new_key = store->group_key(1).value();
  EXPECT_EQ(new_key.key_version, 2u);
  EXPECT_EQ(store->groups()[0].members, 3u);
  for (const auto& g : store->grants()) {
    if (g.stb_id == 3) {
      EXPECT_TRUE(g.revoked);
    }
  }

  // Every group EMM on the carousel now is under the new key: the old one opens none of them.
  const auto group_emms = queued(EmmAddressType::group);
  ASSERT_FALSE(group_emms.empty());
  for (const auto& q : group_emms) {
    EXPECT_GE(q.sequence, sequence_before);
    EXPECT_EQ(peek_any_emm(q.section).value().address.key_version, 2u);
    EXPECT_EQ(decode_shared_emm(q.section, old_key.key).error().code, Errc::auth_failed);
    auto opened = decode_shared_emm(q.section, new_key.key);
    ASSERT_TRUE(opened.ok());
    for (const auto& item : opened->items) {
      if (const auto* g = std::get_if<EmmMemberGrant>(&item)) {
        EXPECT_FALSE(g->members.has(2));
        EXPECT_EQ(g->members.count(), 3u);
      }
    }
  }
  // Each other member gets the new key by unique EMM; the cut-off box gets none.
  std::set<std::uint32_t> rekeyed;
  for (const auto& q : queued(EmmAddressType::unique)) {
    if (q.topic != "keys") continue;
    ASSERT_NE(q.address.id, 3u);
    auto emm = decode_emm(q.section, unique_key(q.address.id));
    ASSERT_TRUE(emm.ok());
    const auto* group = std::get_if<EmmGroupKey>(&emm->items[0]);
    ASSERT_NE(group, nullptr);
    EXPECT_EQ(group->key_version, 2u);
    EXPECT_TRUE(group->key == new_key.key);
    EXPECT_EQ(group->position, store->group_of(q.address.id).value().position);
    rekeyed.insert(q.address.id);
  }
  EXPECT_EQ(rekeyed, (std::set<std::uint32_t>{1, 2, 4}));

  // A later renewal is under the new key too; the box is refused anything more.
  ASSERT_TRUE(store->renew_package(10, now + 40 * 86400, now).ok());
  for (const auto& q : queued(EmmAddressType::group)) EXPECT_FALSE(decode_shared_emm(q.section, old_key.key).ok());
  EXPECT_EQ(store->grant(3, 1, now, now + 86400).error().code, Errc::not_entitled);
  EXPECT_EQ(store->set_credit(3, {1000, {'E', 'U', 'R'}}, now).error().code, Errc::not_entitled);
  EXPECT_EQ(store->cut_off(3).error().code, Errc::not_entitled);
  EXPECT_EQ(store->cut_off(99).error().code, Errc::not_found);

  // Its position is free again: the next box takes it, with the new key.
  register_boxes(5, 1);
  const auto m = store->group_of(5).value();
  EXPECT_EQ(m.group_id, 1u);
  EXPECT_EQ(m.position, 2);
  EXPECT_EQ(m.key_version, 2u);
}

TEST_F(EntitlementGroups, AnEventForAThousandCreditBoxesIsOneGlobalEmm) {
  register_boxes(1, 1000);
  const auto now = unix_now();
  ASSERT_TRUE(store->batch([&] {
                      for (std::uint32_t id = 1; id <= 1000; ++id) {
                        if (!store->set_credit(id, {2000, {'E', 'U', 'R'}}, now)) throw std::runtime_error("credit");
                      }
                    }).ok());
  const auto before = store->queued_emms().size();
  EventInfo event;
  event.event_id = 42;
  event.service_id = 3;
  event.start = now + 3600;
  event.duration = 7200;
  event.title = "Cup Final";
  event.price = {1250, {'E', 'U', 'R'}};
  ASSERT_TRUE(store->add_event(event).ok());
  const auto after = store->queued_emms();
  ASSERT_EQ(after.size(), before + 1);
  const auto& q = after.back();
  EXPECT_EQ(q.address.type, EmmAddressType::global);
  EXPECT_EQ(q.carousel_until, event.end());
  auto emm = decode_shared_emm(q.section, store->global_key().key);
  ASSERT_TRUE(emm.ok()) << emm.error().message;
  ASSERT_EQ(emm->items.size(), 1u);
  const auto* offer = std::get_if<EmmOffer>(&emm->items[0]);
  ASSERT_NE(offer, nullptr);
  EXPECT_EQ(offer->event_id, 42u);
  EXPECT_EQ(offer->price_minor, 1250);
  EXPECT_TRUE(offer->event_key == store->current_event(3, event.start)->key);
  // Setting one box's credit line still sends that box its own EMM.
  ASSERT_TRUE(store->set_credit(1, {3000, {'E', 'U', 'R'}}, now).ok());
  const auto last = store->queued_emms().back();
  EXPECT_EQ(last.address.type, EmmAddressType::unique);
  EXPECT_EQ(last.address.id, 1u);
}

TEST_F(EntitlementGroups, AMessageAndTheNextGlobalKeyGoToEveryBoxInGlobalEmms) {
  register_boxes(1, 2);
  const auto now = unix_now();
  const auto id = store->send_message("Maintenance tonight from 02:00", now + 86400);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(store->send_message(std::string(201, 'x'), now + 86400).error().code, Errc::invalid_argument);
  EXPECT_EQ(store->send_message("late", now - 1).error().code, Errc::invalid_argument);
  const auto first_key = store->global_key();
  {
    const auto q = store->queued_emms().back();
    auto emm = decode_shared_emm(q.section, first_key.key);
    ASSERT_TRUE(emm.ok());
    const auto* message = std::get_if<EmmMessage>(&emm->items[0]);
    ASSERT_NE(message, nullptr);
    EXPECT_EQ(message->message_id, *id);
    EXPECT_EQ(message->text, "Maintenance tonight from 02:00");
  }
  const auto version = store->rotate_global_key();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 2u);
  const auto next_key = store->global_key();
  EXPECT_EQ(next_key.key_version, 2u);
  {
    const auto q = store->queued_emms().back();
    EXPECT_EQ(peek_any_emm(q.section).value().address.key_version, 1u) << "announced under the key the boxes hold";
    auto emm = decode_shared_emm(q.section, first_key.key);
    ASSERT_TRUE(emm.ok());
    const auto* announced = std::get_if<EmmGlobalKey>(&emm->items[0]);
    ASSERT_NE(announced, nullptr);
    EXPECT_EQ(announced->key_version, 2u);
    EXPECT_TRUE(announced->key == next_key.key);
  }
  ASSERT_TRUE(store->send_message("After the rotation", now + 86400).ok());
  EXPECT_EQ(peek_any_emm(store->queued_emms().back().section).value().address.key_version, 2u);
  // A box registered now gets the new global key.
  register_boxes(3, 1);
  auto emm = decode_emm(store->queued_emms().back().section, unique_key(3));
  ASSERT_TRUE(emm.ok());
  EXPECT_EQ(std::get<EmmGlobalKey>(emm->items[1]).key_version, 2u);
}

// A store of schema 2 (before the EMM feed's step 3 and the groups' step 4): its boxes get groups and
// key EMMs at the first opening, the counter starts above the numbers they had, and its operator
// gets a global key.
TEST_F(EntitlementGroups, AStoreOfSchemaTwoGetsGroupsAndACounterAboveItsBoxesNumbers) {
  register_boxes(1, 2);
  store.reset();
  {
    auto db = open_store_database(dir.path(), {EntitlementStore::kDatabaseName, "engine"}, IfMissing::refuse).value();
    // Steps 5, 4 and 3 undone, in that order.
    db.exec(R"(
      DROP TABLE service_key_versions;
      DROP INDEX emm_queue_by_topic;
      DROP TABLE group_members;
      DROP TABLE emm_groups;
      DROP TABLE global_keys;
      DROP TABLE emm_counter;
      DELETE FROM emm_queue;
      ALTER TABLE emm_queue DROP COLUMN address_type;
      ALTER TABLE emm_queue DROP COLUMN topic;
      ALTER TABLE stbs DROP COLUMN cut_off;
      UPDATE stbs SET next_emm_sequence = 41 WHERE stb_id = 1;
      UPDATE stbs SET next_emm_sequence = 7 WHERE stb_id = 2;
      DROP INDEX emm_queue_by_change;
      DROP INDEX emm_queue_by_until;
      ALTER TABLE emm_queue DROP COLUMN change_number;
      ALTER TABLE emm_queue DROP COLUMN priority;
      DROP TABLE emm_removed;
      DELETE FROM settings WHERE name IN ('emm_change', 'emm_removed_horizon');
    )");
    db.connection().set_schema_version(2);
  }
  auto opened = EntitlementStore::open(dir.path());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  store.emplace(std::move(*opened));
  ASSERT_EQ(EntitlementStore::schema().latest(), 5);
  EXPECT_EQ(store->group_of(1).value().position, 0);
  EXPECT_EQ(store->group_of(2).value().position, 1);
  const auto queue = store->queued_emms();
  ASSERT_EQ(queue.size(), 2u);
  for (const auto& q : queue) {
    EXPECT_GE(q.sequence, 41u) << "above every number a box had";
    auto emm = decode_emm(q.section, unique_key(q.address.id));
    ASSERT_TRUE(emm.ok());
    EXPECT_TRUE(std::get<EmmGlobalKey>(emm->items[1]).key == store->global_key().key);
  }
  // Opening again places nothing twice.
  store.reset();
  store.emplace(EntitlementStore::open(dir.path()).value());
  EXPECT_EQ(store->queued_emms().size(), 2u);
  EXPECT_EQ(store->groups()[0].members, 2u);
}

}  // namespace
}  // namespace usher::entitlement
