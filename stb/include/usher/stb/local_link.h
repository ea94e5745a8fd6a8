// LocalLink: the STB's side of the short-range link to a handset (Bluetooth, NFC or a QR code in a
// product; ZeroMQ on ipc:// or loopback here, served by `usher stb link`). It answers framed
// requests (entitlement::LinkMessage): a ticket's EMM handed over by anyone (it is sealed for this
// STB), a room state signed by billing, and, only to a handset paired with the code the STB shows
// (or to billing, certified by the operator), its delivery acks, its viewing history and receipts
// for it (entitlement/link_auth.h). The history is sealed for the billing whose certificate comes
// with the request (the handset relays billing's; billing shows its own), checked and kept.
//
//   LocalLink link(se, home);       // shows (logs, and writes to home/pairing-code) a pairing code
//   auto reply = link.handle(request_bytes);
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/log.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/secure_element.h"
#include "usher/stb/shown_code.h"

namespace usher::stb {

class LocalLink {
 public:
  static constexpr const char* kPairingCodeName = stb::kPairingCodeName;  // in its home (shown_code.h)
  static constexpr const char* kDatabaseName = "link.db";  // the handsets paired with this STB

  // Opens (or creates) the paired handsets' store in `home`, bringing its schema forward, and
  // shows a first pairing code. Throws std::runtime_error when the store cannot be opened or was
  // written by a newer Usher (then it is left untouched).
  LocalLink(SecureElement& se, const std::string& home);
  // The numbered steps of link.db's schema (docs/architecture.md, "Schema versions").
  static const sql::Schema& schema();
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);
  // The code a handset pairs with now (what the STB shows).
  [[nodiscard]] const std::string& pairing_code() const { return code_; }
  [[nodiscard]] std::size_t paired_handsets();

 private:
  std::vector<std::uint8_t> pair(const entitlement::Frame& frame);
  // The signed requests: checked (signer, signature, time), answered once.
  std::vector<std::uint8_t> signed_request(const entitlement::Frame& frame);
  // `billing_signer`: billing's certificate when billing signed the request (a hotel's billing
  // collecting a room STB's history), else empty.
  std::vector<std::uint8_t> serve(const entitlement::Frame& frame, std::span<const std::uint8_t> body,
                                  std::span<const std::uint8_t> billing_signer = {});
  void show_new_code();

  SecureElement& se_;
  std::string home_;
  sql::Database db_;
  std::string code_;
  int failed_attempts_ = 0;
  // Replies to signed requests, kept while the request is within the time window.
  std::map<crypto::Digest, std::pair<std::uint64_t, std::vector<std::uint8_t>>> answered_;
  Logger log_{"stb"};
};

}  // namespace usher::stb
