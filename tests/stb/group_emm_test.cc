// Issue 11: the secure element and group (0x83) and global (0x84) EMMs. The operator's side is played
// here with its own keys and the formats API (real sealing, real SQLite stores of real secure
// elements), so that each case is exactly the EMM it names: member grants and revokes with the box's
// bit set and clear, other groups and key versions, items an address may not carry, replays,
// sequence numbers across addresses, a box cut off by a re-keying, rows edited by the box's owner,
// and a service key rotation. Also the descrambler handing 0x83 and 0x84 sections from a real TS to
// the secure element.
#include <gtest/gtest.h>

#include <initializer_list>
#include <memory>

#include "temp_dir.h"
#include "synthetic_stream.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/messages.h"
#include "usher/stb/descrambler.h"
#include "usher/stb/secure_element.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"

namespace usher::stb {
namespace {

using entitlement::EmmAddress;
using entitlement::EmmAddressType;
using entitlement::EmmItem;

constexpr std::uint64_t kT0 = 1'900'000'000;
constexpr std::uint16_t kCa = 0x4AFF;
constexpr std::uint32_t kGroup = 7;

Key256 random_key() {
  Key256 k;
  crypto::random_bytes(k.mutable_bytes());
  return k;
}

std::vector<EmmItem> items_of(EmmItem a) {
  std::vector<EmmItem> out;
  out.push_back(std::move(a));
  return out;
}
std::vector<EmmItem> items_of(EmmItem a, EmmItem b) {
  auto out = items_of(std::move(a));
  out.push_back(std::move(b));
  return out;
}

entitlement::MemberBitmap members(std::initializer_list<std::uint8_t> positions) {
  entitlement::MemberBitmap m;
  for (auto p : positions) m.set(p);
  return m;
}

// The operator: its keys, its one sequence counter, and the boxes it made.
class Operator {
 public:
  Operator() {
    pub_.ca_system_id = kCa;
    pub_.x25519_public = x_.public_key;
    pub_.ed25519_public = ed_.public_key;
  }
  SecureElement& add_box(std::uint32_t stb_id) {
    auto se = SecureElement::init(home(stb_id), stb_id, pub_);
    if (!se) throw std::runtime_error(se.error().message);
    return *boxes_.insert_or_assign(stb_id, std::make_unique<SecureElement>(std::move(se.value()))).first->second;
  }
  SecureElement& box(std::uint32_t stb_id) { return *boxes_.at(stb_id); }
  SecureElement& reopen(std::uint32_t stb_id) {
    boxes_.erase(stb_id);
    auto se = SecureElement::open(home(stb_id));
    if (!se) throw std::runtime_error(se.error().message);
    return *boxes_.emplace(stb_id, std::make_unique<SecureElement>(std::move(se.value()))).first->second;
  }
  std::string home(std::uint32_t stb_id) const { return dir_.file("stb-" + std::to_string(stb_id)); }

  std::uint64_t next_sequence() { return ++sequence_; }
  std::vector<std::uint8_t> unique(std::uint32_t stb_id, std::vector<EmmItem> items, std::uint64_t sequence = 0) {
    const auto key = entitlement::derive_emm_key(x_.private_key, box(stb_id).public_identity().x25519_public, kCa, stb_id).value();
    entitlement::EmmContent emm{stb_id, sequence != 0 ? sequence : next_sequence(), kT0, std::move(items)};
    return entitlement::encode_emm(emm, key);
  }
  std::vector<std::uint8_t> group(std::uint32_t group_id, std::uint32_t key_version, const Key256& key, std::vector<EmmItem> items,
                                  std::uint64_t sequence = 0) {
    entitlement::SharedEmmContent emm{{EmmAddressType::group, group_id, key_version}, sequence != 0 ? sequence : next_sequence(), kT0,
                                      std::move(items)};
    return entitlement::encode_shared_emm(emm, key);
  }
  std::vector<std::uint8_t> global(std::uint32_t key_version, const Key256& key, std::vector<EmmItem> items) {
    entitlement::SharedEmmContent emm{{EmmAddressType::global, 0, key_version}, next_sequence(), kT0, std::move(items)};
    return entitlement::encode_shared_emm(emm, key);
  }
  // Places a box in the group at `position` with version `version` of the group's key.
  void join(std::uint32_t stb_id, std::uint8_t position, std::uint32_t version, const Key256& key) {
    const auto emm = unique(stb_id, items_of(entitlement::EmmGroupKey{kGroup, position, version, key.clone()}));
    ASSERT_EQ(*box(stb_id).apply_emm(emm), EmmOutcome::applied);
  }
  entitlement::Ticket ticket_for(std::uint32_t stb_id, std::uint32_t event_id) const {
    entitlement::Ticket t;
    t.ticket_id = 500 + event_id;
    t.event_id = event_id;
    t.service_id = 1;
    t.stb_id = stb_id;
    t.valid_from = kT0;
    t.valid_until = kT0 + 7200;
    t.issued = kT0;
    t.provider_id = kCa;
    t.sign(ed_.private_key);
    return t;
  }

 private:
  testing::TempDir dir_;
  crypto::X25519KeyPair x_ = crypto::X25519KeyPair::generate();
  crypto::Ed25519KeyPair ed_ = crypto::Ed25519KeyPair::generate();
  entitlement::OperatorPublicFile pub_;
  std::uint64_t sequence_ = 100;
  std::map<std::uint32_t, std::unique_ptr<SecureElement>> boxes_;
};

std::vector<std::uint8_t> ecm(std::uint16_t service, std::uint16_t key_version, const Key256& key, std::uint64_t time = kT0 + 10) {
  entitlement::EcmContent e;
  e.service_id = service;
  e.key_version = key_version;
  e.current.crypto_period = 2;
  e.next.crypto_period = 3;
  e.current.time_unix = time;
  e.next.time_unix = time;
  e.current.cw = ControlWord::random();
  e.next.cw = ControlWord::random();
  return entitlement::encode_ecm(e, key, key);
}

entitlement::EmmMemberGrant member_grant(entitlement::MemberBitmap bits, std::uint16_t service, std::uint16_t version, const Key256& key) {
  entitlement::EmmMemberGrant g;
  g.members = bits;
  g.not_before = kT0;
  g.not_after = kT0 + 30 * 86400;
  g.services.push_back({service, version, key.clone()});
  return g;
}

class GroupEmmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    op.add_box(1001);
    op.add_box(1002);
    op.join(1001, 3, 1, group_key);
    op.join(1002, 4, 1, group_key);
  }
  Operator op;
  Key256 group_key = random_key();
  Key256 service_key = random_key();
};

TEST_F(GroupEmmTest, MemberGrantGivesOnlyTheMembersWhoseBitIsSet) {
  EXPECT_EQ(op.box(1001).group()->position, 3);
  const auto emm = op.group(kGroup, 1, group_key, items_of(member_grant(members({3, 200}), 1, 1, service_key)));
  EXPECT_EQ(*op.box(1001).apply_emm(emm), EmmOutcome::applied);
  EXPECT_EQ(*op.box(1002).apply_emm(emm), EmmOutcome::nothing_for_this_stb);  // its bit (4) is clear
  EXPECT_TRUE(op.box(1001).open_ecm(ecm(1, 1, service_key)).ok());
  EXPECT_EQ(op.box(1002).open_ecm(ecm(1, 1, service_key)).error().code, Errc::not_entitled);
  EXPECT_TRUE(op.box(1002).entitlements().empty());
  // Inside the grant's window only.
  EXPECT_EQ(op.box(1001).open_ecm(ecm(1, 1, service_key, kT0 + 31 * 86400)).error().code, Errc::not_entitled);
  // Kept across a restart.
  EXPECT_TRUE(op.reopen(1001).open_ecm(ecm(1, 1, service_key)).ok());
}

TEST_F(GroupEmmTest, MemberRevokeWithdrawsFromTheMembersWhoseBitIsSetOnly) {
  ASSERT_EQ(*op.box(1001).apply_emm(op.group(kGroup, 1, group_key, items_of(member_grant(members({3, 4}), 1, 1, service_key)))),
            EmmOutcome::applied);
  ASSERT_EQ(*op.box(1002).apply_emm(op.group(kGroup, 1, group_key, items_of(member_grant(members({3, 4}), 1, 1, service_key)))),
            EmmOutcome::applied);
  entitlement::EmmMemberRevoke revoke{members({3}), {1}};
  const auto emm = op.group(kGroup, 1, group_key, items_of(std::move(revoke)));
  EXPECT_EQ(*op.box(1001).apply_emm(emm), EmmOutcome::applied);
  EXPECT_EQ(*op.box(1002).apply_emm(emm), EmmOutcome::nothing_for_this_stb);
  auto denied = op.box(1001).open_ecm(ecm(1, 1, service_key));
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.error().message.find("revoked"), std::string::npos);
  EXPECT_TRUE(op.box(1002).open_ecm(ecm(1, 1, service_key)).ok());  // loses nothing by a revoke without its bit
}

TEST_F(GroupEmmTest, AnotherGroupsEmmAndAKeyVersionNotHeldAreNotAddressed) {
  const auto other_group = op.group(kGroup + 1, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key)));
  EXPECT_EQ(*op.box(1001).apply_emm(other_group), EmmOutcome::not_addressed);
  const auto newer_key = op.group(kGroup, 2, group_key, items_of(member_grant(members({3}), 1, 1, service_key)));
  EXPECT_EQ(*op.box(1001).apply_emm(newer_key), EmmOutcome::not_addressed);
  Key256 global_key = random_key();
  EXPECT_EQ(*op.box(1001).apply_emm(op.global(1, global_key, items_of(entitlement::EmmMessage{1, "hello"}))), EmmOutcome::not_addressed);
  EXPECT_TRUE(op.box(1001).entitlements().empty());
  // Sealed under another key with this group's header: forged.
  Key256 forger = random_key();
  const auto forged = op.group(kGroup, 1, forger, items_of(member_grant(members({3}), 1, 1, service_key)));
  EXPECT_EQ(op.box(1001).apply_emm(forged).error().code, Errc::auth_failed);
  // Its header changed: the tag no longer verifies.
  auto moved = op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key)));
  moved[15] ^= 1;  // a byte of the sequence number
  EXPECT_EQ(op.box(1001).apply_emm(moved).error().code, Errc::auth_failed);
  EXPECT_TRUE(op.box(1001).entitlements().empty());
}

TEST_F(GroupEmmTest, ItemsAnAddressMayNotCarryAreSkippedAndCounted) {
  // A group EMM carrying a ticket and a credit line gives neither.
  const auto ticket = op.ticket_for(1001, 9);
  auto emm = op.group(kGroup, 1, group_key,
                      items_of(entitlement::EmmTicket{ticket.encode(), random_key()}, entitlement::EmmCredit{5000, {'E', 'U', 'R'}}));
  auto& se = op.box(1001);
  EXPECT_EQ(*se.apply_emm(emm), EmmOutcome::nothing_for_this_stb);
  EXPECT_TRUE(se.tickets().empty());
  EXPECT_EQ(se.credit_limit().error().code, Errc::not_found);
  EXPECT_EQ(se.emm_items_skipped(), 2u);
  // A member grant in a unique EMM, and in a global one, gives nothing either.
  EXPECT_EQ(*se.apply_emm(op.unique(1001, items_of(member_grant(members({3}), 1, 1, service_key)))), EmmOutcome::nothing_for_this_stb);
  Key256 global_key = random_key();
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGlobalKey{1, global_key.clone()}))), EmmOutcome::applied);
  EXPECT_EQ(*se.apply_emm(op.global(1, global_key, items_of(member_grant(members({3}), 1, 1, service_key),
                                                               entitlement::EmmCredit{5000, {'E', 'U', 'R'}}))),
            EmmOutcome::nothing_for_this_stb);
  EXPECT_TRUE(se.entitlements().empty());
  EXPECT_EQ(se.credit_limit().error().code, Errc::not_found);
  EXPECT_EQ(se.emm_items_skipped(), 5u);
  // The same ticket in a unique EMM is taken.
  EXPECT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmTicket{ticket.encode(), random_key()}))), EmmOutcome::applied);
  EXPECT_EQ(se.tickets().size(), 1u);
}

TEST_F(GroupEmmTest, AReplayedGroupEmmIsADuplicateEvenAfterARestart) {
  const auto emm = op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key)));
  ASSERT_EQ(*op.box(1001).apply_emm(emm), EmmOutcome::applied);
  EXPECT_EQ(*op.box(1001).apply_emm(emm), EmmOutcome::duplicate);
  EXPECT_EQ(*op.reopen(1001).apply_emm(emm), EmmOutcome::duplicate);
  // One whose bit was clear is remembered as well: its repetitions cost no decryption.
  EXPECT_EQ(*op.box(1002).apply_emm(emm), EmmOutcome::nothing_for_this_stb);
  EXPECT_EQ(*op.box(1002).apply_emm(emm), EmmOutcome::duplicate);
}

TEST_F(GroupEmmTest, SequenceNumbersCompareAcrossAddresses) {
  // An older group grant after a newer unique revoke is stale...
  const auto old_seq = op.next_sequence();
  const auto revoke = op.unique(1001, items_of(entitlement::EmmRevoke{1}));
  ASSERT_EQ(*op.box(1001).apply_emm(revoke), EmmOutcome::applied);
  const auto old_grant = op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key)), old_seq);
  auto late = op.box(1001).apply_emm(old_grant);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::stale);
  EXPECT_EQ(op.box(1001).open_ecm(ecm(1, 1, service_key)).error().code, Errc::not_entitled);
  EXPECT_EQ(*op.box(1001).apply_emm(old_grant), EmmOutcome::duplicate);  // and its repetitions cost nothing
  // ... and a newer group grant after an older revoke applies.
  const auto new_grant = op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key)));
  EXPECT_EQ(*op.box(1001).apply_emm(new_grant), EmmOutcome::applied);
  EXPECT_TRUE(op.box(1001).open_ecm(ecm(1, 1, service_key)).ok());
  // A unique grant newer than a group revoke that did not set the box's bit stands.
  ASSERT_EQ(*op.box(1002).apply_emm(op.unique(1002, items_of(entitlement::EmmGrant{1, 1, service_key.clone(), kT0, kT0 + 86400}))),
            EmmOutcome::applied);
  entitlement::EmmMemberRevoke not_1002{members({3}), {1}};
  EXPECT_EQ(*op.box(1002).apply_emm(op.group(kGroup, 1, group_key, items_of(std::move(not_1002)))), EmmOutcome::nothing_for_this_stb);
  EXPECT_TRUE(op.box(1002).open_ecm(ecm(1, 1, service_key)).ok());
}

// The engine leaves a month's member grant on the carousel until it ends when the box's renewal
// (a longer window, in a newer member grant) is queued: a box that meets them in either order ends
// with the renewed window.
TEST_F(GroupEmmTest, ARenewalMetBeforeTheOlderMemberGrantKeepsTheRenewedWindow) {
  const auto month_seq = op.next_sequence();
  auto renewal = member_grant(members({3, 4}), 1, 1, service_key);
  renewal.not_after = kT0 + 60 * 86400;
  const auto renewed = op.group(kGroup, 1, group_key, items_of(std::move(renewal)));
  const auto month = op.group(kGroup, 1, group_key, items_of(member_grant(members({3, 4}), 1, 1, service_key)), month_seq);
  // Box 1001 (switched on late) meets the renewal first, then the month's grant from the carousel.
  ASSERT_EQ(*op.box(1001).apply_emm(renewed), EmmOutcome::applied);
  auto late = op.box(1001).apply_emm(month);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::stale);
  // Box 1002 meets them in the order queued.
  ASSERT_EQ(*op.box(1002).apply_emm(month), EmmOutcome::applied);
  ASSERT_EQ(*op.box(1002).apply_emm(renewed), EmmOutcome::applied);
  for (const std::uint32_t id : {1001u, 1002u}) {
    EXPECT_TRUE(op.box(id).open_ecm(ecm(1, 1, service_key, kT0 + 45 * 86400)).ok()) << "STB " << id;
    EXPECT_TRUE(op.box(id).open_ecm(ecm(1, 1, service_key)).ok()) << "STB " << id;
  }
}

TEST_F(GroupEmmTest, ABoxCutOffByARekeyingCannotReadTheGroupsNewerEmms) {
  // The operator replaces the group's key for every member but 1001 (cloned): 1002 gets version 2.
  Key256 key_v2 = random_key();
  op.join(1002, 4, 2, key_v2);
  EXPECT_EQ(op.box(1002).group()->key_version, 2u);
  // A renewal under the new key, even with 1001's bit set (as a clone's software would ignore it).
  const auto renewal = op.group(kGroup, 2, key_v2, items_of(member_grant(members({3, 4}), 1, 1, service_key)));
  EXPECT_EQ(*op.box(1001).apply_emm(renewal), EmmOutcome::not_addressed);
  EXPECT_TRUE(op.box(1001).entitlements().empty());
  EXPECT_EQ(*op.box(1002).apply_emm(renewal), EmmOutcome::applied);
  // An EMM under the old key no longer reaches 1002.
  EXPECT_EQ(*op.box(1002).apply_emm(op.group(kGroup, 1, group_key, items_of(member_grant(members({4}), 2, 1, service_key)))),
            EmmOutcome::not_addressed);
  // The old key given again (a newer EMM carrying an older version) is stale; the new one stays.
  auto older = op.box(1002).apply_emm(op.unique(1002, items_of(entitlement::EmmGroupKey{kGroup, 4, 1, group_key.clone()})));
  ASSERT_FALSE(older.ok());
  EXPECT_EQ(older.error().code, Errc::stale);
  EXPECT_EQ(op.reopen(1002).group()->key_version, 2u);
}

TEST_F(GroupEmmTest, ServiceKeyRotationKeepsTheCurrentAndTheNextVersion) {
  Key256 v1 = random_key();
  Key256 v2 = random_key();
  Key256 v3 = random_key();
  auto& se = op.box(1001);
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{1, 1, v1.clone(), kT0, kT0 + 86400}))), EmmOutcome::applied);
  EXPECT_EQ(se.open_ecm(ecm(1, 2, v2)).error().code, Errc::not_entitled);
  // Version 2 announced ahead of the rotation, by the group: both open while both are held.
  ASSERT_EQ(*se.apply_emm(op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 2, v2)))), EmmOutcome::applied);
  EXPECT_TRUE(se.open_ecm(ecm(1, 1, v1)).ok());
  EXPECT_TRUE(se.open_ecm(ecm(1, 2, v2)).ok());
  EXPECT_EQ(se.entitlements().at(0).key_versions, (std::vector<std::uint16_t>{1, 2}));
  auto& reopened = op.reopen(1001);  // both come back from the store
  EXPECT_TRUE(reopened.open_ecm(ecm(1, 1, v1)).ok());
  EXPECT_TRUE(reopened.open_ecm(ecm(1, 2, v2)).ok());
  // Version 3 announced (current and next in one member grant): version 1 is dropped.
  auto grant = member_grant(members({3}), 1, 2, v2);
  grant.services.push_back({1, 3, v3.clone()});
  ASSERT_EQ(*reopened.apply_emm(op.group(kGroup, 1, group_key, items_of(std::move(grant)))), EmmOutcome::applied);
  auto dropped = reopened.open_ecm(ecm(1, 1, v1));
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.error().code, Errc::not_entitled);
  EXPECT_NE(dropped.error().message.find("holds versions 2, 3"), std::string::npos) << dropped.error().message;
  EXPECT_TRUE(reopened.open_ecm(ecm(1, 2, v2)).ok());
  EXPECT_TRUE(reopened.open_ecm(ecm(1, 3, v3)).ok());
  EXPECT_EQ(op.reopen(1001).open_ecm(ecm(1, 1, v1)).error().code, Errc::not_entitled);
}

TEST_F(GroupEmmTest, GlobalEmmsCarryOffersMessagesAndTheNextGlobalKey) {
  Key256 g1 = random_key();
  Key256 g2 = random_key();
  Key256 g3 = random_key();
  auto& se = op.box(1001);
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGlobalKey{1, g1.clone()}))), EmmOutcome::applied);
  entitlement::EmmOffer offer;
  offer.event_id = 42;
  offer.service_id = 1;
  offer.start = kT0;
  offer.duration = 3600;
  offer.price_minor = 500;
  offer.currency = {'E', 'U', 'R'};
  offer.event_key = random_key();
  offer.title = "Final";
  ASSERT_EQ(*se.apply_emm(op.global(1, g1, items_of(std::move(offer), entitlement::EmmMessage{77, "Maintenance tonight"}))),
            EmmOutcome::applied);
  ASSERT_EQ(*se.apply_emm(op.global(1, g1, items_of(entitlement::EmmGlobalKey{2, g2.clone()}))), EmmOutcome::applied);
  EXPECT_EQ(se.global_key_versions(), (std::vector<std::uint32_t>{1, 2}));
  // The offer is there to buy (no credit line yet, so the refusal says that, not "not offered").
  auto buy = se.impulse_buy(42, kT0 + 10);
  ASSERT_FALSE(buy.ok());
  EXPECT_NE(buy.error().message.find("credit line"), std::string::npos) << buy.error().message;
  // Under the next key too; after a third, the first is no longer read.
  EXPECT_EQ(*se.apply_emm(op.global(2, g2, items_of(entitlement::EmmGlobalKey{3, g3.clone()}))), EmmOutcome::applied);
  EXPECT_EQ(se.global_key_versions(), (std::vector<std::uint32_t>{2, 3}));
  EXPECT_EQ(*se.apply_emm(op.global(1, g1, items_of(entitlement::EmmMessage{78, "old key"}))), EmmOutcome::not_addressed);
  // Messages: newest first, the last few kept, a message in a unique EMM skipped.
  for (std::uint64_t i = 0; i < SecureElement::kMessagesKept + 2; ++i) {
    ASSERT_EQ(*se.apply_emm(op.global(3, g3, items_of(entitlement::EmmMessage{100 + i, "note " + std::to_string(i)}))),
              EmmOutcome::applied);
  }
  EXPECT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmMessage{999, "unique"}))), EmmOutcome::nothing_for_this_stb);
  const auto messages = op.reopen(1001).messages();
  ASSERT_EQ(messages.size(), SecureElement::kMessagesKept);
  EXPECT_EQ(messages.front().message_id, 100 + SecureElement::kMessagesKept + 1);
  EXPECT_EQ(messages.front().text, "note " + std::to_string(SecureElement::kMessagesKept + 1));
  EXPECT_EQ(op.box(1001).global_key_versions(), (std::vector<std::uint32_t>{2, 3}));
}

TEST_F(GroupEmmTest, RowsEditedByTheBoxsOwnerDoNotVerifyAndAreNotUsed) {
  Key256 v1 = random_key();
  Key256 v2 = random_key();
  Key256 g1 = random_key();
  auto& se = op.box(1001);
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{1, 1, v1.clone(), kT0, kT0 + 86400},
                                                   entitlement::EmmGlobalKey{1, g1.clone()}))),
            EmmOutcome::applied);
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{1, 2, v2.clone(), kT0, kT0 + 86400}))), EmmOutcome::applied);
  ASSERT_EQ(se.rows_refused(), 0u);
  {
    // The owner's edits: another group key and position, another global key, version 1's window
    // row moved to the newer sequence (to keep it past a revoke).
    auto db = sql::Database::open(op.home(1001) + "/stb.db", false).value();
    db.exec("UPDATE group_key SET position = 4");
    db.exec("UPDATE global_keys SET global_key = zeroblob(32)");
    db.exec("UPDATE service_keys SET sequence = sequence + 1000");
  }
  auto& edited = op.reopen(1001);
  EXPECT_EQ(edited.rows_refused(), 3u);
  EXPECT_FALSE(edited.group().has_value());
  EXPECT_TRUE(edited.global_key_versions().empty());
  EXPECT_EQ(edited.open_ecm(ecm(1, 1, v1)).error().code, Errc::not_entitled);
  EXPECT_TRUE(edited.open_ecm(ecm(1, 2, v2)).ok());  // the entitlement's own row still verifies
  // No group EMM is read without a group key that verifies; the operator's word puts it back.
  const auto renewal = op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 3, 1, service_key)));
  EXPECT_EQ(*edited.apply_emm(renewal), EmmOutcome::not_addressed);
  op.join(1001, 3, 1, group_key);
  EXPECT_EQ(*op.box(1001).apply_emm(renewal), EmmOutcome::applied);
}

TEST_F(GroupEmmTest, ApplyingAnEmmUpdatesWhatItChangedWithoutRereadingTheStore) {
  auto& se = op.box(1001);
  // A row added behind the secure element's back is not picked up by applying an EMM (it used to
  // re-read the whole store after each): only what the EMM changed is.
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{1, 1, service_key.clone(), kT0, kT0 + 86400}))),
            EmmOutcome::applied);
  {
    auto db = sql::Database::open(op.home(1001) + "/stb.db", false).value();
    db.exec("UPDATE entitlements SET not_after = 0");  // an edit: refused at the next load
  }
  Key256 other = random_key();
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{2, 1, other.clone(), kT0, kT0 + 86400}))), EmmOutcome::applied);
  EXPECT_TRUE(se.open_ecm(ecm(1, 1, service_key)).ok());
  EXPECT_TRUE(se.open_ecm(ecm(2, 1, other)).ok());
  EXPECT_EQ(se.rows_refused(), 0u);
  // A ticket and its revocation in one EMM: held at once, revoked.
  const auto ticket = op.ticket_for(1001, 9);
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmTicket{ticket.encode(), random_key()},
                                                   entitlement::EmmTicketRevoke{ticket.ticket_id}))),
            EmmOutcome::applied);
  EXPECT_EQ(se.ticket_status(ticket.ticket_id), "revoked");
  EXPECT_EQ(op.reopen(1001).ticket_status(ticket.ticket_id), "revoked");
}

TEST_F(GroupEmmTest, AnEmmRefusedHalfwayLeavesWhatWasHeldInMemoryAndOnDisk) {
  auto& se = op.box(1001);
  Key256 v1 = random_key();
  Key256 v2 = random_key();
  ASSERT_EQ(*se.apply_emm(op.unique(1001, items_of(entitlement::EmmGrant{1, 1, v1.clone(), kT0, kT0 + 86400}))), EmmOutcome::applied);
  // A new key version, then a ticket bound to another STB: the ticket is refused after the grant
  // was written, and the whole EMM is undone (the grant included).
  const auto bad = op.unique(1001, items_of(entitlement::EmmGrant{1, 2, v2.clone(), kT0, kT0 + 2 * 86400},
                                            entitlement::EmmTicket{op.ticket_for(1002, 9).encode(), random_key()}));
  auto refused = se.apply_emm(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_EQ(se.entitlements().at(0).key_versions, (std::vector<std::uint16_t>{1}));
  EXPECT_EQ(se.open_ecm(ecm(1, 2, v2)).error().code, Errc::not_entitled);
  EXPECT_TRUE(se.open_ecm(ecm(1, 1, v1)).ok());
  EXPECT_EQ(se.apply_emm(bad).error().code, Errc::not_entitled);  // not recorded: refused again, not a duplicate
  auto& reopened = op.reopen(1001);
  EXPECT_EQ(reopened.entitlements().at(0).key_versions, (std::vector<std::uint16_t>{1}));
  EXPECT_EQ(reopened.entitlements().at(0).not_after, kT0 + 86400);
}

TEST_F(GroupEmmTest, TheDescramblerHandsGroupAndGlobalEmmsFromTheStreamToTheSecureElement) {
  constexpr std::uint16_t kEmmPid = 0x1FF0;
  Key256 g1 = random_key();
  auto& se = op.box(1001);
  // The global key by a unique EMM, then a group grant and a global message, all on the EMM PID
  // the CAT announces.
  std::vector<std::vector<std::uint8_t>> sections;
  sections.push_back(op.unique(1001, items_of(entitlement::EmmGlobalKey{1, g1.clone()})));
  sections.push_back(op.group(kGroup, 1, group_key, items_of(member_grant(members({3}), 1, 1, service_key))));
  sections.push_back(op.group(kGroup + 1, 1, group_key, items_of(member_grant(members({3}), 2, 1, service_key))));
  sections.push_back(op.global(1, g1, items_of(entitlement::EmmMessage{5, "from the stream"})));
  streams::Cat cat;
  streams::append_ca_descriptor(cat.descriptors, {kCa, kEmmPid, {}});
  std::vector<streams::TsPacket> in;
  streams::SectionPacketizer cat_packets(streams::kCatPid);
  cat_packets.packetize(cat.serialize(), in);
  streams::SectionPacketizer emm_packets(kEmmPid);
  for (const auto& s : sections) emm_packets.packetize(s, in);
  for (const auto& s : sections) emm_packets.packetize(s, in);  // the carousel repeats them
  testing::SyntheticMuxOptions options;
  options.seconds = 1;
  for (const auto& p : testing::make_synthetic_mux(options)) in.push_back(p);

  Descrambler d(&se, {});
  std::vector<streams::TsPacket> out;
  d.process(in, out);
  d.finish(out);
  const auto stats = d.stats();
  EXPECT_EQ(stats.emm_taken, 3u);
  EXPECT_EQ(stats.emm_duplicate, 3u);
  EXPECT_EQ(stats.emm_other_stb, 2u);  // the other group's, twice
  EXPECT_EQ(stats.emm_refused, 0u);
  EXPECT_TRUE(se.open_ecm(ecm(1, 1, service_key)).ok());
  ASSERT_EQ(se.messages().size(), 1u);
  EXPECT_EQ(se.messages().front().text, "from the stream");
}

}  // namespace
}  // namespace usher::stb
