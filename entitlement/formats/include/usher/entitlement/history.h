// The STB's viewing history (flow F4): one record per impulse purchase, signed by the STB's secure
// element (Ed25519) and hash-chained: each record names its sequence number and the hash of the
// record before it, so that billing can tell a gap, a reordering, a replay or an alteration.
//
//   record  = "usher-hist-v1" | u32 stb_id | u64 sequence (from 1) | u64 time | u32 event_id |
//             u16 service_id | u64 price (minor units) | 3 currency | u8 payment | u64 stay_id |
//             32 previous hash
//   payment = 0 on the STB's credit line (settled later, deferred or to a hotel folio),
//             1 from credit prepaid into the STB ([0269] prepayment)
//   stay_id = the hotel stay the room was occupied by (0 outside hotels)
//   hash    = SHA-256(record | signature); the first record's previous hash is 32 zero bytes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/entitlement/assets.h"

namespace usher::entitlement {

inline constexpr std::uint8_t kPaymentCredit = 0;
inline constexpr std::uint8_t kPaymentPrepaid = 1;

struct HistoryRecord {
  std::uint32_t stb_id = 0;
  std::uint64_t sequence = 0;
  std::uint64_t time = 0;
  std::uint32_t event_id = 0;
  std::uint16_t service_id = 0;
  Money price;
  std::uint8_t payment = 0;  // kPaymentCredit or kPaymentPrepaid
  std::uint64_t stay_id = 0;
  crypto::Digest previous{};
  crypto::Signature signature{};

  [[nodiscard]] std::vector<std::uint8_t> signed_part() const;
  [[nodiscard]] std::vector<std::uint8_t> encode() const;
  static Result<HistoryRecord> decode(std::span<const std::uint8_t> bytes);
  [[nodiscard]] crypto::Digest hash() const;
  void sign(const Secret<32>& stb_private);
};

// Checks a run of records from one STB: signatures, contiguous sequence numbers starting after
// `after_sequence`, and each previous hash (the first against `after_hash`). Errc::auth_failed for
// a bad signature or a broken chain, Errc::stale for a gap or reordering.
Status verify_history(std::span<const HistoryRecord> records, const crypto::PublicKey& stb_public,
                      std::uint64_t after_sequence, const crypto::Digest& after_hash);

// The STB's unsettled history as the handset (or a hotel room STB itself) carries it to billing:
// sealed for billing's X25519 key, taken from billing's certificate (settlement.h), so that only
// that billing can read it and the handset can neither read nor alter it. The operator's keys play
// no part: nothing outside the engine derives an STB's EMM key.
//
//   header = u8 version 2 | u32 stb_id | u32 billing_id | 32 ephemeral X25519 public | 12 nonce
//   sealed = header | AES-256-GCM(key, nonce, aad = header; u16 count, then u16 length + record each)
//            | 16 tag
//   key    = HKDF-SHA256(ikm  = X25519(ephemeral private, billing's X25519 public),
//                        salt = "usher-history-v2",
//                        info = "usher-history-v2" | u32 stb_id | u32 billing_id | 32 ephemeral public |
//                               32 billing's X25519 public)
//
// The STB makes a new ephemeral key pair for every seal and forgets its private half at once. The
// records inside stay signed by the STB (Ed25519): billing checks them with verify_history, so a
// handset cannot make up a history even though anyone can seal for billing's public key.
// Version 1 (sealed under a key derived from the STB's EMM key, which only the operator could open)
// is refused.
inline constexpr std::uint8_t kSealedHistoryVersion = 2;

struct SealedHistoryHeader {
  std::uint32_t stb_id = 0;
  std::uint32_t billing_id = 0;  // the billing it is sealed for
  crypto::PublicKey ephemeral{};
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonce{};
};

std::vector<std::uint8_t> seal_history(std::span<const HistoryRecord> records, std::uint32_t stb_id, std::uint32_t billing_id,
                                       const crypto::PublicKey& billing_x25519);
// The clear header (authenticated when the history is opened): the STB it comes from and the
// billing it is for. Errc::malformed for a truncated header or another version.
Result<SealedHistoryHeader> sealed_history_header(std::span<const std::uint8_t> sealed);
Result<std::uint32_t> sealed_history_stb(std::span<const std::uint8_t> sealed);
// Opens a history as billing `billing_id` with its X25519 private key. Errc::not_entitled when it is
// sealed for another billing; Errc::auth_failed when anything (header included) was altered or it
// was sealed for another key.
Result<std::vector<HistoryRecord>> open_history(std::span<const std::uint8_t> sealed, std::uint32_t billing_id,
                                                const Secret<32>& billing_x25519_private);
// The sealed part once opened (u16 count, then u16 length + record each), every record of STB
// `stb_id`. open_history ends with it; the fuzz targets reach it directly.
Result<std::vector<HistoryRecord>> decode_history_records(std::span<const std::uint8_t> plain, std::uint32_t stb_id);

}  // namespace usher::entitlement
