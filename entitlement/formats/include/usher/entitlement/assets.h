// Electronic assets of the entitlement engine, after the seed's layering ([0276]-[0286]):
//
//  - Ticket: the right of one STB (the holder binding is inside the signed part) to watch one PPV
//    event within a window. Signed by the engine (Ed25519) over a canonical, versioned encoding of
//    its display part (type, ids, title, times, transferable, issuer and provider ids). Its status
//    (valid, used, revoked) lives with whoever holds it: the engine and the STB.
//  - SpendAuthorization: what a handset signs to pay from its prepaid card: card, amount and
//    currency, payee, and a nonce that the engine's ledger accepts once.
//
// Each verifies offline with the signer's public key.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"

namespace usher::entitlement {

// An ISO 4217 alphabetic code, e.g. "EUR". Money is always minor units plus this.
using Currency = std::array<char, 3>;
Result<Currency> parse_currency(const std::string& text);
std::string to_string(const Currency& c);

struct Money {
  std::int64_t minor = 0;
  Currency currency{'X', 'X', 'X'};
};
std::string format_money(const Money& m);  // "12.50 EUR" (two decimals: all currencies we price in)
// Parses "12", "12.5" or "12.50" into minor units (1250); refuses negatives and more than 2 decimals.
Result<std::int64_t> parse_amount(const std::string& text);

inline constexpr std::uint8_t kAssetVersion = 1;
inline constexpr std::uint8_t kAssetTypePpvTicket = 1;    // one PPV event
inline constexpr std::uint8_t kAssetTypeServicePass = 2;  // a service for a period (event_id 0)
inline constexpr std::uint8_t kAssetTypePrepaidCard = 3;

struct Ticket {
  std::uint8_t type = kAssetTypePpvTicket;
  std::uint64_t ticket_id = 0;
  std::uint32_t event_id = 0;
  std::uint16_t service_id = 0;
  std::uint32_t stb_id = 0;          // holder binding
  std::uint64_t valid_from = 0;      // unix seconds, judged against ECM broadcast time
  std::uint64_t valid_until = 0;
  std::uint64_t issued = 0;
  bool transferable = false;
  std::string title;
  std::uint32_t issuer_id = 0;
  std::uint32_t provider_id = 0;     // the CA_system_id of the operator
  crypto::Signature signature{};

  // The canonical bytes the signature covers.
  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;  // signed part || signature
  static Result<Ticket> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& issuer_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& issuer_public) const;
};

// The payee string a handset signs for buying event `event_id` for STB `stb_id`.
std::string payee_for(std::uint32_t event_id, std::uint32_t stb_id);
// ... and for a pass to `service_id` for `days` days.
std::string pass_payee_for(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id);

struct SpendAuthorization {
  std::uint64_t card_id = 0;
  Money amount;
  std::string payee;                      // e.g. "ppv:event=7:stb=1001"
  std::array<std::uint8_t, 16> nonce{};
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<SpendAuthorization> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& handset_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& handset_public) const;
};

// A prepaid card's certificate, signed by the engine as issuer when it issues the card: which card,
// held by which handset key, in which currency. The balance is not in it: the engine's ledger is
// authoritative for money; the certificate proves the holder binding offline.
struct PrepaidCardCertificate {
  std::uint64_t card_id = 0;
  crypto::PublicKey holder_public{};
  Currency currency{'X', 'X', 'X'};
  std::uint64_t issued = 0;
  std::uint32_t issuer_id = 0;
  std::uint32_t provider_id = 0;
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<PrepaidCardCertificate> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& issuer_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& issuer_public) const;
};

// What an STB signs (Ed25519, its own key) when it has stored a ticket. The STB's owner's handset
// relays it to the engine, so that the buyer of a gift sees it delivered ([0190]).
struct DeliveryAck {
  std::uint64_t ticket_id = 0;
  std::uint32_t stb_id = 0;
  std::uint64_t stored = 0;  // unix seconds
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<DeliveryAck> decode(std::span<const std::uint8_t> bytes);
  void sign(const Secret<32>& stb_private);
  [[nodiscard]] bool verify(const crypto::PublicKey& stb_public) const;
};

}  // namespace usher::entitlement
