// EntitlementStore: the operator's catalogue, devices, grants and EMM queue, in one SQLite file
// under the operator's home directory (entitlement.db, created mode 0600: it holds the operator's
// private key and the service keys).
//
//   auto store = EntitlementStore::create("usher-data/entitlement", kDefaultCaSystemId).value();
//   store.add_service(1, "News");
//   store.register_stb(1001, stb_x25519_public, stb_ed25519_public);
//   store.grant(1001, 1, now, now + 30 * 86400);   // queues an EMM for STB 1001
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/messages.h"

namespace usher::entitlement {

struct ServiceInfo {
  std::uint16_t service_id = 0;
  std::string name;
  std::uint16_t key_version = 0;
};

struct ServiceKey {
  std::uint16_t key_version = 0;
  Key256 key;
};

struct StbInfo {
  std::uint32_t stb_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};
};

struct GrantInfo {
  std::uint32_t stb_id = 0;
  std::uint16_t service_id = 0;
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  bool revoked = false;
};

// The public identity file an STB writes at `usher stb init` and the operator imports.
struct StbPublicFile {
  std::uint32_t stb_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};
  static Result<StbPublicFile> read(const std::string& path);
  Status write(const std::string& path) const;
};

class EntitlementStore {
 public:
  static constexpr const char* kDatabaseName = "entitlement.db";
  static constexpr const char* kOperatorPublicName = "operator.pub";

  // Creates the home directory and a new operator (fails with already_exists if there is one).
  static Result<EntitlementStore> create(const std::string& home, std::uint16_t ca_system_id);
  static Result<EntitlementStore> open(const std::string& home);

  [[nodiscard]] std::uint16_t ca_system_id() const { return ca_system_id_; }
  [[nodiscard]] const crypto::PublicKey& operator_public() const { return operator_public_; }

  Result<ServiceInfo> add_service(std::uint16_t service_id, const std::string& name);
  std::vector<ServiceInfo> services();
  Result<ServiceKey> service_key(std::uint16_t service_id);

  Status register_stb(const StbInfo& stb);
  std::vector<StbInfo> stbs();

  // Grants a service to an STB for [not_before, not_after] and queues the EMM that carries it.
  Status grant(std::uint32_t stb_id, std::uint16_t service_id, std::uint64_t not_before, std::uint64_t not_after);
  Status revoke(std::uint32_t stb_id, std::uint16_t service_id);
  std::vector<GrantInfo> grants();

  // EMM sections to carousel at `now` (unix seconds), oldest first.
  std::vector<std::vector<std::uint8_t>> emm_sections(std::uint64_t now);

 private:
  EntitlementStore(sql::Database db, std::uint16_t ca_system_id, crypto::PublicKey op_public)
      : db_(std::move(db)), ca_system_id_(ca_system_id), operator_public_(op_public) {}
  static void create_schema(sql::Database& db);
  Status queue_emm(std::uint32_t stb_id, std::vector<EmmItem> items, std::uint64_t carousel_until);
  Secret<32> operator_private();

  sql::Database db_;
  std::uint16_t ca_system_id_;
  crypto::PublicKey operator_public_;
};

// Reads an operator.pub file (hex X25519 public key and CA_system_id).
struct OperatorPublicFile {
  std::uint16_t ca_system_id = 0;
  crypto::PublicKey x25519_public{};
  static Result<OperatorPublicFile> read(const std::string& path);
};

}  // namespace usher::entitlement
