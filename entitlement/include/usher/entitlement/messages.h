// ECM and EMM: the key messages carried in the broadcast, as private sections (byte layout in
// docs/messages.md). Both are AES-256-GCM sealed, versioned, and bound to their section header.
//
// ECM (table_id 0x80 for an even crypto period, 0x81 for an odd one): the service's current and next
// control words and its access criteria, sealed under the service key.
// EMM (table_id 0x82, unique address): entitlements and service keys for one STB, sealed under a key
// derived from X25519 between the operator and that STB, with a per-STB sequence number.
#pragma once

#include <cstdint>
#include <span>
#include <array>
#include <string>
#include <variant>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/csa.h"
#include "usher/core/result.h"

namespace usher::entitlement {

inline constexpr std::uint8_t kTableEcmEven = 0x80;
inline constexpr std::uint8_t kTableEcmOdd = 0x81;
inline constexpr std::uint8_t kTableEmmUnique = 0x82;
inline constexpr std::uint8_t kMessageVersion = 1;
// Not registered with DVB: 0x4AFF sits in a range the ETSI TS 101 162 allocation leaves unassigned to
// public systems. Operators set their own with `usher entitlement init --ca-system-id`.
inline constexpr std::uint16_t kDefaultCaSystemId = 0x4AFF;

struct AccessCriteria {
  std::uint32_t tier_mask = 0;   // informational in v1; entitlement is per service
  std::uint8_t min_age = 0;      // parental rating (0 = none)
  std::uint16_t region = 0;      // 0 = everywhere
};

struct EcmContent {
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;
  std::uint32_t event_id = 0;          // 0 = not a PPV event
  std::uint32_t crypto_period = 0;     // parity selects the table_id
  std::uint64_t time_unix = 0;         // authenticated broadcast time, seconds
  AccessCriteria access;
  ControlWord even;
  ControlWord odd;
};

// The clear part of an ECM, enough to pick the key.
struct EcmHeader {
  std::uint8_t table_id = 0;
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;
  std::uint32_t event_id = 0;  // non-zero: sealed under that PPV event's key, not the service key
};

// Returns the complete section (table_id .. end). `key` is the service key, or the event key when
// ecm.event_id is not 0.
std::vector<std::uint8_t> encode_ecm(const EcmContent& ecm, const Key256& key);
Result<EcmHeader> peek_ecm(std::span<const std::uint8_t> section);
// Errc::malformed or Errc::auth_failed (tampered, forged or wrong key).
Result<EcmContent> decode_ecm(std::span<const std::uint8_t> section, const Key256& service_key);

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
using EmmItem = std::variant<EmmGrant, EmmRevoke, EmmTicket, EmmTicketRevoke, EmmCredit, EmmOffer, EmmCollection>;

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

// The key only the operator and one STB can compute (static-static X25519, then HKDF-SHA256).
Result<Key256> derive_emm_key(const Secret<32>& own_private, const crypto::PublicKey& peer_public,
                              std::uint16_t ca_system_id, std::uint32_t stb_id);

std::vector<std::uint8_t> encode_emm(const EmmContent& emm, const Key256& emm_key);
Result<EmmHeader> peek_emm(std::span<const std::uint8_t> section);
Result<EmmContent> decode_emm(std::span<const std::uint8_t> section, const Key256& emm_key);

}  // namespace usher::entitlement
