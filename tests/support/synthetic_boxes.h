// Synthetic set-top boxes for tests, benchmarks and simulations of many boxes: real X25519 and
// Ed25519 key pairs, derived from a seed and the box's id (SHA-256 of both as each private key),
// so that a million boxes cost two scalar multiplications each instead of two key generations and
// a simulation can rebuild any box's private keys from its id alone. Never for real boxes.
//
//   auto row = usher::testing::synthetic_box(1001);        // what an SMS export would hold
//   std::string line = usher::testing::box_file_line(row); // "1001,<x25519 hex>,<ed25519 hex>"
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/hex.h"
#include "usher/entitlement/store.h"

namespace usher::testing {

struct SyntheticBoxKeys {
  Key256 x25519_private;
  Key256 ed25519_private;
};

inline Key256 synthetic_private(std::string_view seed, char kind, std::uint32_t stb_id) {
  std::vector<std::uint8_t> input(seed.begin(), seed.end());
  input.push_back(static_cast<std::uint8_t>(kind));
  for (int shift = 24; shift >= 0; shift -= 8) input.push_back(static_cast<std::uint8_t>(stb_id >> shift));
  const auto digest = crypto::sha256(input);
  return Key256(std::span<const std::uint8_t, 32>(digest.data(), 32));
}

// The private keys of synthetic box `stb_id` (what its secure element would hold).
inline SyntheticBoxKeys synthetic_box_keys(std::uint32_t stb_id, std::string_view seed = "usher-simulation") {
  return {synthetic_private(seed, 'x', stb_id), synthetic_private(seed, 'e', stb_id)};
}

// Box `stb_id` as a subscriber-management system exports it: id and public keys.
inline entitlement::StbRow synthetic_box(std::uint32_t stb_id, std::string_view seed = "usher-simulation", std::string account = "") {
  const auto keys = synthetic_box_keys(stb_id, seed);
  entitlement::StbRow row;
  row.stb = {stb_id, crypto::x25519_public(keys.x25519_private), crypto::ed25519_public(keys.ed25519_private)};
  row.account = std::move(account);
  return row;
}

// The row as a CSV line of a box file (docs/provisioning.md), without the line end.
inline std::string box_file_line(const entitlement::StbRow& row) {
  std::string line = std::to_string(row.stb.stb_id) + "," + to_hex(row.stb.x25519_public) + "," + to_hex(row.stb.ed25519_public);
  if (!row.account.empty()) line += "," + row.account;
  return line;
}

}  // namespace usher::testing
