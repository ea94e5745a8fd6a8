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

}  // namespace
}  // namespace usher::entitlement
