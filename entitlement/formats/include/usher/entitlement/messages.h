// ECM and EMM: the key messages carried in the broadcast, as private sections (byte layout in
// docs/messages.md). Both are AES-256-GCM sealed, versioned, and bound to their section header.
//
// ECM (table_id 0x80 for an even crypto period, 0x81 for an odd one): the service's current and next
// control words, each with its access criteria and sealed under the key of its own period's audience
// (the service key, or the key of the PPV event on air in that period): the ECM before an event does
// not hand the event's first control word to the service's subscribers, nor the event's last ECM the
// control word after it to the event's ticket holders only.
// EMM, three addresses (docs/messages.md, "Addressing"):
//   - unique (table_id 0x82): one STB, sealed under a key derived from X25519 between the operator
//     and that STB: tickets, credit, and the group and global keys the box needs for the others;
//   - group (0x83): the up to 256 STBs of one group, sealed under the group's key: grants and
//     revocations with a member bitmap, so a renewal of a million boxes is one EMM per 256;
//   - global (0x84): every STB of the operator, sealed under the global key: impulse offers,
//     free-to-view service keys, operator messages, the next global key.
// Every EMM's sequence number comes from one operator-wide counter: increasing per address, and
// comparable across addresses, so an older grant never overrides a newer revocation whichever
// address carried each.
#pragma once

#include <cstdint>
#include <span>
#include <array>
#include <string>
#include <variant>
#include <vector>

#include "usher/core/control_word.h"
#include "usher/core/crypto.h"
#include "usher/core/result.h"

namespace usher::entitlement {

inline constexpr std::uint8_t kTableEcmEven = 0x80;
inline constexpr std::uint8_t kTableEcmOdd = 0x81;
inline constexpr std::uint8_t kTableEmmUnique = 0x82;
inline constexpr std::uint8_t kTableEmmGroup = 0x83;
inline constexpr std::uint8_t kTableEmmGlobal = 0x84;
inline constexpr std::size_t kGroupSize = 256;  // STBs per group: one bit each in a member bitmap
inline constexpr std::uint8_t kEcmVersion = 2;  // 2: one sealed block per control word
inline constexpr std::uint8_t kEmmVersion = 1;
// Not registered with DVB: 0x4AFF sits in a range the ETSI TS 101 162 allocation leaves unassigned to
// public systems. Operators set their own with `usher entitlement init --ca-system-id`.
inline constexpr std::uint16_t kDefaultCaSystemId = 0x4AFF;

struct AccessCriteria {
  std::uint32_t tier_mask = 0;   // informational in v1; entitlement is per service
  std::uint8_t min_age = 0;      // parental rating (0 = none)
  std::uint16_t region = 0;      // 0 = everywhere
};

// One crypto period's control word and who may use it.
struct EcmPeriod {
  std::uint32_t event_id = 0;       // 0: the service's subscribers (service key); else that PPV event's ticket holders
  std::uint32_t crypto_period = 0;  // its parity is the control word's parity
  std::uint64_t time_unix = 0;      // authenticated broadcast time, seconds: of the ECM for the current
                                    // period, of the period's start for the next one
  AccessCriteria access;
  ControlWord cw;
};

// The two sealed blocks of an ECM.
enum class EcmPart : std::uint8_t { current = 0, next = 1 };

struct EcmContent {
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;  // of the service key (used by the blocks whose event_id is 0)
  EcmPeriod current;              // crypto period k (its parity selects the table_id)
  EcmPeriod next;                 // crypto period k + 1
};

// The clear part of an ECM, enough to pick the keys.
struct EcmHeader {
  std::uint8_t table_id = 0;
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;
  std::uint32_t event_id = 0;       // audience of the current control word (0: service key, else that event's key)
  std::uint32_t next_event_id = 0;  // audience of the next control word
  [[nodiscard]] std::uint32_t audience(EcmPart part) const { return part == EcmPart::current ? event_id : next_event_id; }
};

// Returns the complete section (table_id .. end). Each block is sealed under the key of its period's
// audience: the service key when its event_id is 0, otherwise that event's key.
std::vector<std::uint8_t> encode_ecm(const EcmContent& ecm, const Key256& current_key, const Key256& next_key);
Result<EcmHeader> peek_ecm(std::span<const std::uint8_t> section);
// Opens one block. Errc::malformed or Errc::auth_failed (tampered, forged, spliced or wrong key).
Result<EcmPeriod> decode_ecm_part(std::span<const std::uint8_t> section, EcmPart part, const Key256& key);
// Opens both blocks (for a holder of both keys) and checks that the next period follows the current.
Result<EcmContent> decode_ecm(std::span<const std::uint8_t> section, const Key256& current_key, const Key256& next_key);

struct EmmGrant {
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;
  Key256 service_key;
  std::uint64_t not_before = 0;  // unix seconds, compared with ECM time
  std::uint64_t not_after = 0;
};
struct EmmRevoke {
  std::uint16_t service_id = 0;
};
// A PPV ticket (signed by the engine, see assets.h) and the key of its event's ECMs.
struct EmmTicket {
  std::vector<std::uint8_t> ticket;
  Key256 event_key;
};
// Withdraws a ticket (refund, fraud): the STB stops honouring it, even if it arrives later.
struct EmmTicketRevoke {
  std::uint64_t ticket_id = 0;
};
// F4: how much the STB may buy on impulse before its history is settled through the handset.
struct EmmCredit {
  std::int64_t limit_minor = 0;
  std::array<char, 3> currency{'X', 'X', 'X'};
};
// F4: a PPV event the STB may buy on impulse, with its key (used only once a purchase is recorded).
struct EmmOffer {
  std::uint32_t event_id = 0;
  std::uint16_t service_id = 0;
  std::uint64_t start = 0;
  std::uint32_t duration = 0;
  std::int64_t price_minor = 0;
  std::array<char, 3> currency{'X', 'X', 'X'};
  std::uint8_t min_age = 0;
  Key256 event_key;
  std::string title;
};
// F4 collection deadline, as boxes with a modem callback have: impulse purchases on the credit line
// must be relayed within this many seconds of being made, or the STB takes no more until they are
// (0: no deadline).
struct EmmCollection {
  std::uint64_t within_seconds = 0;
};

// Which members of a group an item is for: bit p (byte p / 8, most significant bit first) is the
// STB at position p.
struct MemberBitmap {
  std::array<std::uint8_t, kGroupSize / 8> bits{};
  [[nodiscard]] bool has(std::uint8_t position) const { return (bits[position / 8] >> (7 - position % 8)) & 1; }
  void set(std::uint8_t position) { bits[position / 8] |= static_cast<std::uint8_t>(0x80 >> (position % 8)); }
  void clear(std::uint8_t position) { bits[position / 8] &= static_cast<std::uint8_t>(~(0x80 >> (position % 8))); }
  [[nodiscard]] std::size_t count() const;
  bool operator==(const MemberBitmap&) const = default;
};

// Unique only: the STB's group, its position in it and the group's key (at registration, and again
// when the group is re-keyed to cut a box off).
struct EmmGroupKey {
  std::uint32_t group_id = 0;
  std::uint8_t position = 0;
  std::uint32_t key_version = 0;
  Key256 key;
};
// The operator's global key (unique: at registration; global: the next key, under the current one).
struct EmmGlobalKey {
  std::uint32_t key_version = 0;
  Key256 key;
};
// One service's key of one version (a member grant carries one per service; during a rotation the
// next version is announced before the headend uses it).
struct ServiceKeyItem {
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;
  Key256 key;
};
// Group only: grants (or renews) the services to the members whose bit is set, for the window.
// A member whose bit is clear takes nothing from it and loses nothing by it.
struct EmmMemberGrant {
  MemberBitmap members;
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  std::vector<ServiceKeyItem> services;
};
// Group only: withdraws the services from the members whose bit is set.
struct EmmMemberRevoke {
  MemberBitmap members;
  std::vector<std::uint16_t> services;
};
// Global only: a text from the operator for every box (shown on screen by the STB's owner).
struct EmmMessage {
  std::uint64_t message_id = 0;
  std::string text;  // UTF-8, at most 200 bytes
};

using EmmItem = std::variant<EmmGrant, EmmRevoke, EmmTicket, EmmTicketRevoke, EmmCredit, EmmOffer, EmmCollection, EmmGroupKey,
                             EmmGlobalKey, EmmMemberGrant, EmmMemberRevoke, EmmMessage>;

struct EmmContent {
  std::uint32_t stb_id = 0;
  std::uint64_t sequence = 0;  // per STB, strictly increasing as issued
  std::uint64_t issued_unix = 0;
  std::vector<EmmItem> items;
};

struct EmmHeader {
  std::uint32_t stb_id = 0;
  std::uint64_t sequence = 0;
};

// Who an EMM is for, as its clear header says (a receiver filters on it without decrypting).
enum class EmmAddressType : std::uint8_t { unique, group, global };
struct EmmAddress {
  EmmAddressType type = EmmAddressType::unique;
  std::uint32_t id = 0;           // unique: the STB; group: the group; global: 0
  std::uint32_t key_version = 0;  // group or global: the version of the key it is sealed under
  bool operator==(const EmmAddress&) const = default;
};
struct AnyEmmHeader {
  EmmAddress address;
  std::uint64_t sequence = 0;
};
// Reads the clear header of an EMM of any address (0x82, 0x83, 0x84).
Result<AnyEmmHeader> peek_any_emm(std::span<const std::uint8_t> section);

// A group or global EMM.
struct SharedEmmContent {
  EmmAddress address;  // type group or global
  std::uint64_t sequence = 0;
  std::uint64_t issued_unix = 0;
  std::vector<EmmItem> items;
};
// Sealed under the group's key (group) or the global key (global) of address.key_version. Throws
// std::invalid_argument for a unique address; std::length_error when the items do not fit.
std::vector<std::uint8_t> encode_shared_emm(const SharedEmmContent& emm, const Key256& key);
// Errc::malformed (not a group or global EMM, truncated, bad item) or Errc::auth_failed.
Result<SharedEmmContent> decode_shared_emm(std::span<const std::uint8_t> section, const Key256& key);
// What fits in one section: the plaintext an EMM of these items takes (issue time and item count
// included). An EMM of any address holds up to kMaxEmmPlaintext; encode_* throw std::length_error
// above it, so a sender splits its items with this.
std::size_t emm_plaintext_size(const std::vector<EmmItem>& items);
inline constexpr std::size_t kMaxEmmPlaintext = 1021 - (1 + 4 + 4 + 8) - 12 - 16;

// The key only the operator and one STB can compute (static-static X25519, then HKDF-SHA256).
Result<Key256> derive_emm_key(const Secret<32>& own_private, const crypto::PublicKey& peer_public,
                              std::uint16_t ca_system_id, std::uint32_t stb_id);
// The same with the own key loaded once, for deriving the keys of many boxes (bulk grants).
Result<Key256> derive_emm_key(const crypto::X25519Agreement& own, const crypto::PublicKey& peer_public, std::uint16_t ca_system_id,
                              std::uint32_t stb_id);

std::vector<std::uint8_t> encode_emm(const EmmContent& emm, const Key256& emm_key);
Result<EmmHeader> peek_emm(std::span<const std::uint8_t> section);
Result<EmmContent> decode_emm(std::span<const std::uint8_t> section, const Key256& emm_key);

}  // namespace usher::entitlement
