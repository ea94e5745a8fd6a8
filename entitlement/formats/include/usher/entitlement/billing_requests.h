// Billing's requests to the engine (docs/protocol.md, "Billing's requests"): what a billing service
// needs from the operator's engine to settle histories and print statements, asked over the
// engine's ZeroMQ protocol, so that billing never opens the engine's database and can run on
// another host.
//
// Every such request is signed by a billing the operator certified (the engine keeps each billing
// it certified, with its Ed25519 key), with the same layout as a handset's signed request:
//
//   body      = inner body | u64 billing_id | u64 time (unix s) | 64 signature
//   signature = Ed25519(billing's key, "usher-billing-v1" | u8 type | 16 request id | u64 billing_id |
//                       u64 time | inner body)
//
// The engine refuses an unknown billing or a bad signature (auth_failed), a time more than
// kRequestWindowSeconds from its clock (stale), and answers a charge or refund whose request id it
// has seen from that billing with the first answer (the request id is the once-only nonce). A
// settlement's charge and its refund run under billing's own request ids (derived from the
// settlement and the spend) through the engine's once(): billing retrying after a crash or a lost
// reply gets the first answer, and the card is charged once.
//
//   EngineClient (billing/) builds these; EngineService answers them (engine side).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/protocol.h"

namespace usher::entitlement {

// Signs `inner` as billing `billing_id` (the layout above).
std::vector<std::uint8_t> sign_billing_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner,
                                               std::uint32_t billing_id, std::uint64_t time, const Secret<32>& billing_private);
// Checks a billing-signed body's signature (split with split_signed: its card_id is the billing id).
bool verify_billing_request(std::uint8_t type, const RequestId& id, std::span<const std::uint8_t> inner, std::uint64_t billing_id,
                            std::uint64_t time, const crypto::Signature& signature, const crypto::PublicKey& billing_public);
// What the engine keeps a billing request's reply under: billing id and request id (the nonce).
crypto::Digest billing_replay_key(std::uint64_t billing_id, const RequestId& id);

// Bodies of the billing requests (MessageType::billing_*), each with its decoder (fuzzed).

// billing_holding: u32 stb_id | u32 event_id -> u8 held | u64 ticket_id | u64 impulse_sequence
struct HoldingQuery {
  std::uint32_t stb_id = 0;
  std::uint32_t event_id = 0;
};
std::vector<std::uint8_t> encode(const HoldingQuery& q);
Result<HoldingQuery> decode_holding_query(std::span<const std::uint8_t> body);
struct HoldingReply {
  bool held = false;
  std::uint64_t ticket_id = 0;
  std::uint64_t impulse_sequence = 0;
};
std::vector<std::uint8_t> encode(const HoldingReply& r);
Result<HoldingReply> decode_holding_reply(std::span<const std::uint8_t> body);

// billing_impulse_purchases: u32 stb_id | u16 count | (u32 event_id | u64 sequence) each -> u16 count
struct ImpulsePurchases {
  std::uint32_t stb_id = 0;
  struct Entry {
    std::uint32_t event_id = 0;
    std::uint64_t sequence = 0;
  };
  std::vector<Entry> entries;
};
std::vector<std::uint8_t> encode(const ImpulsePurchases& q);
Result<ImpulsePurchases> decode_impulse_purchases(std::span<const std::uint8_t> body);

// billing_charge: blob spend authorization | money amount | text payee -> money balance
struct SettlementCharge {
  SpendAuthorization spend;
  Money amount;
  std::string payee;
};
std::vector<std::uint8_t> encode(const SettlementCharge& q);
Result<SettlementCharge> decode_settlement_charge(std::span<const std::uint8_t> body);

// billing_refund: u64 card_id | money amount | text payee -> money balance
struct SettlementRefund {
  std::uint64_t card_id = 0;
  Money amount;
  std::string payee;
};
std::vector<std::uint8_t> encode(const SettlementRefund& q);
Result<SettlementRefund> decode_settlement_refund(std::span<const std::uint8_t> body);

// billing_ticket_payments: u32 stb_id -> u16 count | (u64 ticket_id | u8 kind | text title |
// u32 event_id | u64 time | money amount) each; kind as LedgerEntryKind's stored order: 1 ppv,
// 2 pass, 3 refund.
struct TicketPaymentLine {
  std::uint64_t ticket_id = 0;
  std::uint8_t kind = 0;  // 1 ppv, 2 pass, 3 refund
  std::string title;
  std::uint32_t event_id = 0;
  std::uint64_t time = 0;
  Money amount;
};
std::vector<std::uint8_t> encode(const std::vector<TicketPaymentLine>& lines);
Result<std::vector<TicketPaymentLine>> decode_ticket_payment_lines(std::span<const std::uint8_t> body);

// Single-field bodies: u32 (billing_event, billing_stb_key, billing_ticket_payments), u64
// (billing_card), text (billing_account_stbs).
std::vector<std::uint8_t> encode_u32(std::uint32_t v);
Result<std::uint32_t> decode_u32(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_u64(std::uint64_t v);
Result<std::uint64_t> decode_u64(std::span<const std::uint8_t> body);
std::vector<std::uint8_t> encode_text(const std::string& s);
Result<std::string> decode_text(std::span<const std::uint8_t> body);
// account STB lists: u16 count | u32 stb_id each
std::vector<std::uint8_t> encode_stb_ids(const std::vector<std::uint32_t>& ids);
Result<std::vector<std::uint32_t>> decode_stb_ids(std::span<const std::uint8_t> body);

}  // namespace usher::entitlement
