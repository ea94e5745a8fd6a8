// The engine's groups and shared EMMs (docs/architecture.md, "Key hierarchy"): boxes are placed in
// groups of up to 256, each with a group key that every member gets in a unique EMM; group EMMs
// (0x83) carry member grants with a bitmap, global EMMs (0x84) what concerns every box. Every EMM
// takes its sequence number from one operator-wide counter.
//
// The carousel keeps, per group, one member grant per (services, window): its topic names them,
// and the member grant is always sealed again from the grants table, so that its bitmap is exactly
// the members that hold all those services for that window now (a newer one replaces the older).
#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "usher/core/clock.h"
#include "usher/entitlement/store.h"
#include "columns.h"

namespace usher::entitlement {
namespace {

// Priorities of the EMM feed (the scheduler sends the lower first).
constexpr int kUrgent = 0;   // revocations, new grants, keys, tickets, credit, offers
constexpr int kRenewal = 1;  // renewals, key rotations

constexpr const char* kKeysTopic = "keys";
constexpr const char* kGrantTopicPrefix = "grant/";

// "grant/NOT_BEFORE/NOT_AFTER/S1,S2,...": one member grant of a group, with its services sorted.
struct GrantTopic {
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  std::vector<std::uint16_t> services;
};

std::string grant_topic(const std::vector<std::uint16_t>& services, std::uint64_t not_before, std::uint64_t not_after) {
  std::string topic = kGrantTopicPrefix + std::to_string(not_before) + "/" + std::to_string(not_after) + "/";
  for (std::size_t i = 0; i < services.size(); ++i) topic += (i ? "," : "") + std::to_string(services[i]);
  return topic;
}

std::optional<GrantTopic> parse_grant_topic(const std::string& topic) {
  if (topic.rfind(kGrantTopicPrefix, 0) != 0) return std::nullopt;
  GrantTopic t;
  const char* p = topic.data() + std::char_traits<char>::length(kGrantTopicPrefix);
  const char* end = topic.data() + topic.size();
  auto number = [&](auto& out, char stop) {
    auto [next, ec] = std::from_chars(p, end, out);
    if (ec != std::errc() || (next != end && *next != stop)) return false;
    p = next == end ? end : next + 1;
    return true;
  };
  if (!number(t.not_before, '/') || !number(t.not_after, '/')) return std::nullopt;
  while (p < end) {
    std::uint16_t s = 0;
    if (!number(s, ',')) return std::nullopt;
    t.services.push_back(s);
  }
  if (t.services.empty()) return std::nullopt;
  return t;
}

std::string id_list(const std::vector<std::uint16_t>& ids) {
  std::string out;
  for (auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

std::vector<std::uint16_t> sorted_unique(std::vector<std::uint16_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The members of the group that hold every one of `services` for exactly this window, unrevoked.
MemberBitmap holders(sql::Database& db, std::uint32_t group_id, const std::vector<std::uint16_t>& services, std::uint64_t not_before,
                     std::uint64_t not_after) {
  MemberBitmap bits;
  auto st = db.prepare(
      "SELECT m.position FROM group_members m JOIN grants g ON g.stb_id = m.stb_id "
      "WHERE m.group_id = ? AND g.revoked = 0 AND g.not_before = ? AND g.not_after = ? AND g.service_id IN (" + id_list(services) + ") "
      "GROUP BY m.stb_id, m.position HAVING COUNT(*) = ?");
  st.bind(1, group_id).bind(2, static_cast<std::int64_t>(not_before)).bind(3, static_cast<std::int64_t>(not_after))
      .bind(4, static_cast<std::int64_t>(services.size()));
  while (st.step()) bits.set(static_cast<std::uint8_t>(st.column_int(0)));
  return bits;
}

}  // namespace

std::uint64_t EntitlementStore::draw_emm_sequence() {
  auto st = db_.prepare("UPDATE emm_counter SET next_sequence = next_sequence + 1 WHERE id = 1 RETURNING next_sequence - 1");
  if (!st.step()) throw std::runtime_error("the EMM sequence counter is missing from " + db_.where());
  const auto sequence = static_cast<std::uint64_t>(st.column_int(0));
  st.run();
  return sequence;
}

std::uint64_t EntitlementStore::next_emm_sequence() {
  auto st = db_.prepare("SELECT next_sequence FROM emm_counter WHERE id = 1");
  return st.step() ? static_cast<std::uint64_t>(st.column_int(0)) : 0;
}

void EntitlementStore::store_emm(EmmAddressType type, std::uint32_t address_id, const std::string& topic, std::uint64_t sequence,
                                 const std::vector<std::uint8_t>& section, std::uint64_t carousel_from, std::uint64_t carousel_until,
                                 int priority) {
  // With the feed's change number (emm_changes follows it) and the scheduler's priority.
  sql::Transaction tx(db_);
  const auto change = next_emm_change();
  auto ins = db_.prepare(
      "INSERT INTO emm_queue (stb_id, sequence, carousel_until, carousel_from, created, section, address_type, topic, change_number, priority) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  ins.bind(1, address_id).bind(2, static_cast<std::int64_t>(sequence)).bind(3, static_cast<std::int64_t>(carousel_until))
      .bind(4, static_cast<std::int64_t>(carousel_from)).bind(5, static_cast<std::int64_t>(unix_now())).bind(6, section)
      .bind(7, static_cast<int>(type)).bind(8, topic).bind(9, static_cast<std::int64_t>(change)).bind(10, priority);
  ins.run();
  tx.commit();
}

void EntitlementStore::drop_emms(EmmAddressType type, std::uint32_t address_id, const std::string& topic) {
  // Each as a removal of the feed, so that headends drop it too.
  std::vector<std::int64_t> ids;
  {
    auto sel = db_.prepare("SELECT id FROM emm_queue WHERE address_type = ? AND stb_id = ? AND topic = ?");
    sel.bind(1, static_cast<int>(type)).bind(2, address_id).bind(3, topic);
    while (sel.step()) ids.push_back(sel.column_int(0));
  }
  for (const auto id : ids) remove_emm_entry(id);
}

std::vector<QueuedEmm> EntitlementStore::queued_emms() {
  std::vector<QueuedEmm> out;
  auto st = db_.prepare("SELECT address_type, stb_id, sequence, topic, carousel_from, carousel_until, section FROM emm_queue ORDER BY id");
  while (st.step()) {
    QueuedEmm q;
    q.address.type = static_cast<EmmAddressType>(st.column_int(0));
    q.address.id = static_cast<std::uint32_t>(st.column_int(1));
    q.sequence = static_cast<std::uint64_t>(st.column_int(2));
    q.topic = st.column_text(3);
    q.carousel_from = static_cast<std::uint64_t>(st.column_int(4));
    q.carousel_until = static_cast<std::uint64_t>(st.column_int(5));
    q.section = st.column_blob(6);
    out.push_back(std::move(q));
  }
  return out;
}

std::optional<GroupMembership> EntitlementStore::group_of(std::uint32_t stb_id) {
  auto st = db_.prepare(
      "SELECT m.group_id, m.position, g.key_version FROM group_members m JOIN emm_groups g ON g.group_id = m.group_id "
      "WHERE m.stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return std::nullopt;
  return GroupMembership{static_cast<std::uint32_t>(st.column_int(0)), static_cast<std::uint8_t>(st.column_int(1)),
                         static_cast<std::uint32_t>(st.column_int(2))};
}

std::vector<GroupInfo> EntitlementStore::groups() {
  std::vector<GroupInfo> out;
  auto st = db_.prepare("SELECT group_id, key_version, members FROM emm_groups ORDER BY group_id");
  while (st.step()) {
    out.push_back({static_cast<std::uint32_t>(st.column_int(0)), static_cast<std::uint32_t>(st.column_int(1)),
                   static_cast<std::uint32_t>(st.column_int(2))});
  }
  return out;
}

Result<EmmGroupKey> EntitlementStore::group_key(std::uint32_t group_id) {
  auto st = db_.prepare("SELECT key_version, group_key FROM emm_groups WHERE group_id = ?");
  st.bind(1, group_id);
  if (!st.step()) return make_error(Errc::not_found, "no group " + std::to_string(group_id));
  return EmmGroupKey{group_id, 0, static_cast<std::uint32_t>(st.column_int(0)), st.column_key(1)};
}

EmmGlobalKey EntitlementStore::global_key() {
  auto st = db_.prepare("SELECT key_version, global_key FROM global_keys ORDER BY key_version DESC LIMIT 1");
  if (!st.step()) throw std::runtime_error("the operator's global key is missing from " + db_.where());
  return EmmGlobalKey{static_cast<std::uint32_t>(st.column_int(0)), st.column_key(1)};
}

Status EntitlementStore::check_not_cut_off(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT cut_off FROM stbs WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (st.step() && st.column_int(0) != 0) {
    return make_error(Errc::not_entitled, "STB " + std::to_string(stb_id) + " was cut off (a cloned or stolen box): refused");
  }
  return ok_status();
}

Status EntitlementStore::assign_group(std::uint32_t stb_id) {
  // The first group with room (the partial index keeps this a lookup however many groups are full).
  std::uint32_t group_id = 0;
  {
    auto st = db_.prepare("SELECT group_id FROM emm_groups WHERE members < 256 ORDER BY group_id LIMIT 1");
    if (st.step()) group_id = static_cast<std::uint32_t>(st.column_int(0));
  }
  if (group_id == 0) {
    {
      auto st = db_.prepare("SELECT COALESCE(MAX(group_id), 0) + 1 FROM emm_groups");
      st.step();
      group_id = static_cast<std::uint32_t>(st.column_int(0));
    }
    Key256 key;
    crypto::random_bytes(key.mutable_bytes());
    auto ins = db_.prepare("INSERT INTO emm_groups (group_id, key_version, group_key, members) VALUES (?, 1, ?, 0)");
    ins.bind(1, group_id).bind(2, key.bytes());
    ins.run();
  }
  // The lowest free position: a position freed by a cut-off is taken again.
  int position = 0;
  {
    auto st = db_.prepare("SELECT position FROM group_members WHERE group_id = ? ORDER BY position");
    st.bind(1, group_id);
    while (st.step() && st.column_int(0) == position) ++position;
  }
  if (position >= static_cast<int>(kGroupSize)) return make_error(Errc::storage, "group " + std::to_string(group_id) + " is full but counted otherwise");
  auto member = db_.prepare("INSERT INTO group_members (stb_id, group_id, position) VALUES (?, ?, ?)");
  member.bind(1, stb_id).bind(2, group_id).bind(3, position);
  member.run();
  auto count = db_.prepare("UPDATE emm_groups SET members = members + 1 WHERE group_id = ?");
  count.bind(1, group_id);
  count.run();
  return queue_key_emm(stb_id);
}

Status EntitlementStore::assign_missing_groups() {
  const auto pending = [&] {
    auto st = db_.prepare("SELECT 1 FROM settings WHERE name = 'boxes_without_group'");
    return st.step();
  };
  if (!pending()) return ok_status();
  return db_.atomically(
      [&] {
        if (!pending()) return;  // another engine on the same server did it
        std::vector<std::uint32_t> boxes;
        {
          auto st = db_.prepare(
              "SELECT stb_id FROM stbs WHERE cut_off = 0 AND stb_id NOT IN (SELECT stb_id FROM group_members) ORDER BY stb_id");
          while (st.step()) boxes.push_back(static_cast<std::uint32_t>(st.column_int(0)));
        }
        for (auto stb : boxes) {
          if (auto placed = assign_group(stb); !placed) throw std::runtime_error(placed.error().message);
        }
        db_.exec("DELETE FROM settings WHERE name = 'boxes_without_group'");
      },
      "cannot place the boxes registered before groups in groups");
}

Status EntitlementStore::queue_key_emm(std::uint32_t stb_id) {
  auto membership = group_of(stb_id);
  if (!membership) return make_error(Errc::not_found, "STB " + std::to_string(stb_id) + " is in no group");
  USHER_TRY(auto key, group_key(membership->group_id));
  key.position = membership->position;
  std::vector<EmmItem> items;
  items.emplace_back(std::move(key));
  items.emplace_back(global_key());
  // The box needs its keys as long as it is a member: carried until replaced (a re-key).
  drop_emms(EmmAddressType::unique, stb_id, kKeysTopic);
  USHER_CHECK(queue_emm(stb_id, std::move(items), EmmPriority::urgent, kLatestGrantEnd, 0, kKeysTopic));
  return ok_status();
}

Status EntitlementStore::refresh_group_grant(std::uint32_t group_id, const std::vector<std::uint16_t>& services, std::uint64_t not_before,
                                             std::uint64_t not_after, int priority, std::uint64_t keys_at) {
  const auto topic = grant_topic(services, not_before, not_after);
  drop_emms(EmmAddressType::group, group_id, topic);
  if (not_after <= unix_now()) return ok_status();  // over: nothing left to carry
  const auto members = holders(db_, group_id, services, not_before, not_after);
  if (members.count() == 0) return ok_status();  // a clear bitmap gives nothing: not sent
  // Each service with the key current now and, ahead of a rotation, the next one. A service's keys
  // stay in one member grant (the box must not take the next key from a newer EMM and then find the
  // current one stale in an older); if two keys each no longer fit one EMM, the topic takes several.
  std::vector<std::vector<ServiceKeyItem>> parts(1);
  const auto fits = [&](std::size_t count) {
    EmmMemberGrant probe;
    probe.services.resize(count);
    std::vector<EmmItem> items;
    items.emplace_back(std::move(probe));
    return emm_plaintext_size(items) <= kMaxEmmPlaintext;
  };
  for (auto service : services) {
    USHER_TRY(auto keys, service_keys(service, keys_at != 0 ? keys_at : unix_now()));
    std::vector<ServiceKeyItem> items;
    items.push_back({service, keys.current.key_version, std::move(keys.current.key)});
    // The next key only to a window that reaches its start: a grant that ends first has no use for it.
    if (keys.next && not_after > keys.next->starts) items.push_back({service, keys.next->key_version, std::move(keys.next->key)});
    if (!parts.back().empty() && !fits(parts.back().size() + items.size())) parts.emplace_back();
    for (auto& item : items) parts.back().push_back(std::move(item));
  }
  USHER_TRY(auto key, group_key(group_id));
  for (auto& part : parts) {
    EmmMemberGrant grant;
    grant.not_before = not_before;
    grant.not_after = not_after;
    grant.members = members;
    grant.services = std::move(part);
    const auto sequence = draw_emm_sequence();
    SharedEmmContent emm{{EmmAddressType::group, group_id, key.key_version}, sequence, unix_now(), {}};
    emm.items.emplace_back(std::move(grant));
    const auto section = encode_shared_emm(emm, key.key);
    store_emm(EmmAddressType::group, group_id, topic, sequence, section, 0, not_after, priority);
  }
  return ok_status();
}

namespace {

// The group's member grants on the carousel, by topic.
std::vector<std::pair<std::string, GrantTopic>> grant_topics_of(sql::Database& db, std::uint32_t group_id) {
  std::vector<std::pair<std::string, GrantTopic>> out;
  auto st = db.prepare("SELECT DISTINCT topic FROM emm_queue WHERE address_type = ? AND stb_id = ? AND topic LIKE 'grant/%' ORDER BY topic");
  st.bind(1, static_cast<int>(EmmAddressType::group)).bind(2, group_id);
  while (st.step()) {
    auto topic = st.column_text(0);
    if (auto parsed = parse_grant_topic(topic)) out.emplace_back(std::move(topic), std::move(*parsed));
  }
  return out;
}

bool shares_a_service(const std::vector<std::uint16_t>& a, const std::vector<std::uint16_t>& b) {
  return std::any_of(a.begin(), a.end(), [&](auto s) { return std::find(b.begin(), b.end(), s) != b.end(); });
}

}  // namespace

Status EntitlementStore::queue_group_grants(const std::vector<std::uint32_t>& stb_ids, const std::vector<std::uint16_t>& services_in,
                                            std::uint64_t not_before, std::uint64_t not_after) {
  const auto services = sorted_unique(services_in);
  if (services.empty()) return ok_status();
  std::set<std::uint32_t> group_ids;
  for (auto stb : stb_ids) {
    if (auto membership = group_of(stb)) group_ids.insert(membership->group_id);
  }
  // The services split so that each member grant fits one section.
  const auto fits = [](std::size_t count) {
    EmmMemberGrant probe;
    probe.services.resize(count);
    std::vector<EmmItem> items;
    items.emplace_back(std::move(probe));
    return emm_plaintext_size(items) <= kMaxEmmPlaintext;
  };
  std::vector<std::vector<std::uint16_t>> chunks(1);
  for (auto service : services) {
    if (!fits(chunks.back().size() + 1)) chunks.emplace_back();
    chunks.back().push_back(service);
  }
  for (auto group_id : group_ids) {
    // Member grants of these services for another window or set: boxes that moved to the new
    // window leave their bitmaps. Except from one that ends no later than the new window (a
    // renewal), while some box still holds it: the new member grant stays on the carousel at least
    // as long and, newer, overrides the old one on every box in whatever order a box meets the
    // two; sealing the old one again for the boxes that did not renew would double a renewal's
    // EMMs (one more per group and package). One nobody holds any more goes.
    for (const auto& [topic, t] : grant_topics_of(db_, group_id)) {
      const bool is_new = t.not_before == not_before && t.not_after == not_after &&
                          std::find(chunks.begin(), chunks.end(), t.services) != chunks.end();
      if (is_new || !shares_a_service(t.services, services)) continue;
      if (t.not_after <= not_after) {
        if (holders(db_, group_id, t.services, t.not_before, t.not_after).count() != 0) continue;
        drop_emms(EmmAddressType::group, group_id, topic);
      } else {
        USHER_CHECK(refresh_group_grant(group_id, t.services, t.not_before, t.not_after, kRenewal));
      }
      // The boxes that lost their bit in it still hold its other services for its window: a member
      // grant of those carries them (a package's member grant, one service of which moved).
      std::vector<std::uint16_t> rest;
      for (auto s : t.services) {
        if (std::find(services.begin(), services.end(), s) == services.end()) rest.push_back(s);
      }
      if (!rest.empty()) USHER_CHECK(refresh_group_grant(group_id, rest, t.not_before, t.not_after, kRenewal));
    }
    for (const auto& chunk : chunks) USHER_CHECK(refresh_group_grant(group_id, chunk, not_before, not_after, kRenewal));
  }
  return ok_status();
}

Status EntitlementStore::refresh_group_grants_after_revoke(const GroupMembership& box, const std::vector<std::uint16_t>& revoked) {
  for (const auto& [topic, t] : grant_topics_of(db_, box.group_id)) {
    if (!shares_a_service(t.services, revoked)) continue;
    USHER_CHECK(refresh_group_grant(box.group_id, t.services, t.not_before, t.not_after, kUrgent));
    // The box keeps the member grant's other services: they stay on the carousel for it too, in a
    // member grant of those.
    std::vector<std::uint16_t> rest;
    for (auto s : t.services) {
      if (std::find(revoked.begin(), revoked.end(), s) == revoked.end()) rest.push_back(s);
    }
    if (!rest.empty() && holders(db_, box.group_id, rest, t.not_before, t.not_after).has(box.position)) {
      USHER_CHECK(refresh_group_grant(box.group_id, rest, t.not_before, t.not_after, kUrgent));
    }
  }
  return ok_status();
}

Result<std::size_t> EntitlementStore::renew_package(std::uint16_t package_id, std::uint64_t not_after, std::uint64_t now) {
  USHER_TRY(auto services, package_services(package_id));
  if (not_after <= now) return make_error(Errc::invalid_argument, "a renewal must end in the future");
  if (not_after > kLatestGrantEnd) {
    return make_error(Errc::invalid_argument, "a grant cannot end after 9999-12-31 (got unix time " + std::to_string(not_after) + ")");
  }
  sql::Transaction tx(db_);
  // Current grants of the package's services that end before the renewal, of boxes not cut off.
  struct Held {
    std::uint32_t stb_id;
    std::uint16_t service_id;
    std::uint64_t not_before;
  };
  // A pass bought for a service is carried as a grant of its window: it was paid for by the day
  // and is not part of a subscription, so a renewal leaves it alone.
  std::set<std::tuple<std::uint32_t, std::uint16_t, std::uint64_t, std::uint64_t>> passes;
  {
    auto st = db_.prepare("SELECT ticket FROM tickets WHERE event_id = 0 AND ticket IS NOT NULL AND status = " + sql_value(TicketStatus::valid));
    while (st.step()) {
      auto t = Ticket::decode(st.column_blob(0));
      if (t && t->type == kAssetTypeServicePass) passes.emplace(t->stb_id, t->service_id, t->valid_from, t->valid_until);
    }
  }
  std::vector<Held> held;
  {
    auto st = db_.prepare(
        "SELECT g.stb_id, g.service_id, g.not_before, g.not_after FROM grants g JOIN stbs s ON s.stb_id = g.stb_id "
        "WHERE g.service_id IN (" + id_list(services) + ") AND g.revoked = 0 AND g.not_after > ? AND g.not_after < ? AND s.cut_off = 0 "
        "ORDER BY g.stb_id, g.service_id");
    st.bind(1, static_cast<std::int64_t>(now)).bind(2, static_cast<std::int64_t>(not_after));
    while (st.step()) {
      Held h{static_cast<std::uint32_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)),
             static_cast<std::uint64_t>(st.column_int(2))};
      if (passes.count({h.stb_id, h.service_id, h.not_before, static_cast<std::uint64_t>(st.column_int(3))}) == 0) held.push_back(h);
    }
  }
  // One window for all grants already running: the earliest start among them (any start in the
  // past means the same to a box from now on), so that a group needs one member grant, not one per
  // box. A grant that starts in the future keeps its start.
  std::uint64_t running_start = now;
  for (const auto& h : held) {
    if (h.not_before <= now) running_start = std::min(running_start, h.not_before);
  }
  // Boxes by (start, services held): each such set is one member grant per group.
  std::map<std::uint32_t, std::map<std::uint64_t, std::vector<std::uint16_t>>> by_box;
  for (const auto& h : held) by_box[h.stb_id][h.not_before <= now ? running_start : h.not_before].push_back(h.service_id);
  std::map<std::pair<std::uint64_t, std::vector<std::uint16_t>>, std::vector<std::uint32_t>> partitions;
  auto update = db_.prepare("UPDATE grants SET not_before = ?, not_after = ? WHERE stb_id = ? AND service_id = ?");
  for (const auto& [stb, starts] : by_box) {
    for (const auto& [start, held_services] : starts) {
      for (auto service : held_services) {
        update.reset();
        update.bind(1, static_cast<std::int64_t>(start)).bind(2, static_cast<std::int64_t>(not_after)).bind(3, stb).bind(4, service);
        update.run();
      }
      partitions[{start, held_services}].push_back(stb);
    }
  }
  for (const auto& [key, boxes] : partitions) USHER_CHECK(queue_group_grants(boxes, key.second, key.first, not_after));
  tx.commit();
  return by_box.size();
}

Status EntitlementStore::cut_off(std::uint32_t stb_id) {
  if (!has_stb(stb_id)) return make_error(Errc::not_found, "no STB " + std::to_string(stb_id));
  USHER_CHECK(check_not_cut_off(stb_id));
  auto membership = group_of(stb_id);
  sql::Transaction tx(db_);
  std::vector<std::uint16_t> granted;
  {
    auto st = db_.prepare("SELECT service_id FROM grants WHERE stb_id = ? AND revoked = 0 ORDER BY service_id");
    st.bind(1, stb_id);
    while (st.step()) granted.push_back(static_cast<std::uint16_t>(st.column_int(0)));
  }
  if (!granted.empty()) USHER_CHECK(revoke_services(stb_id, granted));
  auto mark = db_.prepare("UPDATE stbs SET cut_off = 1 WHERE stb_id = ?");
  mark.bind(1, stb_id);
  mark.run();
  drop_emms(EmmAddressType::unique, stb_id, kKeysTopic);
  if (membership) {
    const auto group_id = membership->group_id;
    auto leave = db_.prepare("DELETE FROM group_members WHERE stb_id = ?");
    leave.bind(1, stb_id);
    leave.run();
    // A new key the box never sees: whatever its software does with its bit, it opens nothing
    // sealed from now on.
    Key256 key;
    crypto::random_bytes(key.mutable_bytes());
    auto rekey = db_.prepare("UPDATE emm_groups SET members = members - 1, key_version = key_version + 1, group_key = ? WHERE group_id = ?");
    rekey.bind(1, key.bytes()).bind(2, group_id);
    rekey.run();
    std::vector<std::uint32_t> members;
    {
      auto st = db_.prepare("SELECT stb_id FROM group_members WHERE group_id = ? ORDER BY position");
      st.bind(1, group_id);
      while (st.step()) members.push_back(static_cast<std::uint32_t>(st.column_int(0)));
    }
    for (auto member : members) USHER_CHECK(queue_key_emm(member));
    // The group's carousel, sealed again under the new key (and without the box's bit).
    for (const auto& [topic, t] : grant_topics_of(db_, group_id)) {
      USHER_CHECK(refresh_group_grant(group_id, t.services, t.not_before, t.not_after, kUrgent));
    }
  }
  tx.commit();
  return ok_status();
}

Result<std::uint64_t> EntitlementStore::queue_global_emm(std::vector<EmmItem> items, std::uint64_t carousel_until, const std::string& topic,
                                                        int priority) {
  const auto key = global_key();
  const auto sequence = draw_emm_sequence();
  SharedEmmContent emm{{EmmAddressType::global, 0, key.key_version}, sequence, unix_now(), std::move(items)};
  const auto section = encode_shared_emm(emm, key.key);
  store_emm(EmmAddressType::global, 0, topic, sequence, section, 0, carousel_until, priority);
  return sequence;
}

Result<std::uint64_t> EntitlementStore::send_message(const std::string& text, std::uint64_t until) {
  if (text.empty() || text.size() > 200) return make_error(Errc::invalid_argument, "a message is 1 to 200 bytes of UTF-8");
  if (until <= unix_now()) return make_error(Errc::invalid_argument, "a message must be carried until a time to come");
  if (until > kLatestGrantEnd) return make_error(Errc::invalid_argument, "a message cannot be carried after 9999-12-31");
  sql::Transaction tx(db_);
  // Its id is the sequence number of the EMM that carries it (drawn next, in this transaction).
  const auto message_id = next_emm_sequence();
  std::vector<EmmItem> items;
  items.emplace_back(EmmMessage{message_id, text});
  USHER_TRY(auto sequence, queue_global_emm(std::move(items), until, "message/" + std::to_string(message_id), kUrgent));
  if (sequence != message_id) return make_error(Errc::storage, "the EMM counter moved under the message");
  tx.commit();
  return message_id;
}

Result<std::uint32_t> EntitlementStore::rotate_global_key() {
  sql::Transaction tx(db_);
  const auto current = global_key();
  EmmGlobalKey next{current.key_version + 1, Key256{}};
  crypto::random_bytes(next.key.mutable_bytes());
  // Under the current key, so every box that holds it learns the next; carried as long as a box
  // registered before may still come on (a box off for longer takes it from the next key EMM it gets).
  std::vector<EmmItem> items;
  items.emplace_back(EmmGlobalKey{next.key_version, next.key.clone()});
  USHER_CHECK(queue_global_emm(std::move(items), kLatestGrantEnd, "global-key/" + std::to_string(next.key_version), kRenewal));
  auto ins = db_.prepare("INSERT INTO global_keys VALUES (?, ?, ?)");
  ins.bind(1, next.key_version).bind(2, next.key.bytes()).bind(3, static_cast<std::int64_t>(unix_now()));
  ins.run();
  tx.commit();
  return next.key_version;
}

Status EntitlementStore::refresh_group_grants_of_service(std::uint16_t service_id, int priority, std::uint64_t keys_at,
                                                         std::uint64_t reaching) {
  // Every group's member grants on the carousel whose topic names the service.
  std::vector<std::pair<std::uint32_t, GrantTopic>> topics;
  {
    auto st = db_.prepare("SELECT DISTINCT stb_id, topic FROM emm_queue WHERE address_type = ? AND topic LIKE 'grant/%' ORDER BY stb_id, topic");
    st.bind(1, static_cast<int>(EmmAddressType::group));
    while (st.step()) {
      auto parsed = parse_grant_topic(st.column_text(1));
      if (parsed && std::find(parsed->services.begin(), parsed->services.end(), service_id) != parsed->services.end() &&
          parsed->not_after > reaching) {
        topics.emplace_back(static_cast<std::uint32_t>(st.column_int(0)), std::move(*parsed));
      }
    }
  }
  for (const auto& [group_id, t] : topics) {
    USHER_CHECK(refresh_group_grant(group_id, t.services, t.not_before, t.not_after, priority, keys_at));
  }
  return ok_status();
}

Status EntitlementStore::announce_to_uncovered_holders(std::uint16_t service_id, std::uint64_t now, std::uint64_t starts) {
  // The member grants on the carousel that name the service, by group: the window and who holds it.
  struct Covered {
    std::uint64_t not_before;
    std::uint64_t not_after;
    MemberBitmap members;
  };
  std::map<std::uint32_t, std::vector<Covered>> covered;
  {
    std::vector<std::pair<std::uint32_t, GrantTopic>> topics;
    auto st = db_.prepare("SELECT DISTINCT stb_id, topic FROM emm_queue WHERE address_type = ? AND topic LIKE 'grant/%'");
    st.bind(1, static_cast<int>(EmmAddressType::group));
    while (st.step()) {
      auto parsed = parse_grant_topic(st.column_text(1));
      if (parsed && std::find(parsed->services.begin(), parsed->services.end(), service_id) != parsed->services.end()) {
        topics.emplace_back(static_cast<std::uint32_t>(st.column_int(0)), std::move(*parsed));
      }
    }
    for (const auto& [group_id, t] : topics) {
      covered[group_id].push_back({t.not_before, t.not_after, holders(db_, group_id, t.services, t.not_before, t.not_after)});
    }
  }
  // Holders that none covers (a grant of the one service, a pass): a member grant of the service for
  // their window in their group, which the carousel then carries like the others.
  std::set<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>> missing;  // group, window
  {
    auto st = db_.prepare(
        "SELECT m.group_id, m.position, g.not_before, g.not_after FROM grants g JOIN group_members m ON m.stb_id = g.stb_id "
        "JOIN stbs s ON s.stb_id = g.stb_id WHERE g.service_id = ? AND g.revoked = 0 AND g.not_after > ? AND s.cut_off = 0");
    // A grant that ends before the next key comes into use needs none.
    st.bind(1, service_id).bind(2, static_cast<std::int64_t>(std::max({now, unix_now(), starts})));
    while (st.step()) {
      const auto group_id = static_cast<std::uint32_t>(st.column_int(0));
      const auto position = static_cast<std::uint8_t>(st.column_int(1));
      const auto not_before = static_cast<std::uint64_t>(st.column_int(2));
      const auto not_after = static_cast<std::uint64_t>(st.column_int(3));
      const auto it = covered.find(group_id);
      const bool is_covered = it != covered.end() && std::any_of(it->second.begin(), it->second.end(), [&](const Covered& c) {
                                return c.not_before == not_before && c.not_after == not_after && c.members.has(position);
                              });
      if (!is_covered) missing.emplace(group_id, not_before, not_after);
    }
  }
  for (const auto& [group_id, not_before, not_after] : missing) {
    USHER_CHECK(refresh_group_grant(group_id, {service_id}, not_before, not_after, kRenewal, now));
  }
  return ok_status();
}

Result<ServiceKeyVersion> EntitlementStore::rotate_service_key(std::uint16_t service_id, std::uint64_t starts, std::uint64_t now) {
  USHER_TRY(auto keys, service_keys(service_id, now));
  const std::string svc = "service " + std::to_string(service_id);
  if (starts <= now) {
    return make_error(Errc::invalid_argument, svc + ": the next key must start after now (" + format_utc(now) + "), not at " + format_utc(starts));
  }
  if (starts > kLatestGrantEnd) return make_error(Errc::invalid_argument, svc + ": the next key cannot start after 9999-12-31");
  if (keys.next) {
    // One rotation pending at a time: boxes keep two versions, and those that took the announced
    // key must find it in use. A later rotation is announced once this one has started.
    return make_error(Errc::already_exists, svc + " has key version " + std::to_string(keys.next->key_version) + " announced for " +
                                                format_utc(keys.next->starts) + " already; rotate again once it has started");
  }
  if (keys.current.key_version == 0xFFFF) return make_error(Errc::invalid_argument, svc + " has used every key version (65535)");
  ServiceKeyVersion next{static_cast<std::uint16_t>(keys.current.key_version + 1), Key256{}, starts};
  crypto::random_bytes(next.key.mutable_bytes());
  sql::Transaction tx(db_);
  auto ins = db_.prepare("INSERT INTO service_key_versions (service_id, key_version, service_key, starts, settled) VALUES (?, ?, ?, ?, 0)");
  ins.bind(1, service_id).bind(2, next.key_version).bind(3, next.key.bytes()).bind(4, static_cast<std::int64_t>(starts));
  ins.run();
  // Announced at once, by the group EMMs the carousel already carries for the service's holders.
  // Not to member grants that end before the key comes into use (last month's, at a renewal).
  USHER_CHECK(refresh_group_grants_of_service(service_id, kRenewal, now, starts));
  USHER_CHECK(announce_to_uncovered_holders(service_id, now, starts));
  tx.commit();
  return next;
}

Result<std::size_t> EntitlementStore::settle_key_rotations(std::uint64_t now) {
  std::vector<std::pair<std::uint16_t, std::uint16_t>> due;
  {
    auto st = db_.prepare("SELECT service_id, key_version FROM service_key_versions WHERE settled = 0 AND starts <= ? ORDER BY service_id");
    st.bind(1, static_cast<std::int64_t>(now));
    while (st.step()) due.emplace_back(static_cast<std::uint16_t>(st.column_int(0)), static_cast<std::uint16_t>(st.column_int(1)));
  }
  if (due.empty()) return std::size_t{0};
  sql::Transaction tx(db_);
  for (const auto& [service_id, version] : due) {
    // The key in use now, and a next one if announced since: the older key is no longer sent.
    USHER_CHECK(refresh_group_grants_of_service(service_id, kRenewal, now));
    auto done = db_.prepare("UPDATE service_key_versions SET settled = 1 WHERE service_id = ? AND key_version = ?");
    done.bind(1, service_id).bind(2, version);
    done.run();
  }
  tx.commit();
  return due.size();
}

}  // namespace usher::entitlement
