// The STB's store as outside input: stb.db is on a disk its owner controls. Each input overwrites
// one column of a real store (entitlements, tickets, offers, credit, deadline, history, identity...)
// with arbitrary bytes, an integer or text, then the store is opened both ways and used: every
// edit must end in a refusal (an error, or an exception for a damaged file), never in a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "usher/core/crypto.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/messages.h"
#include "usher/stb/secure_element.h"

namespace {
namespace fs = std::filesystem;
using namespace usher;

constexpr std::uint64_t kT0 = 1'900'000'000;

struct Column {
  const char* table;
  const char* column;
};
constexpr Column kColumns[] = {
    {"entitlements", "service_key"}, {"entitlements", "not_after"}, {"entitlements", "mac"},   {"entitlements", "revoked"},
    {"tickets", "ticket"},           {"tickets", "event_key"},      {"tickets", "status"},     {"tickets", "mac"},
    {"tickets", "ticket_id"},        {"offers", "price_minor"},     {"offers", "event_key"},   {"offers", "currency"},
    {"credit", "limit_minor"},       {"credit", "mac"},             {"collection", "within"},  {"history", "record"},
    {"history", "settled"},          {"history", "payment"},        {"chain", "last_hash"},    {"chain", "last_sequence"},
    {"identity", "x25519_private"},  {"identity", "stb_id"},        {"identity", "operator_ed25519"},
    {"parental", "max_age"},         {"emm_applied", "applied"},    {"emm_applied", "sequence"},
    {"service_keys", "service_key"}, {"service_keys", "key_version"}, {"service_keys", "sequence"}, {"service_keys", "mac"},
    {"group_key", "group_id"},       {"group_key", "position"},     {"group_key", "key_version"}, {"group_key", "group_key"},
    {"group_key", "mac"},            {"global_keys", "key_version"}, {"global_keys", "global_key"}, {"operator_messages", "text"},
};

struct Template {
  std::string dir;
  std::vector<std::uint8_t> ecm_service;
  std::vector<std::uint8_t> ecm_event;
  std::vector<std::uint8_t> group_emm;   // a member grant for the box's group, not yet applied
  std::vector<std::uint8_t> global_emm;  // an operator message, not yet applied
};

// A store with something in every table that grants: a grant, a credit line with a deadline, an
// offer, and an impulse purchase with its ticket.
const Template& make_template() {
  static const Template* t = [] {
    char templ[] = "/tmp/usher-fuzz-store-XXXXXX";
    auto* out = new Template{mkdtemp(templ), {}, {}, {}, {}};
    auto op_x = crypto::X25519KeyPair::generate();
    entitlement::OperatorPublicFile op;
    op.ca_system_id = 0x4AFF;
    op.x25519_public = op_x.public_key;
    op.ed25519_public = crypto::Ed25519KeyPair::generate().public_key;
    auto se = stb::SecureElement::init(out->dir + "/template", 1001, op);
    if (!se) std::abort();
    auto emm_key = entitlement::derive_emm_key(op_x.private_key, se->public_identity().x25519_public, 0x4AFF, 1001);
    if (!emm_key) std::abort();
    Key256 service_key;
    crypto::random_bytes(service_key.mutable_bytes());
    Key256 event_key;
    crypto::random_bytes(event_key.mutable_bytes());
    entitlement::EmmContent emm{1001, 1, kT0, {}};
    emm.items.emplace_back(entitlement::EmmGrant{1, 1, service_key.clone(), 0, kT0 * 2});
    emm.items.emplace_back(entitlement::EmmCredit{5000, {'E', 'U', 'R'}});
    emm.items.emplace_back(entitlement::EmmCollection{86400});
    entitlement::EmmOffer offer;
    offer.event_id = 7;
    offer.service_id = 1;
    offer.start = kT0;
    offer.duration = 3600;
    offer.price_minor = 1250;
    offer.currency = {'E', 'U', 'R'};
    offer.event_key = event_key.clone();
    offer.title = "Final";
    emm.items.emplace_back(std::move(offer));
    Key256 group_key;
    crypto::random_bytes(group_key.mutable_bytes());
    Key256 global_key;
    crypto::random_bytes(global_key.mutable_bytes());
    emm.items.emplace_back(entitlement::EmmGroupKey{7, 3, 1, group_key.clone()});
    emm.items.emplace_back(entitlement::EmmGlobalKey{1, global_key.clone()});
    if (!se->apply_emm(entitlement::encode_emm(emm, *emm_key)).ok()) std::abort();
    if (!se->impulse_buy(7, kT0).ok()) std::abort();
    // Version 2 of the service key: version 1 moves to its own row (service_keys).
    {
      entitlement::EmmContent next{1001, 2, kT0, {}};
      Key256 v2;
      crypto::random_bytes(v2.mutable_bytes());
      next.items.emplace_back(entitlement::EmmGrant{1, 2, std::move(v2), 0, kT0 * 2});
      if (!se->apply_emm(entitlement::encode_emm(next, *emm_key)).ok()) std::abort();
    }
    {
      std::vector<entitlement::EmmItem> items;
      items.emplace_back(entitlement::EmmMessage{1, "kept"});
      entitlement::SharedEmmContent global{{entitlement::EmmAddressType::global, 0, 1}, 3, kT0, std::move(items)};
      if (!se->apply_emm(entitlement::encode_shared_emm(global, global_key)).ok()) std::abort();
    }
    {
      entitlement::EmmMemberGrant grant;
      grant.members.set(3);
      grant.not_before = 0;
      grant.not_after = kT0 * 2;
      grant.services.push_back({2, 1, service_key.clone()});
      std::vector<entitlement::EmmItem> items;
      items.emplace_back(std::move(grant));
      out->group_emm = entitlement::encode_shared_emm({{entitlement::EmmAddressType::group, 7, 1}, 10, kT0, std::move(items)}, group_key);
      std::vector<entitlement::EmmItem> message;
      message.emplace_back(entitlement::EmmMessage{2, "new"});
      out->global_emm = entitlement::encode_shared_emm({{entitlement::EmmAddressType::global, 0, 1}, 11, kT0, std::move(message)}, global_key);
    }
    entitlement::EcmContent ecm;
    ecm.service_id = 1;
    ecm.key_version = 1;
    for (auto* p : {&ecm.current, &ecm.next}) {
      p->time_unix = kT0 + 10;
      p->cw = ControlWord::random();
    }
    ecm.next.crypto_period = 1;
    out->ecm_service = entitlement::encode_ecm(ecm, service_key, service_key);
    ecm.current.event_id = 7;
    ecm.next.event_id = 7;
    out->ecm_event = entitlement::encode_ecm(ecm, event_key, event_key);
    return out;
  }();
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto& t = make_template();
  const auto work = t.dir + "/work";
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  fs::copy_file(t.dir + "/template/stb.db", work + "/stb.db", ec);
  if (ec) std::abort();
  const auto& target = kColumns[data[0] % (sizeof(kColumns) / sizeof(kColumns[0]))];
  const std::span<const std::uint8_t> value(data + 2, size - 2);
  try {
    auto db = sql::Database::open(work + "/stb.db", false);
    if (!db) return 0;
    auto st = db->prepare(std::string("UPDATE ") + target.table + " SET " + target.column + " = ?");
    switch (data[1] % 3) {
      case 0: st.bind(1, value); break;
      case 1: {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < value.size() && i < 8; ++i) v = v << 8 | value[i];
        st.bind(1, static_cast<std::int64_t>(v));
        break;
      }
      default: st.bind(1, std::string(value.begin(), value.end())); break;
    }
    st.run();
  } catch (const std::exception&) {
    return 0;  // the edit broke a constraint: nothing to load
  }
  for (auto access : {stb::SecureElement::Access::read_only, stb::SecureElement::Access::read_write}) {
    try {
      auto se = stb::SecureElement::open(work, access);
      if (!se) continue;
      (void)se->open_ecm(t.ecm_service);
      (void)se->open_ecm(t.ecm_event);
      (void)se->history();
      (void)se->settlement_status();
      (void)se->credit_limit();
      (void)se->tickets();
      (void)se->entitlements();
      (void)se->group();
      (void)se->global_key_versions();
      (void)se->messages();
      if (access == stb::SecureElement::Access::read_write) {
        (void)se->apply_emm(t.group_emm);
        (void)se->apply_emm(t.global_emm);
        (void)se->open_ecm(t.ecm_service);
        (void)se->pending_acks();
        (void)se->impulse_buy(7, kT0 + 100);
        (void)se->mark_watched(7);
      }
    } catch (const std::exception&) {
      // A damaged file met by a read is refused with an exception (sqlite.h's contract).
    }
  }
  return 0;
}
