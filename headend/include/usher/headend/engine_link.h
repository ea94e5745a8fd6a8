// The headend's link to a running entitlement engine.
//
// HeadendIdentity: the headend's own X25519 key pair (headend.db under its home, mode 0600) and the
// operator it trusts. The engine registers its public key (`usher entitlement headend add`) and
// seals key bundles for it alone.
//
// EngineKeySource: a KeySource fed over ZeroMQ. It fetches the sealed key bundle (service keys,
// PPV events and their keys for the coming days) and the EMM carousel, then refreshes both in the
// background. When the engine goes away it keeps scrambling with what it holds, says so once, and
// picks up again when the engine is back: entitled viewers see no black screen while the keys last.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "usher/core/bytes.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/identity_files.h"
#include "usher/headend/scrambler.h"

namespace usher::headend {

struct HeadendPublicFile {
  std::uint32_t headend_id = 0;
  crypto::PublicKey x25519_public{};
  static Result<HeadendPublicFile> read(const std::string& path);
};

class HeadendIdentity {
 public:
  static constexpr const char* kDatabaseName = "headend.db";
  static constexpr const char* kPublicName = "headend.pub";
  static Result<HeadendIdentity> init(const std::string& home, std::uint32_t headend_id,
                                      const entitlement::OperatorPublicFile& op);
  // Opens the identity, bringing its schema forward (Errc::storage, the file untouched, when a
  // newer Usher wrote it).
  static Result<HeadendIdentity> open(const std::string& home);
  // The numbered steps of headend.db's schema (docs/architecture.md, "Schema versions").
  static const sql::Schema& schema();

  [[nodiscard]] std::uint32_t headend_id() const { return headend_id_; }
  [[nodiscard]] std::uint16_t ca_system_id() const { return ca_system_id_; }
  [[nodiscard]] const Key256& bundle_key() const { return bundle_key_; }

 private:
  HeadendIdentity(std::uint32_t id, std::uint16_t ca, Key256 key) : headend_id_(id), ca_system_id_(ca), bundle_key_(std::move(key)) {}
  std::uint32_t headend_id_;
  std::uint16_t ca_system_id_;
  Key256 bundle_key_;
};

class EngineKeySource final : public KeySource {
 public:
  EngineKeySource(std::string endpoint, const HeadendIdentity& identity,
                  std::chrono::milliseconds refresh = std::chrono::seconds(5),
                  std::chrono::milliseconds timeout = std::chrono::seconds(2));
  EngineKeySource(const EngineKeySource&) = delete;
  EngineKeySource& operator=(const EngineKeySource&) = delete;
  ~EngineKeySource() override;

  // First fetch, before scrambling starts: the headend cannot start without keys.
  Status fetch();
  // Refreshes in the background until destruction.
  void start();

  Result<entitlement::ServiceKey> service_key(std::uint16_t service_id) override;
  std::vector<std::vector<std::uint8_t>> emm_sections(std::uint64_t now_unix) override;
  std::optional<entitlement::EventKey> current_event(std::uint16_t service_id, std::uint64_t time) override;
  std::vector<entitlement::EventInfo> schedule(std::uint16_t service_id, std::uint64_t time, std::size_t count) override;

  [[nodiscard]] bool engine_reachable() const { return reachable_; }
  [[nodiscard]] std::uint64_t refreshes() const { return refreshes_; }

 private:
  void loop();
  std::string endpoint_;
  std::uint32_t headend_id_;
  Key256 bundle_key_;
  std::chrono::milliseconds refresh_;
  std::chrono::milliseconds timeout_;
  Logger log_{"headend"};
  std::mutex mutex_;
  entitlement::KeyBundle bundle_;
  std::vector<std::vector<std::uint8_t>> emms_;
  std::atomic<bool> reachable_{false};
  std::atomic<std::uint64_t> refreshes_{0};
  std::atomic<bool> stop_{false};
  std::condition_variable wake_;
  std::mutex wake_mutex_;
  std::thread thread_;
};

}  // namespace usher::headend
