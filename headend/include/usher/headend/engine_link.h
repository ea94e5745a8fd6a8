// The headend's link to a running entitlement engine.
//
// HeadendIdentity: the headend's own X25519 key pair (headend.db under its home, mode 0600) and the
// operator it trusts. The engine registers its public key (`usher entitlement headend add`) and
// seals key bundles for it alone.
//
// EngineKeySource: a KeySource fed over ZeroMQ. It fetches the sealed key bundle (service keys,
// PPV events and their keys for the coming days) and follows the engine's EMM queue by a cursor
// (emm_changes: only what changed since the last page, a page at a time), then refreshes both in the
// background. The carousel is held in memory by entry id, each section once, shared with the
// scrambler; a restarted headend catches up from cursor 0. When the engine goes away it keeps scrambling with what it holds, says so once, and
// picks up again when the engine is back: entitled viewers see no black screen while the keys last.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
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
  // From the key versions the engine sent (an engine that predates rotation: the bundle's one key).
  Result<entitlement::ServiceKeys> service_keys(std::uint16_t service_id, std::uint64_t time) override;
  // Versions kept per service (the engine sends the current and the next; an older one is kept
  // for a stream behind the engine's clock).
  static constexpr std::size_t kKeyVersionsKept = 3;
  // Served from what the last fetches brought: changes since `version` (one consumer: the log of
  // changes it has taken is dropped), or the whole carousel as a restart when `version` is 0 or
  // older than the log.
  EmmChanges emm_changes(std::uint64_t version) override;
  std::optional<entitlement::EventKey> current_event(std::uint16_t service_id, std::uint64_t time) override;
  std::vector<entitlement::EventInfo> schedule(std::uint16_t service_id, std::uint64_t time, std::size_t count) override;

  // The carousel held now: the sections live at `now_unix`, in id order (what the engine's
  // emm_sections would say, for tests and checks).
  std::vector<std::vector<std::uint8_t>> carousel(std::uint64_t now_unix);
  [[nodiscard]] std::size_t carousel_entries();
  // The engine's cursor in its EMM feed.
  [[nodiscard]] std::uint64_t cursor() const { return cursor_; }
  // The EMM bandwidth the operator set on the engine (bit/s; 0: none, or an engine that predates it).
  [[nodiscard]] std::uint64_t engine_emm_bitrate() const { return engine_emm_bitrate_; }
  // Entries are dropped here this long after their carousel ended (the engine purges them too).
  static constexpr std::uint64_t kExpiryMarginSeconds = 3600;
  // Pages taken in one fetch at most (then the next refresh goes on from the cursor).
  static constexpr std::size_t kMaxPagesPerFetch = 1000;
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
  std::map<std::uint16_t, std::map<std::uint16_t, entitlement::ServiceKeyVersion>> key_versions_;  // by service, version
  std::map<std::uint64_t, EmmEntry> carousel_;  // by entry id
  std::atomic<std::uint64_t> cursor_{0};
  std::atomic<std::uint64_t> engine_emm_bitrate_{0};
  // Changes not yet taken by the scrambler, by version; a consumer older than log_base_ restarts.
  std::deque<std::pair<std::uint64_t, EmmChanges>> log_changes_;
  std::uint64_t version_ = 0;
  std::uint64_t log_base_ = 0;
  std::atomic<bool> reachable_{false};
  std::atomic<std::uint64_t> refreshes_{0};
  std::atomic<bool> stop_{false};
  std::condition_variable wake_;
  std::mutex wake_mutex_;
  std::thread thread_;
};

}  // namespace usher::headend
