// The entitlement engine's network protocol (docs/protocol.md): versioned binary request/reply
// frames, each request with a 16-byte id. A retried request (same id) gets the same reply and has
// no second effect. These are the frames and bodies every part shares (usher_formats); the engine's
// side, EngineService, is in engine_service.h (usher_engine).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/catalogue.h"

namespace usher::entitlement {

inline constexpr std::uint8_t kProtocolVersion = 1;

// What each service accepts per request (docs/protocol.md, "Limits"). The engine's largest request
// is a relay of delivery acks (98 bytes each: 2,600 fit); the local link's is an EMM section (at
// most 4 KiB). Billing's is in billing_service.h. A larger frame is refused by ZeroMQ before
// anything is allocated for it.
inline constexpr net::ServerLimits kEngineServerLimits{256 * 1024, 64};
inline constexpr net::ServerLimits kLinkServerLimits{64 * 1024, 16};
using RequestId = std::array<std::uint8_t, 16>;
RequestId new_request_id();

enum class MessageType : std::uint8_t {
  list_events = 1,
  register_handset = 2,  // signed by the key it registers (request_auth.h)
  top_up = 3,            // signed by the card's handset
  balance = 4,           // signed by the card's handset
  buy_ticket = 5,
  headend_keys = 6,   // u32 headend_id -> blob sealed key bundle, u64 EMM budget in bit/s (0: none set)
  emm_carousel = 7,   // (empty) -> u32 count, blob section each
  buy_by_code = 8,    // text request code, blob spend authorization -> as buy_ticket
  delivery_acks = 9,  // u16 count, blob DeliveryAck each -> u16 count, u64 ticket id each (now confirmed)
  ticket_status = 10, // signed; u16 count, u64 ticket id each -> per id: u8 status (0 valid, 1 revoked, 2 unknown or
                      // not the signer's), u64 delivered
  account_stbs = 11,  // signed; text account -> u16 count, u32 stb_id each
  buy_pass = 12,      // u16 service_id, u16 days, u32 stb_id, blob spend authorization -> as buy_ticket
  pass_price = 13,    // u16 service_id -> money per day
  // Billing's requests, each signed by a billing the operator certified (billing_requests.h).
  billing_event = 14,              // u32 event_id -> one event, as in list_events (count 1)
  billing_stb_key = 15,            // u32 stb_id -> 32 the STB's Ed25519 key (not_found: no such STB)
  billing_card = 16,               // u64 card_id -> blob the card's certificate (its handset's key)
  billing_holding = 17,            // HoldingQuery -> HoldingReply
  billing_impulse_purchases = 18,  // ImpulsePurchases -> u16 count told
  billing_charge = 19,             // SettlementCharge -> money balance; once per request id
  billing_refund = 20,             // SettlementRefund -> money balance; once per request id
  billing_ticket_payments = 21,    // u32 stb_id -> TicketPaymentLine list
  billing_account_stbs = 22,       // text account -> u16 count, u32 stb_id each
  // 23 was billing_open_history (the engine opening relayed histories for billing with EMM-derived
  // keys) until billing held an X25519 key of its own: now unknown, and not to be reused.
  emm_changes = 24,  // u64 cursor (0: from the start) -> EmmFeedPage (what the EMM queue gained and lost since)
};

// The local link between a handset and an STB uses the same frames with these types.
enum class LinkMessage : std::uint8_t {
  deliver_emm = 1,   // body: an EMM section (a ticket) -> ok once stored
  collect_acks = 2,  // (empty) -> u16 count, blob DeliveryAck each
  acks_relayed = 3,  // u16 count, u64 ticket id each -> ok
  collect_history = 4,  // (empty, or billing's certificate to seal for) -> the unsettled viewing history, sealed for billing (history.h)
  apply_receipt = 5,    // blob Receipt (settlement.h) -> u64 records settled
  room_state = 6,       // blob RoomState (settlement.h) -> ok
  pair = 7,             // PairRequest (link_auth.h) -> u32 stb_id, 32 proof
};

struct Frame {
  std::uint8_t type_or_status = 0;  // request: MessageType; reply: 0 ok, else 1 + Errc
  RequestId id{};
  std::vector<std::uint8_t> body;
};

std::vector<std::uint8_t> encode_request(MessageType type, const RequestId& id, std::span<const std::uint8_t> body);
Result<Frame> decode_frame(std::span<const std::uint8_t> bytes);
std::vector<std::uint8_t> encode_ok(const RequestId& id, std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_error(const RequestId& id, const Error& error);
// Reads a reply: the body when ok, the server's error otherwise.
Result<std::vector<std::uint8_t>> reply_body(std::span<const std::uint8_t> reply, const RequestId& expected_id);

// Sends one framed request (`type`: a MessageType, LinkMessage or BillingMessage value) with a fresh
// id, which the client's retries reuse, and returns the reply's body or the server's error.
Result<std::vector<std::uint8_t>> call_framed(net::RequestClient& client, std::uint8_t type, std::span<const std::uint8_t> body);

// Bodies.
struct BuyTicketRequest {
  std::uint32_t event_id = 0;
  std::uint32_t stb_id = 0;
  SpendAuthorization spend;
  std::uint64_t deliver_at = 0;  // F5: broadcast delivery from this time (0 = at once)
};
struct BuyByCodeRequest {
  std::string code;
  SpendAuthorization spend;
};
std::vector<std::uint8_t> encode(const BuyByCodeRequest& r);
Result<BuyByCodeRequest> decode_buy_by_code(std::span<const std::uint8_t> body);

struct BuyPassRequest {
  std::uint16_t service_id = 0;
  std::uint16_t days = 0;
  std::uint32_t stb_id = 0;
  SpendAuthorization spend;
};
std::vector<std::uint8_t> encode(const BuyPassRequest& r);
Result<BuyPassRequest> decode_buy_pass(std::span<const std::uint8_t> body);

struct BuyTicketReply {
  std::vector<std::uint8_t> ticket;       // Ticket::encode()
  std::vector<std::uint8_t> emm_section;  // for the STB, over the local link
  Money balance;
};
struct RegisterHandsetRequest {
  crypto::PublicKey handset_public{};
  std::string account;
  Currency currency{};
};
struct RegisterHandsetReply {
  std::uint64_t card_id = 0;
  Money balance;
  PrepaidCardCertificate certificate;
};
std::vector<std::uint8_t> encode(const RegisterHandsetReply& r);
Result<RegisterHandsetReply> decode_register_handset_reply(std::span<const std::uint8_t> body);

struct TopUpRequest {
  std::uint64_t card_id = 0;
  std::int64_t amount_minor = 0;
  std::string funding_reference;
};

std::vector<std::uint8_t> encode(const BuyTicketRequest& r);
Result<BuyTicketRequest> decode_buy_ticket(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode(const BuyTicketReply& r);
Result<BuyTicketReply> decode_buy_ticket_reply(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode(const RegisterHandsetRequest& r);
Result<RegisterHandsetRequest> decode_register_handset(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode(const TopUpRequest& r);
Result<TopUpRequest> decode_top_up(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_money(const Money& m);
Result<Money> decode_money(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_card(std::uint64_t card_id, const Money& balance);
Result<std::pair<std::uint64_t, Money>> decode_card(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_events(const std::vector<EventInfo>& events);
std::vector<std::uint8_t> encode_blobs(const std::vector<std::vector<std::uint8_t>>& blobs);
Result<std::vector<std::vector<std::uint8_t>>> decode_blobs(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_ids(const std::vector<std::uint64_t>& ids);
Result<std::vector<std::uint64_t>> decode_ids(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_sections(const std::vector<std::vector<std::uint8_t>>& sections);
Result<std::vector<std::vector<std::uint8_t>>> decode_sections(std::span<const std::uint8_t> body);
Result<std::vector<EventInfo>> decode_events(std::span<const std::uint8_t> body);

// --- The EMM feed (emm_changes): a headend follows the engine's EMM queue by a cursor ---
//
// Every entry added to or removed from the queue gets the next change number of the store, drawn
// inside the write transaction that makes the change: change numbers are in commit order, with no
// gap a reader could skip. A headend keeps the cursor of the last page it applied and asks for what
// changed after it; a page is bounded (kEmmFeedMaxEntries, kEmmFeedMaxBytes) and says when more is
// waiting. docs/protocol.md, "The EMM feed".

// How soon an EMM must go out. The scheduler sends queued entries in this order before the carousel.
enum class EmmPriority : std::uint8_t {
  urgent = 0,      // revocations, new grants, tickets, credit lines
  renewal = 1,     // renewals, key rotations, event offers
  background = 2,  // the rest: carousel only
};
inline constexpr std::uint8_t kEmmPriorityLast = 2;

struct EmmFeedEntry {
  std::uint64_t id = 0;  // the queue entry's id: removals name it
  EmmPriority priority = EmmPriority::background;
  std::uint64_t carousel_from = 0;   // unix seconds: repeated from then...
  std::uint64_t carousel_until = 0;  // ...until then (inclusive)
  std::vector<std::uint8_t> section;
};

struct EmmFeedPage {
  std::uint64_t next_cursor = 0;  // ask from here next time
  bool more = false;              // more is waiting after this page: ask again at once
  // The cursor asked for was older than the removals the engine still keeps: this page starts
  // from the beginning, and the caller drops what it held before applying it.
  bool restart = false;
  std::vector<EmmFeedEntry> added;
  std::vector<std::uint64_t> removed;
};
// A page costs the engine's one thread about what a few purchases do (they wait behind it), and a
// headend catching up takes as many pages as it needs, one after the other.
inline constexpr std::size_t kEmmFeedMaxEntries = 2000;
inline constexpr std::size_t kEmmFeedMaxBytes = 256 * 1024;  // sections, in a page (one section more at most)

std::vector<std::uint8_t> encode_emm_changes_request(std::uint64_t cursor);
Result<std::uint64_t> decode_emm_changes_request(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode(const EmmFeedPage& page);
Result<EmmFeedPage> decode_emm_feed_page(std::span<const std::uint8_t> body);

}  // namespace usher::entitlement
