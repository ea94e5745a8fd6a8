#include "usher/entitlement/messages.h"

#include <gtest/gtest.h>

#include "usher/streams/section.h"

namespace usher::entitlement {
namespace {

Key256 random_key() {
  Key256 k;
  crypto::random_bytes(k.mutable_bytes());
  return k;
}

// The ECM of the last crypto period before PPV event 99: the current control word for the
// service's subscribers, the next (the event's first) for the event's ticket holders.
EcmContent sample_ecm(std::uint32_t period) {
  EcmContent e;
  e.service_id = 7;
  e.key_version = 2;
  e.current.event_id = 0;
  e.current.crypto_period = period;
  e.current.time_unix = 1'800'000'000;
  e.current.access = {0x5, 0, 3};
  e.current.cw = ControlWord::random();
  e.next.event_id = 99;
  e.next.crypto_period = period + 1;
  e.next.time_unix = 1'800'000'010;
  e.next.access = {0x5, 12, 3};
  e.next.cw = ControlWord::random();
  return e;
}

TEST(Ecm, RoundTripAndTableIdFollowsParity) {
  const auto service_key = random_key();
  const auto event_key = random_key();
  for (std::uint32_t period : {10u, 11u}) {
    const auto ecm = sample_ecm(period);
    const auto section = encode_ecm(ecm, service_key, event_key);
    EXPECT_EQ(section[0], period % 2 == 0 ? kTableEcmEven : kTableEcmOdd);
    EXPECT_EQ(section.size(), 126u);  // one TS packet
    auto header = peek_ecm(section);
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header->service_id, 7);
    EXPECT_EQ(header->key_version, 2);
    EXPECT_EQ(header->event_id, 0u);
    EXPECT_EQ(header->next_event_id, 99u);
    auto back = decode_ecm(section, service_key, event_key);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->current.crypto_period, period);
    EXPECT_EQ(back->current.event_id, 0u);
    EXPECT_EQ(back->current.time_unix, 1'800'000'000u);
    EXPECT_EQ(back->next.crypto_period, period + 1);
    EXPECT_EQ(back->next.event_id, 99u);
    EXPECT_EQ(back->next.time_unix, 1'800'000'010u);
    EXPECT_EQ(back->next.access.min_age, 12);
    EXPECT_TRUE(back->current.cw == ecm.current.cw);
    EXPECT_TRUE(back->next.cw == ecm.next.cw);
  }
}

// The leak this layout closes: whoever holds the service key learns the current control word and
// nothing of the event's; an event ticket opens the event's and nothing else.
TEST(Ecm, EachControlWordOpensOnlyUnderItsOwnPeriodsKey) {
  const auto service_key = random_key();
  const auto event_key = random_key();
  const auto section = encode_ecm(sample_ecm(4), service_key, event_key);
  EXPECT_TRUE(decode_ecm_part(section, EcmPart::current, service_key).ok());
  EXPECT_EQ(decode_ecm_part(section, EcmPart::next, service_key).error().code, Errc::auth_failed);
  EXPECT_TRUE(decode_ecm_part(section, EcmPart::next, event_key).ok());
  EXPECT_EQ(decode_ecm_part(section, EcmPart::current, event_key).error().code, Errc::auth_failed);
  EXPECT_FALSE(decode_ecm(section, service_key, service_key).ok());
}

TEST(Ecm, EveryTamperedByteIsRefused) {
  const auto key = random_key();
  const auto section = encode_ecm(sample_ecm(4), key, key);
  for (std::size_t i = 0; i < section.size(); ++i) {
    auto t = section;
    t[i] ^= 0x01;
    EXPECT_FALSE(decode_ecm(t, key, key).ok()) << "byte " << i;
    // Whichever block a byte belongs to, neither opens once the clear header is touched; a byte of
    // one block leaves the other intact.
    const bool current_ok = decode_ecm_part(t, EcmPart::current, key).ok();
    const bool next_ok = decode_ecm_part(t, EcmPart::next, key).ok();
    EXPECT_FALSE(current_ok && next_ok) << "byte " << i;
    if (i < 40) {
      EXPECT_FALSE(current_ok || next_ok) << "byte " << i;
    }
  }
}

TEST(Ecm, BlocksCannotBeSwappedOrSplicedFromAnotherEcm) {
  const auto key = random_key();
  const auto a = encode_ecm(sample_ecm(4), key, key);
  const auto b = encode_ecm(sample_ecm(4), key, key);
  // Same key for both blocks, so only the associated data tells them apart.
  auto swapped = a;
  std::copy(a.begin() + 40, a.begin() + 83, swapped.begin() + 83);
  std::copy(a.begin() + 83, a.end(), swapped.begin() + 40);
  std::copy(a.begin() + 16, a.begin() + 28, swapped.begin() + 28);  // nonces swapped too
  std::copy(a.begin() + 28, a.begin() + 40, swapped.begin() + 16);
  EXPECT_EQ(decode_ecm_part(swapped, EcmPart::current, key).error().code, Errc::auth_failed);
  EXPECT_EQ(decode_ecm_part(swapped, EcmPart::next, key).error().code, Errc::auth_failed);
  // B's next block with its nonce, grafted onto A: the nonces are in the other block's associated data.
  auto spliced = a;
  std::copy(b.begin() + 28, b.begin() + 40, spliced.begin() + 28);
  std::copy(b.begin() + 83, b.end(), spliced.begin() + 83);
  EXPECT_EQ(decode_ecm_part(spliced, EcmPart::current, key).error().code, Errc::auth_failed);
  EXPECT_EQ(decode_ecm_part(spliced, EcmPart::next, key).error().code, Errc::auth_failed);
  // A relabelled audience (the event's block claimed for the service) breaks both tags.
  auto relabelled = a;
  relabelled[15] = 0;  // next event id 99 -> 0
  EXPECT_EQ(decode_ecm_part(relabelled, EcmPart::next, key).error().code, Errc::auth_failed);
}

TEST(Ecm, WrongKeyTruncationVersionLengthAndParityAreRefused) {
  const auto key = random_key();
  const auto section = encode_ecm(sample_ecm(4), key, key);
  EXPECT_EQ(decode_ecm(section, random_key(), key).error().code, Errc::auth_failed);
  EXPECT_EQ(decode_ecm(section, key, random_key()).error().code, Errc::auth_failed);
  for (std::size_t n = 0; n < section.size(); ++n) {
    EXPECT_FALSE(decode_ecm(std::span(section).first(n), key, key).ok()) << n;
    EXPECT_FALSE(peek_ecm(std::span(section).first(n)).ok()) << n;
  }
  auto v = section;
  v[3] = 1;  // the version before control words were sealed apart
  EXPECT_EQ(peek_ecm(v).error().code, Errc::malformed);
  EXPECT_EQ(decode_ecm(v, key, key).error().code, Errc::malformed);
  auto longer = std::vector<std::uint8_t>(section.begin() + 3, section.end());
  longer.push_back(0);
  EXPECT_EQ(peek_ecm(streams::build_short_section(section[0], longer)).error().code, Errc::malformed);
  auto parity = section;
  parity[0] = kTableEcmOdd;  // an even-period ECM relabelled: AAD covers the table_id
  EXPECT_FALSE(decode_ecm_part(parity, EcmPart::current, key).ok());
  EXPECT_FALSE(decode_ecm_part(parity, EcmPart::next, key).ok());
  EXPECT_EQ(peek_ecm(std::vector<std::uint8_t>{0x82, 0x70, 0x00}).error().code, Errc::malformed);
  // A next period that does not follow the current one (sealed so by a faulty headend).
  auto gap = sample_ecm(4);
  gap.next.crypto_period = 7;
  EXPECT_EQ(decode_ecm(encode_ecm(gap, key, key), key, key).error().code, Errc::malformed);
  auto same_parity = sample_ecm(4);
  same_parity.next.crypto_period = 6;
  EXPECT_EQ(decode_ecm_part(encode_ecm(same_parity, key, key), EcmPart::next, key).error().code, Errc::malformed);
}

TEST(Emm, KeyAgreementIsSymmetricAndBoundToStb) {
  auto op = crypto::X25519KeyPair::generate();
  auto stb = crypto::X25519KeyPair::generate();
  auto k1 = derive_emm_key(op.private_key, stb.public_key, 0x4AFF, 1001);
  auto k2 = derive_emm_key(stb.private_key, op.public_key, 0x4AFF, 1001);
  auto k3 = derive_emm_key(stb.private_key, op.public_key, 0x4AFF, 1002);
  ASSERT_TRUE(k1.ok() && k2.ok() && k3.ok());
  EXPECT_TRUE(*k1 == *k2);
  EXPECT_FALSE(*k1 == *k3);
}

TEST(Emm, RoundTripGrantAndRevoke) {
  const auto key = random_key();
  EmmContent emm;
  emm.stb_id = 1001;
  emm.sequence = 42;
  emm.issued_unix = 1'800'000'000;
  const auto service_key = random_key();
  emm.items.emplace_back(EmmGrant{3, 1, service_key.clone(), 100, 200});
  emm.items.emplace_back(EmmRevoke{4});
  const auto section = encode_emm(emm, key);
  auto header = peek_emm(section);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->stb_id, 1001u);
  EXPECT_EQ(header->sequence, 42u);
  auto back = decode_emm(section, key);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->items.size(), 2u);
  const auto& g = std::get<EmmGrant>(back->items[0]);
  EXPECT_EQ(g.service_id, 3);
  EXPECT_TRUE(g.service_key == service_key);
  EXPECT_EQ(g.not_after, 200u);
  EXPECT_EQ(std::get<EmmRevoke>(back->items[1]).service_id, 4);
}

TEST(Emm, RoundTripCollectionDeadline) {
  const auto key = random_key();
  EmmContent emm{1001, 7, 1'800'000'000, {}};
  emm.items.emplace_back(EmmCredit{2000, {'E', 'U', 'R'}});
  emm.items.emplace_back(EmmCollection{7 * 86400});
  emm.items.emplace_back(EmmCollection{0});
  auto back = decode_emm(encode_emm(emm, key), key);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->items.size(), 3u);
  EXPECT_EQ(std::get<EmmCollection>(back->items[1]).within_seconds, 7u * 86400);
  EXPECT_EQ(std::get<EmmCollection>(back->items[2]).within_seconds, 0u);
}

TEST(Emm, TamperWrongKeyAndRelabelledAddressAreRefused) {
  const auto key = random_key();
  EmmContent emm;
  emm.stb_id = 5;
  emm.sequence = 1;
  emm.items.emplace_back(EmmRevoke{1});
  const auto section = encode_emm(emm, key);
  for (std::size_t i = 0; i < section.size(); ++i) {
    auto t = section;
    t[i] ^= 0x40;
    EXPECT_FALSE(decode_emm(t, key).ok()) << i;
  }
  EXPECT_EQ(decode_emm(section, random_key()).error().code, Errc::auth_failed);
  // Changing the sequence number in the clear header (a replay trick) breaks the tag.
  auto seq = section;
  seq[3 + 1 + 4 + 7] = 9;
  EXPECT_EQ(decode_emm(seq, key).error().code, Errc::auth_failed);
}


SharedEmmContent sample_group_emm() {
  SharedEmmContent emm;
  emm.address = {EmmAddressType::group, 3907, 2};
  emm.sequence = 1'000'001;
  emm.issued_unix = 1'800'000'000;
  EmmMemberGrant grant;
  grant.members.set(0);
  grant.members.set(9);
  grant.members.set(255);
  grant.not_before = 100;
  grant.not_after = 200;
  grant.services.push_back({1, 4, random_key()});
  grant.services.push_back({2, 7, random_key()});
  emm.items.emplace_back(std::move(grant));
  EmmMemberRevoke revoke;
  revoke.members.set(17);
  revoke.services = {1, 2};
  emm.items.emplace_back(std::move(revoke));
  return emm;
}

TEST(MemberBitmap, PositionZeroIsTheFirstByteMostSignificantBit) {
  MemberBitmap m;
  m.set(0);
  m.set(9);
  m.set(255);
  EXPECT_EQ(m.bits[0], 0x80);
  EXPECT_EQ(m.bits[1], 0x40);
  EXPECT_EQ(m.bits[31], 0x01);
  EXPECT_TRUE(m.has(9));
  EXPECT_FALSE(m.has(8));
  EXPECT_EQ(m.count(), 3u);
  m.clear(9);
  EXPECT_FALSE(m.has(9));
  EXPECT_EQ(m.count(), 2u);
}

TEST(GroupEmm, RoundTripWithTheHeaderAReceiverFiltersOn) {
  const auto key = random_key();
  const auto emm = sample_group_emm();
  const auto section = encode_shared_emm(emm, key);
  EXPECT_EQ(section[0], kTableEmmGroup);
  // Clear header, byte by byte (docs/messages.md): version 1, group 3907, key version 2, sequence.
  const std::vector<std::uint8_t> header(section.begin() + 3, section.begin() + 3 + 17);
  EXPECT_EQ(header, (std::vector<std::uint8_t>{1, 0, 0, 0x0F, 0x43, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0x0F, 0x42, 0x41}));
  auto peeked = peek_any_emm(section);
  ASSERT_TRUE(peeked.ok()) << peeked.error().message;
  EXPECT_EQ(peeked->address, (EmmAddress{EmmAddressType::group, 3907, 2}));
  EXPECT_EQ(peeked->sequence, 1'000'001u);
  auto back = decode_shared_emm(section, key);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->address, emm.address);
  EXPECT_EQ(back->issued_unix, 1'800'000'000u);
  ASSERT_EQ(back->items.size(), 2u);
  const auto& g = std::get<EmmMemberGrant>(back->items[0]);
  const auto& sent = std::get<EmmMemberGrant>(emm.items[0]);
  EXPECT_EQ(g.members, sent.members);
  EXPECT_EQ(g.not_before, 100u);
  EXPECT_EQ(g.not_after, 200u);
  ASSERT_EQ(g.services.size(), 2u);
  EXPECT_EQ(g.services[1].service_id, 2);
  EXPECT_EQ(g.services[1].key_version, 7);
  EXPECT_TRUE(constant_time_equal(g.services[1].key.bytes(), sent.services[1].key.bytes()));
  const auto& v = std::get<EmmMemberRevoke>(back->items[1]);
  EXPECT_TRUE(v.members.has(17));
  EXPECT_EQ(v.services, (std::vector<std::uint16_t>{1, 2}));
  // A unique EMM's reader refuses it, and the shared reader refuses a unique EMM.
  EXPECT_FALSE(peek_emm(section).ok());
  EmmContent unique{5, 1, 0, {}};
  unique.items.emplace_back(EmmRevoke{1});
  EXPECT_EQ(decode_shared_emm(encode_emm(unique, key), key).error().code, Errc::malformed);
}

TEST(GroupEmm, EveryTamperedByteWrongKeyAndRelabelledAddressAreRefused) {
  const auto key = random_key();
  const auto section = encode_shared_emm(sample_group_emm(), key);
  for (std::size_t i = 0; i < section.size(); ++i) {
    auto t = section;
    t[i] ^= 0x40;
    EXPECT_FALSE(decode_shared_emm(t, key).ok()) << i;
  }
  EXPECT_EQ(decode_shared_emm(section, random_key()).error().code, Errc::auth_failed);
  // Another group, key version or sequence in the clear header breaks the tag: a group's EMM cannot
  // be passed off as another group's, or replayed as newer.
  for (const std::size_t at : {3u + 1 + 3, 3u + 5 + 3, 3u + 9 + 7}) {
    auto t = section;
    t[at] ^= 1;
    EXPECT_EQ(decode_shared_emm(t, key).error().code, Errc::auth_failed) << at;
  }
  // Relabelled as a global EMM (table_id 0x84): the header names a group, refused before any key is tried.
  auto relabelled = section;
  relabelled[0] = kTableEmmGlobal;
  EXPECT_EQ(decode_shared_emm(relabelled, key).error().code, Errc::malformed);
}

TEST(GlobalEmm, RoundTripOffersMessagesAndTheNextGlobalKey) {
  const auto key = random_key();
  SharedEmmContent emm;
  emm.address = {EmmAddressType::global, 0, 5};
  emm.sequence = 77;
  EmmOffer offer;
  offer.event_id = 9;
  offer.service_id = 3;
  offer.price_minor = 499;
  offer.currency = {'E', 'U', 'R'};
  offer.event_key = random_key();
  offer.title = "Final";
  emm.items.emplace_back(std::move(offer));
  emm.items.emplace_back(EmmMessage{12, "Maintenance tonight at 03:00"});
  const auto next = random_key();
  emm.items.emplace_back(EmmGlobalKey{6, next.clone()});
  const auto section = encode_shared_emm(emm, key);
  EXPECT_EQ(section[0], kTableEmmGlobal);
  auto back = decode_shared_emm(section, key);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->address, (EmmAddress{EmmAddressType::global, 0, 5}));
  ASSERT_EQ(back->items.size(), 3u);
  EXPECT_EQ(std::get<EmmOffer>(back->items[0]).title, "Final");
  EXPECT_EQ(std::get<EmmMessage>(back->items[1]).text, "Maintenance tonight at 03:00");
  EXPECT_EQ(std::get<EmmMessage>(back->items[1]).message_id, 12u);
  EXPECT_EQ(std::get<EmmGlobalKey>(back->items[2]).key_version, 6u);
  EXPECT_TRUE(constant_time_equal(std::get<EmmGlobalKey>(back->items[2]).key.bytes(), next.bytes()));
  // A global header naming a group is malformed.
  auto named = section;
  named[3 + 4] = 1;
  EXPECT_EQ(peek_any_emm(named).error().code, Errc::malformed);
  EXPECT_THROW(encode_shared_emm(SharedEmmContent{{EmmAddressType::global, 4, 1}, 1, 0, {}}, key), std::invalid_argument);
  EXPECT_THROW(encode_shared_emm(SharedEmmContent{{EmmAddressType::unique, 4, 0}, 1, 0, {}}, key), std::invalid_argument);
}

TEST(Emm, GroupAndGlobalKeysTravelInAUniqueEmm) {
  const auto key = random_key();
  EmmContent emm{1001, 3, 0, {}};
  const auto group_key = random_key();
  emm.items.emplace_back(EmmGroupKey{42, 200, 3, group_key.clone()});
  emm.items.emplace_back(EmmGlobalKey{1, random_key()});
  auto back = decode_emm(encode_emm(emm, key), key);
  ASSERT_TRUE(back.ok()) << back.error().message;
  const auto& g = std::get<EmmGroupKey>(back->items[0]);
  EXPECT_EQ(g.group_id, 42u);
  EXPECT_EQ(g.position, 200);
  EXPECT_EQ(g.key_version, 3u);
  EXPECT_TRUE(constant_time_equal(g.key.bytes(), group_key.bytes()));
  auto any = peek_any_emm(encode_emm(emm, key));
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->address, (EmmAddress{EmmAddressType::unique, 1001, 0}));
}

TEST(Emm, WhatFitsInOneSectionIsMeasuredBeforeSealing) {
  // Member grants of 25 services fit (about 900 bytes); 26 do not, and encoding says so.
  const auto key = random_key();
  auto grant_of = [](std::uint16_t services) {
    EmmMemberGrant g;
    for (std::uint16_t s = 1; s <= services; ++s) g.services.push_back({s, 1, Key256()});
    std::vector<EmmItem> items;
    items.emplace_back(std::move(g));
    return items;
  };
  EXPECT_LE(emm_plaintext_size(grant_of(25)), kMaxEmmPlaintext);
  EXPECT_GT(emm_plaintext_size(grant_of(26)), kMaxEmmPlaintext);
  EXPECT_NO_THROW(encode_shared_emm(SharedEmmContent{{EmmAddressType::group, 1, 1}, 1, 0, grant_of(25)}, key));
  EXPECT_THROW(encode_shared_emm(SharedEmmContent{{EmmAddressType::group, 1, 1}, 1, 0, grant_of(26)}, key), std::length_error);
}

}  // namespace
}  // namespace usher::entitlement
