// The catalogue's values as every part sees them: services and their keys, PPV events and their
// keys, the key bundle a headend receives (sealed for it alone), a handset's prepaid card. The
// engine keeps them in its store (store.h); the headend, STB, wallet and billing receive them in
// messages, so they live here, in usher_formats, with no storage attached.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/secret.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/settlement.h"

namespace usher::entitlement {

struct ServiceInfo {
  std::uint16_t service_id = 0;
  std::string name;
  std::uint16_t key_version = 0;
};

struct ServiceKey {
  std::uint16_t key_version = 0;
  Key256 key;
};

// One version of a service key and the broadcast time (unix seconds) from which ECMs use it
// (docs/architecture.md, "Key hierarchy and groups": rotation).
struct ServiceKeyVersion {
  std::uint16_t key_version = 0;
  Key256 key;
  std::uint64_t starts = 0;
};

// A service's keys as seen at one time: the version current then and, when a rotation is pending,
// the next version announced ahead of its start.
struct ServiceKeys {
  ServiceKeyVersion current;
  std::optional<ServiceKeyVersion> next;
  // The version in use at `time` (the next one from its start on).
  [[nodiscard]] const ServiceKeyVersion& at(std::uint64_t time) const { return next && time >= next->starts ? *next : current; }
};

struct EventInfo {
  std::uint32_t event_id = 0;
  std::uint16_t service_id = 0;
  std::uint64_t start = 0;       // unix seconds
  std::uint32_t duration = 0;    // seconds
  std::string title;
  std::uint8_t min_age = 0;
  Money price;
  [[nodiscard]] std::uint64_t end() const { return start + duration; }
};

struct EventKey {
  std::uint32_t event_id = 0;
  Key256 key;
  std::uint8_t min_age = 0;  // parental rating, carried in the ECM's access criteria
};

// What a headend needs to scramble: every service key and the PPV events of the coming days with
// their keys. Sealed for one registered headend (seal_key_bundle) before it leaves the engine.
struct KeyBundle {
  struct ServiceEntry {
    std::uint16_t service_id = 0;
    std::uint16_t key_version = 0;
    Key256 key;
  };
  struct EventEntry {
    std::uint32_t event_id = 0;
    std::uint16_t service_id = 0;
    std::uint64_t start = 0;
    std::uint32_t duration = 0;
    std::uint8_t min_age = 0;
    Key256 key;
    std::string title;
    Money price;
  };
  // The service keys' versions with their start times (the current and, ahead of a rotation, the
  // next), for a headend that switches at the start time: sealed apart from the rest
  // (seal_key_versions), after it in the headend_keys reply, so that a headend that predates
  // rotation reads the bundle as before (docs/protocol.md, "Key bundle").
  struct KeyVersionEntry {
    std::uint16_t service_id = 0;
    ServiceKeyVersion version;
  };
  std::uint64_t generated = 0;
  std::vector<ServiceEntry> services;  // the version current at `generated`
  std::vector<EventEntry> events;
  std::vector<KeyVersionEntry> key_versions;
};
// The bundle's services and events (key_versions are not in it).
std::vector<std::uint8_t> seal_key_bundle(const KeyBundle& bundle, const Key256& headend_key, std::uint32_t headend_id);
Result<KeyBundle> open_key_bundle(std::span<const std::uint8_t> sealed, const Key256& headend_key, std::uint32_t headend_id);
// The bundle's key_versions, under the same key with their own authenticated data ("usher-keyv-v1").
std::vector<std::uint8_t> seal_key_versions(const std::vector<KeyBundle::KeyVersionEntry>& versions, const Key256& headend_key,
                                            std::uint32_t headend_id);
Result<std::vector<KeyBundle::KeyVersionEntry>> open_key_versions(std::span<const std::uint8_t> sealed, const Key256& headend_key,
                                                                 std::uint32_t headend_id);

struct CardInfo {
  std::uint64_t card_id = 0;
  std::string account;
  crypto::PublicKey handset_public{};
  Currency currency{};
  PrepaidCardCertificate certificate;  // signed by the engine as issuer
};

// The latest end a grant may have: 9999-12-31T23:59:59Z. Stored and carried as a signed 64-bit time.
// What moved money in a card's ledger (the engine stores it; billing reads it in ticket payments).
enum class LedgerEntryKind {
  top_up,             // money into a card from the acquirer
  ppv,                // a PPV ticket paid from a card
  pass,               // a service pass paid from a card
  refund,             // a revoked ticket's price back to its card
  settlement,         // a card charged for a settlement billing asked for
  settlement_refund,  // a settlement's charge given back (its records were settled another way)
};

inline constexpr std::uint64_t kLatestGrantEnd = 253402300799;

}  // namespace usher::entitlement
