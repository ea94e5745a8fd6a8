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

// The STB's unsettled history as the handset carries it to billing: sealed (AES-256-GCM) under a
// key only that STB and the operator share, so the handset can neither read nor alter it.
//   u8 version 1 | u32 stb_id | 12 nonce | sealed(u16 count, then u16 length + record each) | tag
Key256 history_key(const Key256& emm_key);
std::vector<std::uint8_t> seal_history(std::span<const HistoryRecord> records, std::uint32_t stb_id, const Key256& key);
// The STB a sealed history comes from (clear, authenticated), to pick the key.
Result<std::uint32_t> sealed_history_stb(std::span<const std::uint8_t> sealed);
Result<std::vector<HistoryRecord>> open_history(std::span<const std::uint8_t> sealed, const Key256& key);

}  // namespace usher::entitlement
