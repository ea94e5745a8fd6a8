// EntitlementStore: the operator's catalogue, devices, grants and EMM queue, in one SQLite file
// under the operator's home directory (entitlement.db, created mode 0600: it holds the operator's
// private key and the service keys), or on a PostgreSQL server the home names (store_database.h),
// which several engine processes may serve from at once.
//
//   auto store = EntitlementStore::create("usher-data/entitlement", kDefaultCaSystemId).value();
//   store.add_service(1, "News");
//   store.register_stb(1001, stb_x25519_public, stb_ed25519_public);
//   store.grant(1001, 1, now, now + 30 * 86400);   // queues an EMM for STB 1001
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/catalogue.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/messages.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/settlement.h"

namespace usher::entitlement {

struct StbInfo {
  std::uint32_t stb_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};
};

// Bulk provisioning (provisioning.h, provisioning.cc): one box of an import, with the account it
// belongs to ("" for none) and the line of the file it came from (0: not from a file).
struct StbRow {
  StbInfo stb;
  std::string account;
  std::size_t line = 0;
};

struct GrantInfo {
  std::uint32_t stb_id = 0;
  std::uint16_t service_id = 0;
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  bool revoked = false;
};

// A box's place in the operator's groups (docs/architecture.md, "Key hierarchy").
struct GroupMembership {
  std::uint32_t group_id = 0;
  std::uint8_t position = 0;      // 0..255: its bit in the group's member bitmaps
  std::uint32_t key_version = 0;  // of the group key it holds (or is being sent)
};
struct GroupInfo {
  std::uint32_t group_id = 0;
  std::uint32_t key_version = 0;
  std::uint32_t members = 0;
};
// An EMM on the carousel, as the engine queued it (what the headend sends is its section).
struct QueuedEmm {
  EmmAddress address;  // key_version is left 0: the section's header says it
  std::uint64_t sequence = 0;
  std::string topic;   // what it carries, for replacing it: "keys", "grant/...", "offer/..." or ""
  std::uint64_t carousel_from = 0;
  std::uint64_t carousel_until = 0;
  std::vector<std::uint8_t> section;
};

struct Purchase {
  Ticket ticket;
  std::vector<std::uint8_t> emm_section;  // the ticket's EMM, for the handset to pass to the STB
  Money balance;                          // the card's balance after paying
};

// A ticket's state in the engine's store: valid, or revoked (withdrawn, with the grant of a pass).
enum class TicketStatus { valid, revoked };
const char* to_string(TicketStatus status);

// LedgerEntryKind (catalogue.h) as stored: "top-up", "ppv", ...
const char* to_string(LedgerEntryKind kind);

// Where top-ups come from (a card acquirer, a bank). The engine credits a prepaid card only after
// the funding source has approved the charge.
class FundingSource {
 public:
  virtual ~FundingSource() = default;
  // Charges `amount` against `funding_reference`; returns the acquirer's authorisation reference.
  virtual Result<std::string> charge(const Money& amount, const std::string& funding_reference) = 0;
};

// TestAcquirer: a funding source for tests and the demo, named as such. Approves any reference
// except those starting with "decline", up to 1000.00 per charge.
class TestAcquirer final : public FundingSource {
 public:
  Result<std::string> charge(const Money& amount, const std::string& funding_reference) override;
};

class EntitlementStore {
 public:
  static constexpr const char* kDatabaseName = "entitlement.db";
  static constexpr const char* kOperatorPublicName = OperatorPublicFile::kFileName;
  // The operator's private keys, in the home, when the store is on a PostgreSQL server.
  static constexpr const char* kOperatorKeyName = "operator.key";

  // Creates the home directory and a new operator (fails with already_exists if there is one).
  // With `database_url` (postgresql://...) the store is on that server, in its schema "engine", and
  // the home keeps the URL and the operator's private keys (operator.key); without, entitlement.db
  // in the home holds everything. A server that already holds an operator is refused: a second
  // engine of the same operator runs from a copy of the first one's home.
  static Result<EntitlementStore> create(const std::string& home, std::uint16_t ca_system_id, const std::string& database_url = "");
  // Opens the operator's store, bringing its schema forward (Errc::storage, the file untouched, when
  // a newer Usher wrote it).
  static Result<EntitlementStore> open(const std::string& home);
  // The numbered steps of entitlement.db's schema (docs/architecture.md, "Schema versions").
  static const sql::Schema& schema();

  [[nodiscard]] std::uint16_t ca_system_id() const { return ca_system_id_; }
  // Where the store is: its file, or its server (without the password) and schema.
  [[nodiscard]] std::string where() const { return db_.where(); }
  [[nodiscard]] const crypto::PublicKey& operator_public() const { return operator_public_; }

  Result<ServiceInfo> add_service(std::uint16_t service_id, const std::string& name);
  std::vector<ServiceInfo> services();
  // The key current now (service_keys at unix_now()).
  Result<ServiceKey> service_key(std::uint16_t service_id);
  // The service's key current at `at` (broadcast time, unix seconds) and the next one, if a rotation
  // announced it and it starts after `at`.
  Result<ServiceKeys> service_keys(std::uint16_t service_id, std::uint64_t at);
  // Rotation (docs/architecture.md, "Key hierarchy and groups"): makes the service's next key, which
  // ECMs use from `starts` on, and announces it at once: every group's member grants that include
  // the service are sealed again carrying the current and the next key, so boxes entitled now take
  // it from the carousel (no unique EMM per box). Refused, changing nothing: `starts` not after
  // `now`, or a rotation of the service already pending (Errc::already_exists: one at a time).
  Result<ServiceKeyVersion> rotate_service_key(std::uint16_t service_id, std::uint64_t starts, std::uint64_t now);
  // After a rotation's start: the member grants of the service sealed again with the keys of `now`
  // (the older key no longer sent). Once per rotation; cheap when none is due. Returns how many
  // rotations it completed. The engine's service runs it as headends follow the feed.
  Result<std::size_t> settle_key_rotations(std::uint64_t now);

  // Packages: named groups of services sold together (a tier). Granting or revoking a package
  // grants or revokes each of its services, with one EMM each.
  Status add_package(std::uint16_t package_id, const std::string& name, const std::vector<std::uint16_t>& services);
  std::vector<std::pair<std::uint16_t, std::string>> packages();
  Result<std::vector<std::uint16_t>> package_services(std::uint16_t package_id);
  Status grant_package(std::uint32_t stb_id, std::uint16_t package_id, std::uint64_t not_before, std::uint64_t not_after);
  Status revoke_package(std::uint32_t stb_id, std::uint16_t package_id);

  // Registers the box and places it in a group (the first with a free position), queuing the
  // unique EMM that gives it its group key and the global key.
  Status register_stb(const StbInfo& stb);
  std::vector<StbInfo> stbs();
  [[nodiscard]] bool has_stb(std::uint32_t stb_id);
  std::optional<StbInfo> stb(std::uint32_t stb_id);

  // Grants a service to an STB for [not_before, not_after] and queues the EMM that carries it.
  // not_after is at most kLatestGrantEnd.
  Status grant(std::uint32_t stb_id, std::uint16_t service_id, std::uint64_t not_before, std::uint64_t not_after);
  Status revoke(std::uint32_t stb_id, std::uint16_t service_id);
  std::vector<GrantInfo> grants();

  // --- Groups, group and global EMMs (groups.cc; docs/architecture.md, "Key hierarchy") ---
  // The box's group, position and group key version (nullopt: unknown or cut off).
  std::optional<GroupMembership> group_of(std::uint32_t stb_id);
  std::vector<GroupInfo> groups();
  // A group's key of the version it has now (the engine keeps only the current one).
  Result<EmmGroupKey> group_key(std::uint32_t group_id);
  // The operator's current global key.
  EmmGlobalKey global_key();
  // The next sequence number the operator-wide EMM counter will give.
  std::uint64_t next_emm_sequence();
  // Renews every current (unrevoked, unexpired) grant of the package's services until `not_after`
  // (those ending later are left as they are), in group EMMs: one member grant per group and window,
  // not one EMM per box. Returns the number of boxes renewed.
  Result<std::size_t> renew_package(std::uint16_t package_id, std::uint64_t not_after, std::uint64_t now);
  // A cloned or stolen box: revokes its grants, takes it out of its group (its position is freed),
  // gives the group a new key sent by unique EMM to each remaining member and seals the group's
  // carousel again under it. The box can open no group EMM issued after. It stays registered, cut
  // off: grants, credit and tickets for it are refused.
  Status cut_off(std::uint32_t stb_id);
  // A text for every box, in a global EMM carried until `until`. Returns its message id.
  Result<std::uint64_t> send_message(const std::string& text, std::uint64_t until);
  // Announces the next global key in a global EMM under the current one; later global EMMs, and the
  // key EMMs of boxes registered after, use it. Returns the new version.
  Result<std::uint32_t> rotate_global_key();
  // What is queued, in order (tests, the feed's inspection).
  std::vector<QueuedEmm> queued_emms();

  // EMM sections to carousel at `now` (unix seconds), oldest first.
  std::vector<std::vector<std::uint8_t>> emm_sections(std::uint64_t now);
  // How long each EMM is repeated on the carousel after it is first sent (0: as long as what it
  // carries lasts, the default).
  Status set_emm_repeat_seconds(std::uint64_t seconds);
  std::uint64_t emm_repeat_seconds();
  // The EMM feed (protocol.h, emm_changes): what the queue gained and lost after `cursor`, in change
  // order, one bounded page at a time. A plain read: it takes no write lock and waits for none.
  // `max_entries` and `max_bytes` are for tests; the protocol's bounds are the defaults.
  EmmFeedPage emm_changes(std::uint64_t cursor, std::size_t max_entries = kEmmFeedMaxEntries,
                          std::size_t max_bytes = kEmmFeedMaxBytes);
  // Removes at most `at_most` entries whose carousel ended before `now` - kEmmExpiryMarginSeconds
  // (or whose repeat time is over), each as a removal of the feed, and forgets removals older than
  // kEmmRemovalKeepSeconds; one short transaction. Returns how many entries went.
  std::size_t purge_expired_emms(std::uint64_t now, std::size_t at_most = 500);
  static constexpr std::uint64_t kEmmExpiryMarginSeconds = 3600;
  static constexpr std::uint64_t kEmmRemovalKeepSeconds = 7 * 86400;
  // The EMM stream's bandwidth for headends that are given none (`headend run --emm-kbps`), in
  // kbit/s; 0: not set (each headend's default).
  Status set_emm_kbps(std::uint64_t kbps);
  std::uint64_t emm_kbps();

  // --- Pay-per-view catalogue ---
  [[nodiscard]] const crypto::PublicKey& signing_public() const { return signing_public_; }
  Result<EventInfo> add_event(const EventInfo& event);
  std::vector<EventInfo> events();
  // The events of one service that end after `time`, earliest first, at most `count` (what a
  // headend looks at every second: not the whole catalogue).
  std::vector<EventInfo> events_ending_after(std::uint16_t service_id, std::uint64_t time, std::size_t count);
  Result<EventInfo> event(std::uint32_t event_id);
  // The PPV event on air on `service_id` at `time`, with the key its ECMs are sealed under.
  std::optional<EventKey> current_event(std::uint16_t service_id, std::uint64_t time);

  // --- Headends ---
  Status register_headend(std::uint32_t headend_id, const crypto::PublicKey& x25519_public);
  // The key bundle for a registered headend, sealed for it (events ending after `now`, starting
  // within `horizon` seconds).
  Result<std::vector<std::uint8_t>> sealed_key_bundle(std::uint32_t headend_id, std::uint64_t now,
                                                      std::uint64_t horizon = 7 * 86400);
  // Each service's current and next key versions with their start times, sealed for the headend
  // (seal_key_versions; after the bundle in the headend_keys reply).
  Result<std::vector<std::uint8_t>> sealed_key_versions(std::uint32_t headend_id, std::uint64_t now);

  // --- Handsets, prepaid cards, ledger ---
  // Registers a handset's signing key for an account and issues it a prepaid card (balance 0).
  Result<CardInfo> register_handset(const std::string& account, const crypto::PublicKey& handset_public,
                                    const Currency& currency);
  Result<CardInfo> card(std::uint64_t card_id);
  // The card's certificate, as issued (billing checks a handset's key with it).
  Result<PrepaidCardCertificate> card_certificate(std::uint64_t card_id);
  Result<Money> balance(std::uint64_t card_id);
  Result<Money> top_up(std::uint64_t card_id, std::int64_t amount_minor, const std::string& funding_reference,
                       FundingSource& funding);
  // Pays for event `event_id` for STB `stb_id` with a spend authorization signed by the card's
  // handset, issues the ticket bound to that STB and queues its EMM. Refused with no change: a bad
  // signature, a reused nonce, the wrong amount or payee, a balance too small, an event that is over.
  // With `deliver_at` (F5) the ticket's EMM joins the broadcast carousel only from that time.
  Result<Purchase> buy_ticket(std::uint32_t event_id, std::uint32_t stb_id, const SpendAuthorization& spend,
                              std::uint64_t now, std::uint64_t deliver_at = 0);
  // Service passes (a ticket for a period): a service sold by the day. The pass reaches the STB as a
  // grant of the service for the pass's window; the signed ticket is the buyer's proof.
  Status set_pass_price(std::uint16_t service_id, const Money& per_day);
  Result<Money> pass_price(std::uint16_t service_id);
  Result<Purchase> buy_pass(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id,
                            const SpendAuthorization& spend, std::uint64_t now);

  // F3: pays for the event an STB asked for with a request code (see request_code.h). The code
  // must check out for its STB, be unexpired and unused; it is used up by a successful purchase.
  Result<Purchase> buy_by_code(const std::string& code, const SpendAuthorization& spend, std::uint64_t now);

  // F4: gives an STB a credit line for impulse purchases (by EMM), with offers (event keys and
  // prices) for the PPV events to come; events added later are offered to it as they come.
  // `collect_within` (seconds; 0 = none) also sets the collection deadline: purchases on the credit
  // line not relayed that long after they were made stop the STB's impulse buys until they are.
  // Unset: the STB keeps the deadline it has.
  Status set_credit(std::uint32_t stb_id, const Money& limit, std::uint64_t now,
                    std::optional<std::uint64_t> collect_within = std::nullopt);

  // F4: the key STB `stb_id`'s history records are signed with (billing opens a relayed history
  // with its own X25519 key and checks the records with this one). Errc::not_entitled for an STB
  // the operator does not know.
  Result<crypto::PublicKey> stb_signing_public(std::uint32_t stb_id);

  // Billing: certifies a billing service's keys with the operator's issuing key: its Ed25519 key,
  // so that STBs trust its receipts, and its X25519 key, which STBs seal their history for.
  BillingCertificate certify_billing(std::uint32_t billing_id, const crypto::PublicKey& billing_public,
                                     const crypto::PublicKey& billing_x25519, std::uint64_t now);
  // The key of a billing the operator certified (certify_billing keeps each, the latest per id):
  // the engine answers billing's requests only when signed by it. nullopt: never certified here.
  std::optional<crypto::PublicKey> billing_public(std::uint32_t billing_id);
  // Billing's charge for a settlement: `spend` must be signed by the card's handset, for exactly
  // `amount` and `payee`; its nonce is used up. Moves the amount from the card to settlement revenue
  // in one transaction and returns the card's new balance. Run it under once() so that a retry by
  // billing after a crash gets the same answer and no second debit.
  Result<Money> charge_settlement(const SpendAuthorization& spend, const Money& amount, const std::string& payee);

  // Undoes a settlement's charge that billing could not complete (the records it paid for were
  // settled by another path): `amount` goes back from settlement revenue to the card. Run it under
  // once() with an id of its own, so that a retry refunds once.
  Result<Money> refund_settlement(std::uint64_t card_id, const Money& amount, const std::string& payee);

  // One sale per entitlement: what an STB already holds for an event. A valid ticket the engine
  // sold (ticket_id), or an impulse purchase billing has seen in the STB's history (its record's
  // sequence). Every purchase path refuses a second one and names it; billing prices an impulse
  // record of an event the engine already sold the STB at zero.
  struct Holding {
    std::uint64_t ticket_id = 0;         // the engine's ticket (0: an impulse purchase)
    std::uint64_t impulse_sequence = 0;  // the STB's history record of the impulse purchase
  };
  std::optional<Holding> holding(std::uint32_t stb_id, std::uint32_t event_id);
  // Billing: the events an STB bought on impulse, from its verified history (idempotent).
  void record_impulse_purchases(std::uint32_t stb_id, const std::vector<HistoryRecord>& records);

  // Withdraws a ticket: marks it revoked, sends the STB an EMM saying so and, with `refund`, moves
  // the price back to the card. Errc::not_found / Errc::already_exists (already revoked).
  Status revoke_ticket(std::uint64_t ticket_id, bool refund);
  struct TicketRecord {
    std::uint64_t ticket_id = 0;
    std::uint32_t event_id = 0;
    std::uint32_t stb_id = 0;
    std::uint64_t card_id = 0;
    TicketStatus status = TicketStatus::valid;
  };
  std::vector<TicketRecord> tickets();
  struct TicketState {
    TicketStatus status = TicketStatus::valid;
    std::uint64_t delivered = 0;  // when the STB stored it, by its signed ack (0 = not confirmed)
  };
  Result<TicketState> ticket_state(std::uint64_t ticket_id);
  // Cash settlement ([0269]): what was paid for each ticket of an STB (a PPV event or a pass), and
  // what was refunded, from the ledger, as the card saw it.
  struct TicketPayment {
    std::uint64_t ticket_id = 0;
    LedgerEntryKind kind = LedgerEntryKind::ppv;  // ppv, pass or refund
    std::string title;       // the ticket's
    std::uint32_t event_id = 0;
    std::uint64_t time = 0;  // when the ledger recorded it
    Money amount;            // paid (positive) or refunded (negative)
  };
  std::vector<TicketPayment> ticket_payments(std::uint32_t stb_id);
  // Records acks signed by the STBs that stored their tickets; returns the tickets now confirmed.
  // Acks that do not verify against the STB's key, or name a ticket of another STB, are ignored.
  Result<std::vector<std::uint64_t>> record_delivery_acks(const std::vector<DeliveryAck>& acks);
  // Accounts own devices: an STB can be registered for an account, and a gift sent to it.
  Status set_stb_account(std::uint32_t stb_id, const std::string& account);
  std::vector<std::uint32_t> account_stbs(const std::string& account);

  // --- Bulk provisioning (provisioning.cc, docs/provisioning.md) ---
  // What a bulk command did: boxes added (registered, or granted), and boxes skipped because they
  // already were (the same keys; the same grant window), which is what makes a re-run resume.
  struct BulkCounts {
    std::size_t added = 0;
    std::size_t skipped = 0;
  };
  // Called after each committed transaction with the counts so far; returning false stops before
  // the next one (what is committed stays, and the same call again resumes).
  using BulkProgress = std::function<bool(const BulkCounts&)>;
  static constexpr std::size_t kBulkTransactionRows = 10000;
  // Registers many boxes, `per_transaction` in each transaction (each all or nothing). Every row is
  // checked first, and nothing is written if any is refused: id 0, an id given twice, an unusable
  // X25519 key, an id registered with other keys (the message names each, by line). A row already
  // registered with the same keys is skipped, untouched.
  Result<BulkCounts> register_stbs(std::span<const StbRow> rows, std::size_t per_transaction = kBulkTransactionRows,
                                   const BulkProgress& progress = {});
  // Grants `services` to every box of `stbs` for [not_before, not_after], `per_transaction` boxes in
  // each transaction, queueing the EMMs that carry the grants. Refused with no change when a service
  // or a box is unknown (the message lists the unregistered ids). A box that already holds each of
  // the services for exactly this window, unrevoked, is skipped: no second EMM.
  Result<BulkCounts> grant_many(std::span<const std::uint32_t> stbs, std::span<const std::uint16_t> services, std::uint64_t not_before,
                                std::uint64_t not_after, std::size_t per_transaction = kBulkTransactionRows,
                                const BulkProgress& progress = {});
  // The ids of the registered boxes in [first, last], in order.
  std::vector<std::uint32_t> stb_ids(std::uint32_t first = 1, std::uint32_t last = 0xFFFFFFFF);

  // Sum of every posting in the ledger (0 when every transaction balances) and the number of postings.
  std::pair<std::int64_t, std::int64_t> ledger_check();
  // True when every card's running balance equals the sum of its postings.
  bool balances_match_ledger();

  // Runs `work` inside one transaction and commits it; Errc::storage if the commit fails.
  Status batch(const std::function<void()>& work);

  // Signed requests (request_auth.h): runs `work` once per `replay_key`; the same request again
  // gets the stored reply and changes nothing. Replies of requests whose `time` is older than
  // `now` - 2 windows are forgotten (such a request is refused as stale before it gets here).
  Result<std::vector<std::uint8_t>> once_signed(std::span<const std::uint8_t> replay_key, std::uint64_t card_id, std::uint64_t time,
                                                std::uint64_t now, const std::function<Result<std::vector<std::uint8_t>>()>& work);
  // The card that paid for a ticket (nullopt: no such ticket).
  std::optional<std::uint64_t> ticket_card(std::uint64_t ticket_id);

  // Runs `work` once per request id: a retry with the same id gets the stored reply, no second effect.
  Result<std::vector<std::uint8_t>> once(std::span<const std::uint8_t> request_id,
                                         const std::function<Result<std::vector<std::uint8_t>>()>& work);

 private:
  EntitlementStore(sql::Database db, std::uint16_t ca_system_id, crypto::PublicKey op_public)
      : db_(std::move(db)), ca_system_id_(ca_system_id), operator_public_(op_public) {
    load_signing_key();
  }
  void load_signing_key();
  static Result<EntitlementStore> create_in(const std::string& home, std::uint16_t ca_system_id);
  Secret<32> signing_private();
  // Brings the file forward to the latest schema (and adds the one-valid-ticket index when the
  // data allows it); refuses a file from a newer Usher.
  static Status bring_forward(sql::Database& db, const std::string& path);
  static void add_one_valid_ticket_index(sql::Database& db);
  // Seals and queues an EMM for the carousel; returns its section.
  Result<std::vector<std::uint8_t>> queue_emm(std::uint32_t stb_id, std::vector<EmmItem> items, EmmPriority priority,
                                              std::uint64_t carousel_until, std::uint64_t carousel_from = 0,
                                              const std::string& topic = "");
  // Takes an entry off the queue as a removal of the feed (inside the caller's write transaction).
  void remove_emm_entry(std::int64_t id);
  // The feed's next change number; only inside a write transaction (so numbers follow commit order).
  std::uint64_t next_emm_change();
  // --- groups.cc ---
  // The operator-wide EMM sequence counter: the next number, drawn inside the caller's transaction.
  std::uint64_t draw_emm_sequence();
  // Puts a sealed EMM of any address on the carousel. `priority`: 0 urgent (revocations, new
  // grants, keys, tickets, credit), 1 renewals and key rotations, 2 background.
  void store_emm(EmmAddressType type, std::uint32_t address_id, const std::string& topic, std::uint64_t sequence,
                 const std::vector<std::uint8_t>& section, std::uint64_t carousel_from, std::uint64_t carousel_until, int priority);
  // Drops the queued EMMs of an address with this topic (the newer one replaces them).
  void drop_emms(EmmAddressType type, std::uint32_t address_id, const std::string& topic);
  // Inside the caller's transaction: places a new box in a group and queues its key EMM.
  Status assign_group(std::uint32_t stb_id);
  // Boxes registered before groups existed get one, in one transaction (at open).
  Status assign_missing_groups();
  // The unique EMM with the box's group key and the global key (replacing the one queued before).
  Status queue_key_emm(std::uint32_t stb_id);
  // Inside the caller's transaction, after the boxes' grants are stored: per group of these boxes,
  // the member grant of `services` for the window, with the bitmap of the members that hold them
  // (priority renewal). Older member grants of those services in those groups are brought in line.
  Status queue_group_grants(const std::vector<std::uint32_t>& stb_ids, const std::vector<std::uint16_t>& services,
                            std::uint64_t not_before, std::uint64_t not_after);
  // After `revoked` services were withdrawn from a box: its group's carousel member grants of them,
  // sealed again from the grants table (without its bit), and the rest of each kept for it.
  Status refresh_group_grants_after_revoke(const GroupMembership& box, const std::vector<std::uint16_t>& revoked);
  // Revokes each service (a unique EMM each, as revoke()) and then brings the group's carousel in line once.
  Status revoke_services(std::uint32_t stb_id, const std::vector<std::uint16_t>& services);
  // One member grant (group, services, window), sealed again from the grants table (or dropped).
  // It carries each service's keys of `keys_at` (0: now): the current one and a pending next one.
  Status refresh_group_grant(std::uint32_t group_id, const std::vector<std::uint16_t>& services, std::uint64_t not_before,
                             std::uint64_t not_after, int priority, std::uint64_t keys_at = 0);
  // Every group's member grants that include the service, sealed again with the keys of `keys_at`.
  // Only the member grants whose window ends after `reaching` (0: all): a rotation leaves alone the
  // grants that end before its key comes into use.
  Status refresh_group_grants_of_service(std::uint16_t service_id, int priority, std::uint64_t keys_at, std::uint64_t reaching = 0);
  // Rotation: the service's holders whose grant no member grant on the carousel carries (granted
  // alone, by unique EMM) get one, per group and window, so the next key reaches them too.
  Status announce_to_uncovered_holders(std::uint16_t service_id, std::uint64_t now, std::uint64_t starts);
  Result<std::uint64_t> queue_global_emm(std::vector<EmmItem> items, std::uint64_t carousel_until, const std::string& topic, int priority);
  // Refused (Errc::not_entitled) for a box that was cut off.
  Status check_not_cut_off(std::uint32_t stb_id);
  Secret<32> operator_private();
  // Keeps a certified billing's key (certify_billing), so that its requests are accepted.
  void remember_billing(const BillingCertificate& certificate);

  // --- Bulk provisioning (provisioning.cc) ---
  // Inside the transaction that registers a box (register_stbs): what a new box needs beyond its
  // row: its group, position and key EMM (groups.cc).
  Status on_stb_registered(std::uint32_t stb_id) { return assign_group(stb_id); }

  sql::Database db_;
  std::uint16_t ca_system_id_;
  crypto::PublicKey operator_public_;
  crypto::PublicKey signing_public_{};
  Result<Key256> emm_key_for(std::uint32_t stb_id);
  // Purchases: the checks before the transaction, then (inside it) nonce, balance, ticket, posting.
  Status check_spend(const SpendAuthorization& spend, const Money& price, const std::string& payee, std::uint32_t stb_id);
  // Inside the transaction: uses up the spend's nonce and checks the balance covers it.
  Status claim_spend(const SpendAuthorization& spend);
  // Inside the transaction: refused (Errc::already_exists, naming what it holds) when the STB
  // already holds this event or an overlapping pass for the service.
  Status check_not_held(const Ticket& draft);
  Result<Ticket> pay_and_issue(const SpendAuthorization& spend, Ticket draft, LedgerEntryKind kind);
  Result<EmmOffer> offer_for(std::uint32_t event_id);
  std::map<std::uint32_t, Key256> emm_keys_;   // per STB: X25519 + HKDF done once
  std::optional<Secret<32>> signing_private_;   // cached after first use; from operator.key on a server
  std::optional<Secret<32>> operator_private_;  // from operator.key on a server; else read from the store
};

}  // namespace usher::entitlement
