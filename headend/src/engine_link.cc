#include "usher/headend/engine_link.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_set>

#include "usher/core/clock.h"
#include "usher/core/hex.h"
#include "usher/core/home.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"

namespace usher::headend {
namespace fs = std::filesystem;

Result<HeadendPublicFile> HeadendPublicFile::read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::io, "cannot read headend identity file " + path);
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  HeadendPublicFile f;
  try {
    f.headend_id = static_cast<std::uint32_t>(std::stoul(kv.at("headend_id")));
  } catch (...) {
    return make_error(Errc::malformed, path + ": missing or bad headend_id");
  }
  auto key = from_hex(kv["x25519"]);
  if (!key || key->size() != 32) return make_error(Errc::malformed, path + ": x25519 must be 64 hex digits");
  std::copy(key->begin(), key->end(), f.x25519_public.begin());
  return f;
}

// Step 1 is the schema of the files written before versions were kept (user_version 0), in an
// IF NOT EXISTS statement so that such a file is recognised as schema 1 and kept as it is.
// Add a step at the end to change the schema; never edit one that has shipped.
const sql::Schema& HeadendIdentity::schema() {
  static const sql::Schema kSchema(
      "headend identity",
      {{1, "the headend's identity",
        sql::sql_steps("CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), headend_id INTEGER NOT NULL, "
                       "ca_system_id INTEGER NOT NULL, operator_x25519 BLOB NOT NULL, x25519_private BLOB NOT NULL)")}});
  return kSchema;
}

Result<HeadendIdentity> HeadendIdentity::init(const std::string& home, std::uint32_t headend_id,
                                              const entitlement::OperatorPublicFile& op) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (fs::exists(path)) return make_error(Errc::already_exists, "a headend is already initialised in " + home);
  USHER_TRY(auto db, open_private_database(home, kDatabaseName, IfMissing::create));
  USHER_CHECK(schema().migrate(db, path));
  auto pair = crypto::X25519KeyPair::generate();
  auto st = db.prepare("INSERT INTO identity VALUES (1, ?, ?, ?, ?)");
  st.bind(1, headend_id).bind(2, op.ca_system_id).bind(3, op.x25519_public).bind(4, pair.private_key.bytes());
  st.run();
  std::ofstream pub(fs::path(home) / kPublicName, std::ios::trunc);
  pub << "# Usher headend public identity: register it with `usher entitlement headend add`\n"
      << "headend_id=" << headend_id << "\nx25519=" << to_hex(pair.public_key) << "\n";
  if (!pub) return make_error(Errc::io, "cannot write headend.pub in " + home);
  return open(home);
}

Result<HeadendIdentity> HeadendIdentity::open(const std::string& home) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (!fs::exists(path)) {
    return make_error(Errc::not_found, "no headend identity in " + home + " (run `usher headend init --home " + home + "`)");
  }
  USHER_TRY(auto db, open_private_database(home, kDatabaseName, IfMissing::refuse));
  USHER_CHECK(schema().migrate(db, path));
  auto st = db.prepare("SELECT headend_id, ca_system_id, operator_x25519, x25519_private FROM identity WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, path + " has no identity");
  const auto id = static_cast<std::uint32_t>(st.column_int(0));
  const auto ca = static_cast<std::uint16_t>(st.column_int(1));
  auto op_b = st.column_blob(2);
  auto priv_b = st.column_blob(3);
  if (op_b.size() != 32 || priv_b.size() != 32) return make_error(Errc::storage, path + " is corrupt");
  crypto::PublicKey op{};
  std::copy(op_b.begin(), op_b.end(), op.begin());
  Secret<32> priv(std::span<const std::uint8_t, 32>(priv_b.data(), 32));
  secure_zero(priv_b.data(), priv_b.size());
  USHER_TRY(auto key, entitlement::derive_emm_key(priv, op, ca, id | 0x80000000u));
  return HeadendIdentity(id, ca, std::move(key));
}

EngineKeySource::EngineKeySource(std::string endpoint, const HeadendIdentity& identity, std::chrono::milliseconds refresh,
                                 std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), headend_id_(identity.headend_id()), bundle_key_(identity.bundle_key().clone()),
      refresh_(refresh), timeout_(timeout) {}

EngineKeySource::~EngineKeySource() {
  stop_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status EngineKeySource::fetch() {
  net::RequestClient client(endpoint_, {timeout_, 1});
  auto call = [&](entitlement::MessageType type, std::span<const std::uint8_t> body) -> Result<std::vector<std::uint8_t>> {
    const auto id = entitlement::new_request_id();
    USHER_TRY(auto reply, client.call(entitlement::encode_request(type, id, body)));
    return entitlement::reply_body(reply, id);
  };
  ByteWriter w;
  w.u32(headend_id_);
  USHER_TRY(auto keys, call(entitlement::MessageType::headend_keys, w.data()));
  ByteReader r(keys);
  std::uint16_t n = 0;
  std::span<const std::uint8_t> sealed;
  if (!r.u16(n) || !r.view(n, sealed)) return make_error(Errc::malformed, "headend_keys reply: malformed");
  USHER_TRY(auto bundle, entitlement::open_key_bundle(sealed, bundle_key_, headend_id_));
  std::uint64_t emm_bitrate = 0;
  if (r.remaining() >= 8) r.u64(emm_bitrate);  // an engine that predates the setting sends none
  // The key versions with their start times (an engine that predates rotation sends none).
  std::vector<entitlement::KeyBundle::KeyVersionEntry> versions;
  if (r.remaining() > 0) {
    std::span<const std::uint8_t> sealed_versions;
    if (!r.u16(n) || !r.view(n, sealed_versions)) return make_error(Errc::malformed, "headend_keys reply: malformed key versions");
    USHER_TRY(versions, entitlement::open_key_versions(sealed_versions, bundle_key_, headend_id_));
  }
  // The EMM feed: pages from the cursor until the engine has no more (or enough for one refresh).
  std::vector<entitlement::EmmFeedPage> pages;
  std::uint64_t cursor = cursor_;
  for (std::size_t i = 0; i < kMaxPagesPerFetch; ++i) {
    USHER_TRY(auto body, call(entitlement::MessageType::emm_changes, entitlement::encode_emm_changes_request(cursor)));
    USHER_TRY(auto page, entitlement::decode_emm_feed_page(body));
    cursor = page.next_cursor;
    const bool more = page.more;
    pages.push_back(std::move(page));
    if (!more) break;
  }
  std::lock_guard lock(mutex_);
  bundle_ = std::move(bundle);
  engine_emm_bitrate_ = emm_bitrate;
  for (auto& v : versions) {
    auto& held = key_versions_[v.service_id];
    const auto known = held.find(v.version.key_version);
    if (known == held.end() || known->second.starts != v.version.starts) {
      if (v.version.starts != 0) {
        log_.info("service ", v.service_id, ": key version ", v.version.key_version, " in use from ", format_utc(v.version.starts));
      }
    }
    held.insert_or_assign(v.version.key_version, std::move(v.version));
    while (held.size() > kKeyVersionsKept) held.erase(held.begin());
  }
  bool restart = false;
  EmmChanges delta;
  for (auto& page : pages) {
    if (page.restart) {
      carousel_.clear();
      delta = {};
      restart = true;
    }
    // Additions first: a page may add an entry and remove it again (ids are never reused, so a
    // removal always follows the addition it undoes).
    for (auto& a : page.added) {
      EmmEntry e{a.id, a.priority, a.carousel_from, a.carousel_until,
                 std::make_shared<const std::vector<std::uint8_t>>(std::move(a.section))};
      carousel_[e.id] = e;
      delta.added.push_back(std::move(e));
    }
    for (const auto id : page.removed) {
      if (carousel_.erase(id) > 0) delta.removed.push_back(id);
    }
  }
  // Entries whose time is over go here too, whether or not the engine has purged them yet.
  const auto now = unix_now();
  for (auto it = carousel_.begin(); it != carousel_.end();) {
    if (it->second.carousel_until + kExpiryMarginSeconds < now) {
      delta.removed.push_back(it->first);
      it = carousel_.erase(it);
    } else {
      ++it;
    }
  }
  cursor_ = cursor;
  if (restart) {
    log_changes_.clear();
    log_base_ = ++version_;
  } else if (!delta.added.empty() || !delta.removed.empty()) {
    delta.version = ++version_;
    log_changes_.emplace_back(version_, std::move(delta));
    if (log_changes_.size() > 256) {  // nobody is taking them: whoever comes later restarts
      log_base_ = log_changes_.front().first;
      log_changes_.pop_front();
    }
  }
  ++refreshes_;
  return ok_status();
}

EmmChanges EngineKeySource::emm_changes(std::uint64_t version) {
  std::lock_guard lock(mutex_);
  EmmChanges out;
  out.version = version_;
  if (version == 0 || version < log_base_ || version > version_) {
    out.restart = true;
    out.added.reserve(carousel_.size());
    for (const auto& [id, e] : carousel_) out.added.push_back(e);
    log_changes_.clear();
    log_base_ = version_;
    return out;
  }
  std::unordered_set<std::uint64_t> removed;
  for (const auto& [v, changes] : log_changes_) {
    if (v <= version) continue;
    out.removed.insert(out.removed.end(), changes.removed.begin(), changes.removed.end());
    removed.insert(changes.removed.begin(), changes.removed.end());
    out.added.insert(out.added.end(), changes.added.begin(), changes.added.end());
  }
  // An entry added and removed since: not handed over (its removal is, harmlessly).
  if (!removed.empty()) std::erase_if(out.added, [&](const EmmEntry& e) { return removed.contains(e.id); });
  // One consumer: what it has taken is not kept.
  std::erase_if(log_changes_, [&](const auto& c) { return c.first <= version_; });
  log_base_ = version_;
  return out;
}

std::vector<std::vector<std::uint8_t>> EngineKeySource::carousel(std::uint64_t now_unix) {
  std::lock_guard lock(mutex_);
  std::vector<std::vector<std::uint8_t>> out;
  for (const auto& [id, e] : carousel_) {
    if (e.live_at(now_unix)) out.push_back(*e.section);
  }
  return out;
}

std::size_t EngineKeySource::carousel_entries() {
  std::lock_guard lock(mutex_);
  return carousel_.size();
}

void EngineKeySource::start() {
  thread_ = std::thread([this] { loop(); });
}

void EngineKeySource::loop() {
  reachable_ = true;
  while (!stop_) {
    {
      std::unique_lock lock(wake_mutex_);
      wake_.wait_for(lock, refresh_, [this] { return stop_.load(); });
    }
    if (stop_) break;
    auto s = fetch();
    if (!s && reachable_) {
      std::lock_guard lock(mutex_);
      log_.warn("engine at ", endpoint_, " unreachable (", s.error().message, "); scrambling on with ",
                bundle_.services.size(), " service keys and ", bundle_.events.size(), " PPV events held");
    } else if (s && !reachable_) {
      log_.info("engine at ", endpoint_, " reachable again");
    }
    reachable_ = s.ok();
  }
}

Result<entitlement::ServiceKey> EngineKeySource::service_key(std::uint16_t service_id) {
  std::lock_guard lock(mutex_);
  for (const auto& s : bundle_.services) {
    if (s.service_id == service_id) return entitlement::ServiceKey{s.key_version, s.key.clone()};
  }
  return make_error(Errc::not_found, "the engine has no service " + std::to_string(service_id));
}

Result<entitlement::ServiceKeys> EngineKeySource::service_keys(std::uint16_t service_id, std::uint64_t time) {
  {
    std::lock_guard lock(mutex_);
    const auto held = key_versions_.find(service_id);
    if (held != key_versions_.end()) {
      const entitlement::ServiceKeyVersion* current = nullptr;
      const entitlement::ServiceKeyVersion* next = nullptr;
      for (const auto& [version, v] : held->second) {
        if (v.starts <= time) {
          current = &v;  // the newest version started by then
        } else if (next == nullptr) {
          next = &v;  // the first to start after
        }
      }
      if (current != nullptr) {
        entitlement::ServiceKeys keys{{current->key_version, current->key.clone(), current->starts}, std::nullopt};
        if (next != nullptr) keys.next = entitlement::ServiceKeyVersion{next->key_version, next->key.clone(), next->starts};
        return keys;
      }
    }
  }
  return KeySource::service_keys(service_id, time);
}

std::optional<entitlement::EventKey> EngineKeySource::current_event(std::uint16_t service_id, std::uint64_t time) {
  std::lock_guard lock(mutex_);
  for (const auto& e : bundle_.events) {
    if (e.service_id == service_id && e.start <= time && time < e.start + e.duration) {
      return entitlement::EventKey{e.event_id, e.key.clone(), e.min_age};
    }
  }
  return std::nullopt;
}

std::vector<entitlement::EventInfo> EngineKeySource::schedule(std::uint16_t service_id, std::uint64_t time, std::size_t count) {
  std::lock_guard lock(mutex_);
  std::vector<entitlement::EventInfo> out;
  for (const auto& e : bundle_.events) {  // the bundle is ordered by start
    if (e.service_id != service_id || e.start + e.duration <= time || out.size() >= count) continue;
    entitlement::EventInfo info;
    info.event_id = e.event_id;
    info.service_id = e.service_id;
    info.start = e.start;
    info.duration = e.duration;
    info.min_age = e.min_age;
    info.title = e.title;
    info.price = e.price;
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace usher::headend
