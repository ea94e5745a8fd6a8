// Objects billing signs (flows F4 and F6), verified offline by the STB:
//
//  - BillingCertificate: billing's Ed25519 key (receipts, room states, link requests) and, from
//    version 2, its X25519 key (what STBs seal their history for), signed by the operator's issuing
//    key (the one that signs tickets, which every STB already trusts). An STB needs no other
//    configuration to check a receipt or to seal its history for billing.
//      v1 = u8 1 | u32 billing_id | 32 ed25519 | u64 issued | 64 signature
//      v2 = u8 2 | u32 billing_id | 32 ed25519 | 32 x25519 | u64 issued | 64 signature
//    A v1 certificate (billing certified before it had an X25519 key) still decodes and still
//    vouches for receipts; sealing_key() refuses it with a message saying what to do.
//  - Receipt: what billing returns for a settlement. For a deferred (F4) or folio (F6) settlement it
//    covers exactly the history records first..last of one STB, naming the last one's hash, so it
//    cannot be stretched to other records; for a prepayment it credits the STB with an amount.
//  - RoomState: billing's word to a hotel room's STB: occupied by which stay (with a credit limit) or
//    vacant, and whether to clear the last guest's tickets and history. A counter orders them.
//
// Every object: canonical big-endian encoding, a version byte, then the signature over the rest.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/entitlement/assets.h"

namespace usher::entitlement {

struct BillingCertificate {
  static constexpr std::uint8_t kVersionSigningOnly = 1;
  static constexpr std::uint8_t kVersionWithSealing = 2;

  std::uint8_t version = kVersionWithSealing;
  std::uint32_t billing_id = 0;
  crypto::PublicKey billing_public{};  // Ed25519
  crypto::PublicKey billing_x25519{};  // X25519, version 2 only (zero in version 1)
  std::uint64_t issued = 0;
  crypto::Signature signature{};  // by the operator's issuing key

  // Billing's X25519 key, for sealing a history to it. Errc::not_entitled for a version 1
  // certificate, which carries none.
  [[nodiscard]] Result<crypto::PublicKey> sealing_key() const;

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<BillingCertificate> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& issuer_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& issuer_public) const;
};

enum class SettlementKind : std::uint8_t {
  deferred = 1,    // history records paid with a prepaid card through the handset (F4)
  prepayment = 2,  // credit bought ahead and loaded into the STB ([0269])
  folio = 3,       // history records posted to a hotel guest's folio (F6)
};
const char* to_string(SettlementKind kind);

struct Receipt {
  SettlementKind kind = SettlementKind::deferred;
  std::uint64_t receipt_id = 0;  // billing's settlement id
  std::uint32_t stb_id = 0;
  std::uint64_t first_sequence = 0;  // 0 for a prepayment
  std::uint64_t last_sequence = 0;
  crypto::Digest last_hash{};        // hash of record last_sequence
  Money amount;                      // charged (deferred), credited (prepayment) or posted (folio)
  std::uint64_t card_id = 0;         // the card that paid, 0 for a folio
  std::uint64_t stay_id = 0;         // the hotel stay of a folio settlement
  std::uint64_t issued = 0;
  BillingCertificate certificate;
  crypto::Signature signature{};     // by certificate.billing_public

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<Receipt> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& billing_private);
  // The certificate against the operator's issuing key, then the receipt against the certificate.
  [[nodiscard]] bool verify(const crypto::PublicKey& issuer_public) const;
};

struct RoomState {
  std::uint32_t stb_id = 0;
  std::uint64_t counter = 0;    // strictly increasing per STB: an older state replayed is refused
  std::uint64_t stay_id = 0;    // 0: the room is vacant and cannot buy
  Money credit_limit;           // what the guest may buy on the room before it is collected
  bool clear = false;           // clear the last guest's tickets and history
  std::string billing_endpoint; // where the STB reports its purchases
  BillingCertificate certificate;
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<RoomState> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& billing_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& issuer_public) const;
};

// Billing's network protocol (the frames of protocol.h, with these types).
enum class BillingMessage : std::uint8_t {
  relay = 1,        // blob sealed history, u64 card_id -> RelayReply
  pay = 2,          // u64 settlement_id, blob SpendAuthorization -> blob Receipt
  prepay = 3,       // u32 stb_id, money amount, u64 card_id -> RelayReply (a quote only)
  room_report = 4,  // blob sealed history (a hotel room STB) -> RelayReply (receipts only)
  certificate = 5,  // (empty) -> BillingCertificate: public, handed to anyone (the handset relays
                    // it to the STB, which seals its history for it)
};

// The payee string a handset signs to pay settlement `settlement_id` for STB `stb_id`.
std::string settlement_payee(std::uint64_t settlement_id, std::uint32_t stb_id);

struct Quote {
  std::uint64_t settlement_id = 0;
  SettlementKind kind = SettlementKind::deferred;
  std::uint32_t stb_id = 0;
  Money amount;
  std::uint64_t first_sequence = 0;
  std::uint64_t last_sequence = 0;
  std::string payee;
};

// Billing's answer to a relay: receipts already issued for records the STB still holds as unsettled
// (a lost receipt, handed back), and, when there is something new to pay, a quote.
struct RelayReply {
  std::vector<std::vector<std::uint8_t>> receipts;
  bool has_quote = false;
  Quote quote;
};
std::vector<std::uint8_t> encode(const RelayReply& r);
Result<RelayReply> decode_relay_reply(std::span<const std::uint8_t> body);

struct RelayRequest {
  std::vector<std::uint8_t> sealed_history;
  std::uint64_t card_id = 0;
};
std::vector<std::uint8_t> encode(const RelayRequest& r);
Result<RelayRequest> decode_relay_request(std::span<const std::uint8_t> body);

struct PayRequest {
  std::uint64_t settlement_id = 0;
  SpendAuthorization spend;
};
std::vector<std::uint8_t> encode(const PayRequest& r);
Result<PayRequest> decode_pay_request(std::span<const std::uint8_t> body);

struct PrepayRequest {
  std::uint32_t stb_id = 0;
  Money amount;
  std::uint64_t card_id = 0;
};
std::vector<std::uint8_t> encode(const PrepayRequest& r);
Result<PrepayRequest> decode_prepay_request(std::span<const std::uint8_t> body);

}  // namespace usher::entitlement
