// SecureElement: what a set-top box's secure chip would hold, kept in SQLite (stb.db under the STB's
// home, mode 0600): its identity and key pairs (X25519 for receiving keys, Ed25519 for signing), the
// operator's public key, its entitlements with their service keys (per key version: the current and
// the next), its group (position and group key) and the operator's global keys, which open group
// (0x83) and global (0x84) EMMs, the EMM sequence numbers it has applied, and its PPV tickets with
// their event keys. ECMs are opened here and checked against the entitlements; control words come
// out only to the descrambler.
//
// The file is on a disk the box's owner controls, so nothing in it is trusted because a row exists:
// every row that grants something (an entitlement and its service keys, the group and global keys,
// a ticket and its event key, an offer, the credit line, the collection deadline, prepaid credit, a
// hotel room's state, the parental limit, whether a purchase is settled) carries a tag under a key
// derived from the STB's
// secret; tickets and history records are also checked against their signature and their binding
// to this STB, each time they are loaded. A row that does not verify is refused and counted
// (rows_refused), never used. See docs/security.md. A store whose schema is not the one this code
// writes (a dropped table, another version, a corrupt file) is refused, never recreated; read-only
// commands open it read-only.
//
//   auto se = SecureElement::open("usher-data/stb-1001").value();
//   auto outcome = se.apply_emm(section);   // replayed / stale / forged EMMs are refused
//   auto ecm = se.open_ecm(section);        // Errc::not_entitled says why
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/catalogue.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/messages.h"
#include "usher/entitlement/settlement.h"

namespace usher::stb {

struct Entitlement {
  std::uint16_t service_id = 0;
  std::uint16_t key_version = 0;  // the newest version of the service key held
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  bool revoked = false;
  std::uint64_t sequence = 0;  // EMM that last changed it
  // Every version of the service key held, ascending: the current one and, ahead of a rotation,
  // the next (kServiceKeyVersionsHeld at most; older ones are dropped).
  std::vector<std::uint16_t> key_versions;
};

enum class EmmOutcome {
  applied,        // new and authentic: entitlements updated
  not_addressed,  // for another STB, another group, or a key version this STB does not hold: ignored
                  // without decrypting, as a receiver filters them
  duplicate,      // already applied (the carousel repeats EMMs): no effect
  nothing_for_this_stb,  // authentic, but nothing in it is for this STB (its bit clear in the member
                         // bitmap, or only items its address may not carry, skipped and counted)
};

// The STB's place in its group (from a unique EMM's group key item): what group EMMs it reads.
struct GroupMembership {
  std::uint32_t group_id = 0;
  std::uint8_t position = 0;
  std::uint32_t key_version = 0;
};

// A text from the operator, carried by a global EMM.
struct OperatorMessage {
  std::uint64_t message_id = 0;
  std::uint64_t issued = 0;  // the EMM's issue time, unix seconds
  std::string text;
};

// A held ticket's state: valid, used (watched at least once; still honoured), or revoked.
enum class StbTicketStatus { valid, used, revoked };
const char* to_string(StbTicketStatus status);  // as stored (and tagged): "valid", "used", "revoked"

class SecureElement {
 public:
  static constexpr const char* kDatabaseName = "stb.db";
  // Versions of each service key kept (the current and the next), of the global key, and operator
  // messages kept.
  static constexpr std::size_t kServiceKeyVersionsHeld = 2;
  static constexpr std::size_t kGlobalKeyVersionsHeld = 2;
  static constexpr std::size_t kMessagesKept = 8;
  static constexpr const char* kPublicName = "stb.pub";

  // Makes the STB's identity and key pairs, trusting `operator_identity` for EMMs.
  static Result<SecureElement> init(const std::string& home, std::uint32_t stb_id,
                                    const entitlement::OperatorPublicFile& operator_identity);
  // Errc::storage for a damaged store (missing or altered table, a schema version older than its
  // first step or newer than this code's, corrupt file): it is refused as it is, never repaired or
  // recreated empty. read_write brings an older schema forward by its steps first; read_only opens
  // the file without writing anything into it (for commands that only show what is stored), so it
  // refuses a file not at the latest version.
  enum class Access { read_write, read_only };
  static Result<SecureElement> open(const std::string& home, Access access = Access::read_write);
  // The numbered steps of stb.db's schema (PRAGMA user_version; docs/architecture.md, "Schema
  // versions").
  static const sql::Schema& schema();

  [[nodiscard]] std::uint32_t stb_id() const { return stb_id_; }
  // The operator's issuing key (tickets, billing certificates).
  [[nodiscard]] const crypto::PublicKey& issuer_public() const { return issuer_public_; }
  [[nodiscard]] std::uint16_t ca_system_id() const { return ca_system_id_; }
  [[nodiscard]] entitlement::StbPublicFile public_identity() const { return public_; }

  // Takes an EMM of any address (unique 0x82, group 0x83, global 0x84; docs/messages.md). Filters
  // on the clear header first (another STB or group, a key version not held, a sequence already
  // applied: no decryption). Items an address may not carry are skipped and counted
  // (emm_items_skipped). Errc::auth_failed (forged, tampered, wrong key), Errc::stale (older than
  // what was applied for the same service or group key: reordered; remembered, so its repetitions
  // are duplicates), Errc::malformed; Errc::storage when the store cannot keep it (a full disk):
  // nothing is applied, what is held stays usable, and the carousel brings the EMM again. Only
  // what the EMM changed is updated in memory, so applying one takes the same time however many
  // tickets are held.
  Result<EmmOutcome> apply_emm(std::span<const std::uint8_t> section);
  // Items refused since this SecureElement was opened because their EMM's address may not carry
  // them (a ticket in a group EMM, a member grant in a unique one...).
  [[nodiscard]] std::uint64_t emm_items_skipped() const { return items_skipped_; }
  // The group this STB reads group EMMs of, if it was given one.
  [[nodiscard]] std::optional<GroupMembership> group() const;
  // Versions of the operator's global key held, ascending.
  [[nodiscard]] std::vector<std::uint32_t> global_key_versions() const;
  // The last kMessagesKept operator messages, newest first.
  [[nodiscard]] std::vector<OperatorMessage> messages();
  // Opens one control word of an ECM (the current period's or the next's) if this STB belongs to that
  // period's audience at its broadcast time: entitled to the service, or holding a ticket for the PPV
  // event the block is sealed for.
  Result<entitlement::EcmPeriod> open_ecm(std::span<const std::uint8_t> section,
                                          entitlement::EcmPart part = entitlement::EcmPart::current) const;

  // Parental control: events rated above `max_age` need the PIN. Changing it needs the current PIN
  // once one is set. Errc::auth_failed for a wrong PIN.
  Status set_parental(const std::string& new_pin, std::uint8_t max_age, const std::string& current_pin);
  [[nodiscard]] bool verify_pin(const std::string& pin);
  [[nodiscard]] std::uint8_t parental_max_age() const { return parental_max_age_; }

  // Delivery acknowledgements for tickets stored and not yet relayed, signed by this STB; and
  // marking them relayed once the handset has passed them on.
  std::vector<entitlement::DeliveryAck> pending_acks();
  void acks_relayed(const std::vector<std::uint64_t>& ticket_ids);

  // F3: a code the viewer's handset can pay for event `event_id` with (see request_code.h).
  [[nodiscard]] std::string request_code(std::uint16_t event_id, std::uint64_t expires) const;
  // What `stb buy --pay-by-handset` shows: a request code, unless this STB already holds a ticket
  // for the event or bought it on impulse (Errc::already_exists, naming which; nothing to pay).
  Result<std::string> handset_purchase_code(std::uint16_t event_id, std::uint64_t expires);

  // F4 impulse purchase with the remote: records the purchase in the signed, hash-chained history
  // and allows the event while the credit line (set by EMM) covers the unsettled purchases. One
  // SQLite transaction: a power cut leaves either the whole record or none.
  Result<entitlement::HistoryRecord> impulse_buy(std::uint32_t event_id, std::uint64_t now);
  std::vector<entitlement::HistoryRecord> history(bool unsettled_only = false);
  Result<entitlement::Money> credit_limit();
  // F4: billing's certificate (relayed by the handset with its request for the history, shown by
  // billing itself on the local link, or carried by a hotel room state): checked against the
  // operator's issuing key and kept; the STB seals its history for the billing it names from then
  // on. Errc::auth_failed for one the operator did not sign, Errc::not_entitled for a version 1
  // certificate (no X25519 key), Errc::stale for an older one of the billing it holds. Nothing
  // changes unless it is accepted.
  Status accept_billing_certificate(std::span<const std::uint8_t> certificate);
  // The certificate of the billing this STB seals for, checked again; Errc::not_found (saying how
  // it gets one) when it holds none.
  Result<entitlement::BillingCertificate> billing_certificate();
  // The unsettled records, sealed for billing's X25519 key (the handset relays them without reading
  // them). Errc::not_found when the STB holds no billing certificate.
  Result<std::vector<std::uint8_t>> sealed_unsettled_history();
  // Any run of records sealed the same way (tests use it to present billing with gaps and replays).
  Result<std::vector<std::uint8_t>> seal_for_billing(std::span<const entitlement::HistoryRecord> records);

  // A receipt from billing (brought by the handset, or by billing itself in a hotel): checked
  // against the operator's key, this STB and its history; marks exactly the records it covers
  // settled (freeing credit) or, for a prepayment, adds to the prepaid credit. Errc::auth_failed
  // for a forged or altered receipt, Errc::not_entitled for another STB's, Errc::replayed when
  // it was applied before. Nothing changes unless it is accepted.
  struct ReceiptOutcome {
    entitlement::Receipt receipt;
    std::uint64_t records_settled = 0;
  };
  Result<ReceiptOutcome> apply_receipt(std::span<const std::uint8_t> receipt, std::uint64_t now);
  // What the viewer sees about settlement: "purchases not yet collected, last relay on ...".
  struct SettlementStatus {
    std::uint64_t unsettled_records = 0;
    entitlement::Money unsettled;
    std::optional<entitlement::Money> credit_limit;
    std::optional<entitlement::Money> prepaid;
    std::uint64_t last_settled = 0;  // unix seconds of the last receipt applied (0 = never)
    bool hotel_room = false;
    std::uint64_t stay_id = 0;       // 0: vacant
    std::uint64_t collect_within = 0;  // seconds the operator allows before a purchase is relayed (0: no deadline)
    std::uint64_t collect_by = 0;      // unix seconds by which the oldest unsettled purchase must be relayed (0: none)
  };
  SettlementStatus settlement_status();
  // Hotel: billing's signed room state (occupied by a stay with a credit limit, or vacant; and
  // whether to clear the last guest's tickets and history, refused while any is uncollected).
  Status apply_room_state(std::span<const std::uint8_t> state);
  // Where a hotel room STB reports its purchases ("" at home).
  std::string billing_endpoint();

  // Marks the tickets for a PPV event as used once it has been watched (they stay valid for it).
  // Errc::storage when the disk cannot take it (the ticket stays usable).
  Status mark_watched(std::uint32_t event_id);

  // Re-reads entitlements and tickets stored by another process (the local link). Errc::storage
  // when the store cannot be read; what was loaded before stays.
  Status reload();
  [[nodiscard]] std::vector<Entitlement> entitlements() const;
  [[nodiscard]] std::vector<entitlement::Ticket> tickets() const;
  // "valid", "used" (watched at least once; still honoured), "revoked", or "unknown".
  [[nodiscard]] std::string ticket_status(std::uint64_t ticket_id) const;
  // Rows of the store refused at the last load because their tag, signature or binding did not
  // verify (edited or added outside the STB).
  [[nodiscard]] std::uint64_t rows_refused() const { return rows_refused_; }

 private:
  // Errc::already_exists when this STB holds a valid ticket for the event or bought it on impulse.
  Status refuse_if_bought(std::uint32_t event_id);
  struct Held {
    Entitlement info;                      // info.key_versions is filled in by entitlements()
    std::map<std::uint16_t, Key256> keys;  // by key version; empty when revoked
  };
  struct HeldGroup {
    GroupMembership membership;
    Key256 key;
    std::uint64_t sequence = 0;  // the unique EMM that gave it
  };
  SecureElement(sql::Database db, std::uint32_t stb_id, std::uint16_t ca_system_id, Key256 emm_key,
                Key256 store_key, entitlement::StbPublicFile pub);
  struct CreditRow {
    entitlement::Money limit;
    std::uint64_t sequence = 0;
  };
  struct RoomRow {
    std::uint64_t counter = 0;
    std::uint64_t stay_id = 0;
    entitlement::Money limit;
    std::string billing_endpoint;
  };
  struct CollectionRow {
    std::uint64_t within = 0;
    std::uint64_t sequence = 0;
  };
  // The single-row settings, read and verified; Errc::auth_failed when the row was edited.
  Result<std::optional<CreditRow>> stored_credit();
  Result<std::optional<RoomRow>> stored_room();
  Result<std::optional<entitlement::Money>> stored_prepaid();
  Result<std::optional<CollectionRow>> stored_collection();
  void write_prepaid(const entitlement::Money& balance);
  std::vector<std::uint8_t> ticket_tag(std::uint64_t ticket_id, std::uint32_t event_id, std::span<const std::uint8_t> ticket,
                                       const Key256& event_key, StbTicketStatus status) const;
  // An opened EMM of any address, and what applying it changes in memory (made current only once
  // its transaction is committed).
  struct OpenedEmm {
    entitlement::EmmAddressType type = entitlement::EmmAddressType::unique;
    std::uint64_t sequence = 0;
    std::uint64_t issued_unix = 0;
    const std::vector<entitlement::EmmItem>* items = nullptr;
  };
  struct EmmEffects;
  Result<EmmOutcome> apply_emm_content(const OpenedEmm& emm);
  Held& service_being_changed(EmmEffects& effects, std::uint16_t service_id) const;
  void write_service(const Held& held);
  // The viewing history as stored, each record's signature checked and each row's tag (which covers
  // whether it is settled). A record whose row does not verify counts as not settled (billing knows
  // better and says so with a receipt); one whose signature does not verify is left out and counted.
  struct StoredRecord {
    entitlement::HistoryRecord record;
    bool settled = false;
  };
  struct StoredHistory {
    std::vector<StoredRecord> records;
    std::uint64_t refused = 0;  // rows with a bad tag or signature
    [[nodiscard]] entitlement::Money unsettled_credit() const;  // purchases on the credit line not settled
    [[nodiscard]] const StoredRecord* oldest_unsettled_credit() const;
  };
  StoredHistory stored_history();
  // Ed25519 verification, remembering what verified: a reload re-reads every row, and the same
  // ticket or record need not be verified again (the row's tag is always recomputed).
  bool signature_ok(const crypto::PublicKey& signer, std::span<const std::uint8_t> message, const crypto::Signature& signature);
  // The oldest credit purchase not yet relayed, when the operator set a deadline and it has passed.
  Result<std::optional<std::uint64_t>> collection_overdue(std::uint64_t now);
  struct HeldTicket {
    entitlement::Ticket ticket;
    Key256 event_key;
    StbTicketStatus status = StbTicketStatus::valid;
    std::vector<std::uint8_t> bytes;  // as stored and tagged
  };
  void load();
  // Stores a ticket from an EMM; returns it as held in memory once committed (none when already held).
  Result<std::optional<HeldTicket>> store_ticket(std::span<const std::uint8_t> ticket, const Key256& event_key);
  Result<entitlement::EcmPeriod> open_ppv_ecm(std::span<const std::uint8_t> section, const entitlement::EcmHeader& header,
                                              entitlement::EcmPart part) const;

  sql::Database db_;
  std::uint32_t stb_id_;
  std::uint16_t ca_system_id_;
  Key256 emm_key_;
  Key256 store_key_;  // tags the rows of stb.db (derived from the STB's secret)
  entitlement::StbPublicFile public_;
  crypto::PublicKey issuer_public_{};  // the operator's ticket-signing key
  std::map<std::uint16_t, Held> held_;
  std::optional<HeldGroup> group_;
  std::map<std::uint32_t, Key256> global_keys_;  // by version
  std::uint64_t items_skipped_ = 0;
  std::vector<HeldTicket> tickets_;
  std::uint8_t parental_max_age_ = 255;  // no limit until one is set
  std::set<std::uint64_t> applied_;
  std::uint64_t rows_refused_ = 0;
  std::set<crypto::Digest> verified_signatures_;  // sha256(signer | message | signature)
};

}  // namespace usher::stb
