// BillingStore: the billing service's books (billing.db under its home, mode 0600: it holds
// billing's signing key). It settles STBs' viewing histories (flow F4) and hotel folios (F6):
//
//  - relay(): a history the handset relayed, opened with billing's own X25519 key (the STB sealed it
//    for the key in billing's certificate) and checked with the STB's signing key (signatures,
//    chain, no gap or replay), priced from the engine's catalogue, and answered with a quote (or,
//    for records already paid, the receipts again).
//
// Billing reaches the operator's engine only through its protocol (EngineClient, signed with
// billing's key): its home holds billing's database and keys, the engine's endpoint and the
// operator's public identity, never the engine's home or database, and no key of the operator's.
//  - pay(): the handset's spend authorization for a quote, charged once through the engine's
//    ledger, answered with a receipt signed by billing covering exactly the records paid.
//    A settlement goes quoted -> charging -> paid; one found "charging" after a crash is driven to
//    the end with the same engine request id, so the card is charged once.
//  - prepay(): credit bought ahead for an STB ([0269] prepayment), loaded into it by receipt.
//  - room_report(): a hotel room STB's purchases, posted to the folio of the stay each names.
//  - rooms, stays (check-in/check-out), folios, statements, and the outbox of charge postings for
//    the hotel's property-management system.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/settlement.h"
#include "usher/billing/engine_client.h"

namespace usher::billing {

using entitlement::Money;

// What a statement line is: cash (a ticket paid from a card at once), refund (of one), deferred (an
// impulse purchase paid through the handset), prepayment (credit loaded into the STB), prepaid (a
// purchase from that credit: shown, not counted again), folio (posted to a hotel guest's folio).
enum class StatementLineKind { cash, refund, deferred, prepayment, prepaid, folio };
const char* to_string(StatementLineKind kind);

struct StatementLine {
  std::uint64_t time = 0;
  std::uint32_t stb_id = 0;
  StatementLineKind kind = StatementLineKind::cash;
  std::string description;  // event title or what was bought
  std::uint32_t event_id = 0;
  std::uint64_t sequence = 0;  // history record (0 when none)
  std::uint64_t settlement_id = 0;
  Money amount;
};

struct Statement {
  std::string title;  // "Account alice", "STB 1001", "Folio 3: Koehler, Andreas, room 102"
  // Labelled fields printed under the title of each PDF page: a folio's hotel, guest, room and stay.
  std::vector<std::pair<std::string, std::string>> header;
  std::vector<StatementLine> lines;
  std::vector<Money> totals;  // one per currency
  [[nodiscard]] std::string text() const;
  [[nodiscard]] std::string csv() const;
  // A4 PDF typeset with Pango on cairo (the bytes of a file): on each page the title, the header,
  // the column titles and "Page i of N"; every line, UTF-8 as written; totals under the amounts.
  // Throws std::runtime_error only when cairo itself fails (out of memory).
  [[nodiscard]] std::string pdf() const;
};

struct Room {
  std::string room;
  std::uint32_t stb_id = 0;
  std::string link_endpoint;  // the room STB's link on the hotel network
  std::uint64_t stay_id = 0;  // 0: vacant
  bool state_pending = false; // a room state not yet acknowledged by the STB
};

struct Stay {
  std::uint64_t stay_id = 0;
  std::string room;
  std::string guest_id;
  std::string guest_name;
  std::uint64_t checkin = 0;
  std::uint64_t checkout = 0;  // 0 while the guest is in
};

// A charge posting's state in the PMS outbox: pending (to send, or sent and not yet answered), ok
// (the PMS took it), refused (kept for the front desk after the retries).
enum class PmsPostingState { pending, ok, refused };
const char* to_string(PmsPostingState state);

// Where a settlement stands: quoted (waiting for the handset's spend), charging (the spend taken and
// the card being charged, finished after a crash), paid (the receipt issued).
enum class SettlementState { quoted, charging, paid };
const char* to_string(SettlementState state);

struct PmsPosting {
  std::uint64_t posting_id = 0;
  std::uint64_t stay_id = 0;
  std::string room;
  std::string guest_id;
  Money amount;
  std::string description;
  std::uint64_t time = 0;
  PmsPostingState state = PmsPostingState::pending;
  int attempts = 0;
  std::string answer;
};

// The PMS link as the process running it (`billing serve --pms`, `billing pms`) last recorded it,
// for `billing hotel status`: that process writes it at each change, at each failed connect and
// every minute while up.
enum class PmsLinkCondition { up, down, stopped };
struct PmsLinkState {
  std::string pms;  // HOST:PORT
  PmsLinkCondition condition = PmsLinkCondition::down;
  std::uint64_t since = 0;            // when it came up, went down or stopped
  std::string last_error;             // the last failed connect or lost link ("" none yet)
  std::uint64_t last_error_at = 0;
  std::uint64_t failed_attempts = 0;  // connects failed since it went down
  std::uint64_t recorded = 0;         // when the link process last wrote this
};

class BillingStore {
 public:
  static constexpr const char* kDatabaseName = "billing.db";
  static constexpr const char* kPublicName = "billing.pub";  // billing's id and public keys, for the operator
  static constexpr const char* kKeyName = "billing.key";     // its private keys, when its store is on PostgreSQL

  // Makes billing's key pairs (Ed25519 to sign receipts and room states, X25519 that STBs seal their
  // history for) and writes billing.pub, for the operator to certify (`usher entitlement billing
  // add --public-file`); the certificate it makes is installed with install_certificate. Until
  // then billing is not certified (certified() false): STBs would trust nothing it signs and the
  // engine answers none of its requests. `op`: the operator's public identity (operator.pub);
  // `engine_endpoint`: where billing asks the engine (kept in billing's identity).
  // `database_url` (postgresql://...): billing's store on that server, in its schema "billing"
  // (billing and the engine may share a database); the home keeps the URL and billing's private
  // keys (billing.key). A second billing of the same id runs from a copy of the home.
  static Result<BillingStore> create(const std::string& home, std::uint32_t billing_id, const entitlement::OperatorPublicFile& op,
                                     const std::string& engine_endpoint = kDefaultEngineEndpoint, const std::string& database_url = "");
  // Installs a certificate the operator made from billing.pub (`usher entitlement billing add`):
  // it must be signed by the operator's issuing key (kept from operator.pub) and name billing's id
  // and both its keys. Errc::auth_failed for another signer, Errc::invalid_argument for another
  // billing's keys or a version 1 certificate; nothing changes then. A billing made by an older
  // Usher keeps its Ed25519 key, so receipts already issued stay valid.
  Status install_certificate(const entitlement::BillingCertificate& certificate);
  // Billing's public keys as billing.pub holds them (written by create, and by open when missing).
  [[nodiscard]] entitlement::BillingPublicFile public_file() const;
  // True once a certificate the operator signed is installed. One from an older Usher (version 1)
  // names no X25519 key: such a billing signs receipts but opens no history until certified again.
  [[nodiscard]] bool certified() const { return certified_; }
  // Errc::not_entitled, saying how to certify billing, when it is not certified yet.
  Status check_certified() const;
  // Opens billing's store, bringing its schema forward (Errc::storage, the file untouched, when a
  // newer Usher wrote it; a billing made before it had an X25519 key gets one, to be certified, and
  // billing.pub). `engine_endpoint`: the engine to ask ("" the one in billing's identity); nothing
  // is asked before a request needs it.
  static Result<BillingStore> open(const std::string& home, const std::string& engine_endpoint = "",
                                   net::ClientOptions engine_options = kEngineClientOptions);
  // The numbered steps of billing.db's schema (docs/architecture.md, "Schema versions").
  static const sql::Schema& schema();

  [[nodiscard]] const entitlement::BillingCertificate& certificate() const { return certificate_; }
  // How billing signs its requests to room STB `stb_id`'s local link (collect history, hand back
  // receipts): with its key, showing its certificate (entitlement/link_auth.h). Valid while the
  // store lives.
  entitlement::LinkSigner link_signer(std::uint32_t stb_id);
  // The operator's engine, as billing reaches it.
  EngineClient& engine() { return engine_; }

  // --- F4 and prepayment ---
  Result<entitlement::RelayReply> relay(std::span<const std::uint8_t> sealed_history, std::uint64_t card_id, std::uint64_t now);
  Result<entitlement::Receipt> pay(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend, std::uint64_t now);
  Result<entitlement::RelayReply> prepay(std::uint32_t stb_id, const Money& amount, std::uint64_t card_id, std::uint64_t now);
  // Drives every settlement left "charging" by a crash to its end; returns how many.
  std::size_t recover(std::uint64_t now);
  // The same for one STB's settlements (relay() does it first when it is not inside a group).
  void finish_interrupted(std::uint32_t stb_id, std::uint64_t now);

  // --- Group commit (BillingService) ---
  // Runs `work` in one transaction of billing's database, so that every request of a group shares
  // one disk sync; each request keeps its own savepoint. Errc::storage, and nothing of the group
  // kept, when it cannot be committed.
  Status batch(const std::function<void()>& work);
  // pay() in its three durable steps, each of which a group of payments can share:
  //   start_payment    quoted -> charging, with the spend (billing's database; nullopt), or the
  //                    receipt of a settlement already paid;
  //   charge           the card charged once through the engine's ledger (the engine's database);
  //   complete_payment records settled, receipt signed, paid (billing's database).
  // A step may start only once the previous step's group is committed: a settlement is durably
  // "charging" before its charge, and the charge is durable before the settlement is "paid".
  // A quote older than quote_ttl() is refused (Errc::stale: relay again).
  Result<std::optional<entitlement::Receipt>> start_payment(std::uint64_t settlement_id, const entitlement::SpendAuthorization& spend,
                                                            std::uint64_t now);
  Status charge(std::uint64_t settlement_id);
  // Re-checks that the records are still unsettled: when another path (a room report) settled
  // them meanwhile, the charge is refunded to the card (once) and the settlement goes back to a
  // quote that can no longer be paid; Errc::stale says so.
  Result<entitlement::Receipt> complete_payment(std::uint64_t settlement_id, std::uint64_t now);

  // Quotes: a quote belongs to the card that relayed for it until it expires. Another card's relay
  // of the same history gets a quote of its own and leaves it alone; the first payment wins and
  // the other quote is then out of date. Expired quotes cannot be paid and are dropped by the next
  // relay. Default 15 minutes.
  static constexpr std::uint64_t kDefaultQuoteTtlSeconds = 15 * 60;
  Status set_quote_ttl(std::uint64_t seconds);
  std::uint64_t quote_ttl();

  // --- F6 hotel ---
  Status set_hotel_credit(const Money& limit);
  Result<Money> hotel_credit();
  // The hotel's name, printed at the head of each folio. Refused when empty or not UTF-8 text.
  Status set_hotel_name(const std::string& name);
  // The name set, else "Hotel (name not set: usher billing hotel config --name)".
  std::string hotel_name();
  Status add_room(const std::string& room, std::uint32_t stb_id, const std::string& link_endpoint);
  std::vector<Room> rooms();
  Result<Room> room(const std::string& room);
  Result<Room> room_of_stb(std::uint32_t stb_id);
  // Opens a stay (refused while the room is occupied) and makes the signed room state that lets
  // the room STB buy, kept pending until the STB has it (mark_state_delivered).
  Result<Stay> check_in(const std::string& room, const std::string& guest_id, const std::string& guest_name, std::uint64_t now);
  // The room's current state for its STB, signed (vacant and/or clear as asked); becomes pending.
  Result<std::vector<std::uint8_t>> room_state(const std::string& room, bool clear, const std::string& billing_endpoint);
  std::optional<std::vector<std::uint8_t>> pending_room_state(const std::string& room);
  void mark_state_delivered(const std::string& room);
  // Closes the stay in `room` (vacant from now on) and returns it.
  Result<Stay> close_stay(const std::string& room, std::uint64_t now);
  Result<Stay> stay(std::uint64_t stay_id);
  std::vector<Stay> stays();
  // A room STB's purchases, each run of records of one stay posted to that stay's folio (and to the
  // PMS outbox); returns the receipts for the STB.
  Result<entitlement::RelayReply> room_report(std::span<const std::uint8_t> sealed_history, std::uint64_t now);

  // --- Statements ---
  Result<Statement> account_statement(const std::string& account);
  Result<Statement> stb_statement(std::uint32_t stb_id);
  Result<Statement> folio(std::uint64_t stay_id);

  // --- PMS outbox (F6) ---
  std::vector<PmsPosting> pms_postings(bool open_only);
  void pms_attempted(std::uint64_t posting_id);
  void pms_answered(std::uint64_t posting_id, bool accepted, const std::string& answer, bool final);
  // The front desk sends a refused posting again (after fixing the guest's record in the PMS).
  Status pms_retry(std::uint64_t posting_id);
  // The PMS link's state, kept by the process running the link; nullopt when no link has run here.
  void record_pms_link(const PmsLinkState& state);
  std::optional<PmsLinkState> pms_link();

  // Sums for checks: money charged to cards for settlements, and records settled per STB.
  std::int64_t settled_minor(std::uint32_t stb_id);
  std::uint64_t settled_sequence(std::uint32_t stb_id);

 private:
  BillingStore(sql::Database db, EngineClient engine, entitlement::BillingCertificate cert, bool certified, Secret<32> sealing_private);
  static Result<BillingStore> create_in(const std::string& home, std::uint32_t billing_id, const entitlement::OperatorPublicFile& op,
                                        const std::string& engine_endpoint);
  Secret<32> signing_private();
  struct Cursor {
    std::uint64_t sequence = 0;
    crypto::Digest hash{};
  };
  Cursor cursor(std::uint32_t stb_id);
  // A relayed history opened with billing's X25519 key (records decrypted; the chain is checked by
  // the caller with verify_history from where it last settled), with the key its STB signs with.
  struct OpenedHistory {
    std::uint32_t stb_id = 0;
    crypto::PublicKey stb_public{};
    std::vector<entitlement::HistoryRecord> records;
  };
  // The one place a relayed history is opened. Errc::not_entitled for a history sealed for another
  // billing or from an STB the operator does not know; Errc::auth_failed when it was altered.
  Result<OpenedHistory> open_sealed(std::span<const std::uint8_t> sealed);
  struct Checked {
    std::uint32_t stb_id = 0;
    std::vector<std::vector<std::uint8_t>> receipts;  // for records already settled
    std::vector<entitlement::HistoryRecord> fresh;    // verified, after the cursor
  };
  Result<Checked> check_history(std::span<const std::uint8_t> sealed);
  // charge() then complete_payment(), each durable before the next.
  Result<entitlement::Receipt> finish(std::uint64_t settlement_id, std::uint64_t now);
  struct OpenSettlement {
    SettlementState state = SettlementState::quoted;
    entitlement::SpendAuthorization spend;  // when charging
    Money amount;
    std::uint32_t stb_id = 0;
    entitlement::SettlementKind kind = entitlement::SettlementKind::deferred;
    std::vector<std::uint8_t> sealed;  // the history relayed (deferred)
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::vector<std::uint8_t> receipt;  // when paid
    std::uint64_t created = 0;
  };
  Result<OpenSettlement> settlement(std::uint64_t settlement_id);
  Result<entitlement::Receipt> settle_records(entitlement::SettlementKind kind, std::uint32_t stb_id,
                                              const std::vector<entitlement::HistoryRecord>& records, const Money& amount,
                                              std::uint64_t card_id, std::uint64_t stay_id, std::uint64_t settlement_id,
                                              std::uint64_t now);
  // Signs `draft` (settlement `draft.receipt_id`) and marks that settlement paid with it.
  entitlement::Receipt issue_receipt(entitlement::Receipt draft, std::uint64_t now);
  // What billing charges for a record: the catalogue's price, or nothing for a record bought on
  // the credit line or a room's folio when the engine already sold the STB a ticket for that event
  // (one sale per entitlement; `reason` then says which ticket).
  Result<Money> price_of(std::uint32_t stb_id, const entitlement::HistoryRecord& r, std::string* reason = nullptr);
  // Errc::stale when a payment by handset for the STB's history is under way (room reports wait).
  Status check_no_payment_under_way(std::uint32_t stb_id);

  sql::Database db_;
  EngineClient engine_;
  // The installed certificate; until one is, an unsigned one naming billing's id and keys.
  entitlement::BillingCertificate certificate_;
  bool certified_ = false;
  std::optional<Secret<32>> signing_private_;
  Secret<32> sealing_private_;  // X25519: opens the histories STBs seal for billing
};

}  // namespace usher::billing
