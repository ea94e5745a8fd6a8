// BillingStore, hotel part (F6): rooms, stays, room states for the room STBs, the room STBs' own
// purchase reports posted to folios, and the outbox of charges for the property-management system.
#include <algorithm>

#include "columns.h"
#include "usher/billing/billing_store.h"
#include "usher/core/text.h"

namespace usher::billing {
using entitlement::HistoryRecord;
using entitlement::RelayReply;
using entitlement::SettlementKind;

Status BillingStore::set_hotel_credit(const Money& limit) {
  auto st = db_.prepare("INSERT INTO config VALUES ('hotel_credit', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  st.bind(1, std::to_string(limit.minor) + " " + entitlement::to_string(limit.currency));
  st.run();
  return ok_status();
}

Result<Money> BillingStore::hotel_credit() {
  auto st = db_.prepare("SELECT value FROM config WHERE key = 'hotel_credit'");
  if (!st.step()) return make_error(Errc::not_found, "no hotel credit limit set (`usher billing hotel config --credit 100.00 --currency EUR`)");
  const auto v = st.column_text(0);
  const auto sp = v.find(' ');
  auto cur = entitlement::parse_currency(v.substr(sp + 1));
  if (!cur) return cur.error();
  return Money{std::stoll(v.substr(0, sp)), *cur};
}

Status BillingStore::set_hotel_name(const std::string& name) {
  if (name.empty() || name.size() > 200) return make_error(Errc::invalid_argument, "hotel name: 1 to 200 bytes");
  if (!valid_utf8(name)) return make_error(Errc::invalid_argument, "hotel name: not UTF-8 text");
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7F) return make_error(Errc::invalid_argument, "hotel name: control characters are not allowed");
  }
  auto st = db_.prepare("INSERT INTO config VALUES ('hotel_name', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  st.bind(1, name);
  st.run();
  return ok_status();
}

std::string BillingStore::hotel_name() {
  auto st = db_.prepare("SELECT value FROM config WHERE key = 'hotel_name'");
  if (!st.step()) return "Hotel (name not set: usher billing hotel config --name)";
  return st.column_text(0);
}

Status BillingStore::add_room(const std::string& room, std::uint32_t stb_id, const std::string& link_endpoint) {
  if (auto known = engine_.stb_key(stb_id); !known) return known.error();  // not_found: the operator does not know it
  try {
    auto st = db_.prepare("INSERT INTO rooms (room, stb_id, link_endpoint) VALUES (?, ?, ?)");
    st.bind(1, room).bind(2, stb_id).bind(3, link_endpoint);
    st.run();
  } catch (const std::exception&) {
    return make_error(Errc::already_exists, "room " + room + " or STB " + std::to_string(stb_id) + " is already set up");
  }
  return ok_status();
}

namespace {
constexpr const char* kRoomColumns =
    "r.room, r.stb_id, r.link_endpoint, COALESCE((SELECT stay_id FROM stays s WHERE s.room = r.room AND s.checkout = 0), 0), "
    "r.pending_state IS NOT NULL";
Room room_from(const sql::Statement& st) {
  return Room{st.column_text(0), static_cast<std::uint32_t>(st.column_int(1)), st.column_text(2),
              static_cast<std::uint64_t>(st.column_int(3)), st.column_int(4) != 0};
}
Stay stay_from(const sql::Statement& st) {
  return Stay{static_cast<std::uint64_t>(st.column_int(0)), st.column_text(1), st.column_text(2), st.column_text(3),
              static_cast<std::uint64_t>(st.column_int(4)), static_cast<std::uint64_t>(st.column_int(5))};
}
constexpr const char* kStayColumns = "stay_id, room, guest_id, guest_name, checkin, checkout";
}  // namespace

std::vector<Room> BillingStore::rooms() {
  std::vector<Room> out;
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r ORDER BY r.room");
  while (st.step()) out.push_back(room_from(st));
  return out;
}

Result<Room> BillingStore::room(const std::string& room) {
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r WHERE r.room = ?");
  st.bind(1, room);
  if (!st.step()) return make_error(Errc::not_found, "no room " + room + " (add it with `usher billing hotel room add`)");
  return room_from(st);
}

Result<Room> BillingStore::room_of_stb(std::uint32_t stb_id) {
  auto st = db_.prepare(std::string("SELECT ") + kRoomColumns + " FROM rooms r WHERE r.stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) return make_error(Errc::not_found, "STB " + std::to_string(stb_id) + " is not a hotel room STB");
  return room_from(st);
}

Result<Stay> BillingStore::check_in(const std::string& room_name, const std::string& guest_id, const std::string& guest_name,
                                    std::uint64_t now) {
  // The room STB would refuse a room state under no certificate of the operator's.
  USHER_CHECK(check_certified());
  sql::Transaction tx(db_);
  auto r = room(room_name);
  if (!r) return r.error();
  if (r->stay_id != 0) {
    auto s = stay(r->stay_id);
    return make_error(Errc::already_exists, "room " + room_name + " is occupied by " + (s ? s->guest_name : "a guest") + ": check out first");
  }
  if (auto limit = hotel_credit(); !limit) return limit.error();
  auto st = db_.prepare("INSERT INTO stays (room, guest_id, guest_name, checkin) VALUES (?, ?, ?, ?) RETURNING stay_id");
  st.bind(1, room_name).bind(2, guest_id).bind(3, guest_name).bind(4, static_cast<std::int64_t>(now));
  st.step();
  const auto id = static_cast<std::uint64_t>(st.column_int(0));
  st.run();
  tx.commit();
  return stay(id);
}

Result<std::vector<std::uint8_t>> BillingStore::room_state(const std::string& room_name, bool clear, const std::string& billing_endpoint) {
  sql::Transaction tx(db_);
  auto r = room(room_name);
  if (!r) return r.error();
  auto limit = hotel_credit();
  if (!limit) return limit.error();
  entitlement::RoomState state;
  state.stb_id = r->stb_id;
  state.stay_id = r->stay_id;
  state.credit_limit = *limit;
  state.clear = clear;
  // A clear the STB has not taken yet (it was away at check-out) still has to happen: the next
  // guest must not see the last one's tickets.
  if (auto pending = pending_room_state(room_name)) {
    if (auto old = entitlement::RoomState::decode(*pending); old && old->clear) state.clear = true;
  }
  state.billing_endpoint = billing_endpoint;
  state.certificate = certificate_;
  {
    auto st = db_.prepare("UPDATE rooms SET state_counter = state_counter + 1 WHERE room = ? RETURNING state_counter");
    st.bind(1, room_name);
    st.step();
    state.counter = static_cast<std::uint64_t>(st.column_int(0));
  }
  state.sign(signing_private());
  auto bytes = state.encode();
  auto st = db_.prepare("UPDATE rooms SET pending_state = ? WHERE room = ?");
  st.bind(1, bytes).bind(2, room_name);
  st.run();
  tx.commit();
  return bytes;
}

std::optional<std::vector<std::uint8_t>> BillingStore::pending_room_state(const std::string& room_name) {
  auto st = db_.prepare("SELECT pending_state FROM rooms WHERE room = ? AND pending_state IS NOT NULL");
  st.bind(1, room_name);
  if (!st.step()) return std::nullopt;
  return st.column_blob(0);
}

void BillingStore::mark_state_delivered(const std::string& room_name) {
  auto st = db_.prepare("UPDATE rooms SET pending_state = NULL WHERE room = ?");
  st.bind(1, room_name);
  st.run();
}

Result<Stay> BillingStore::close_stay(const std::string& room_name, std::uint64_t now) {
  auto r = room(room_name);
  if (!r) return r.error();
  if (r->stay_id == 0) return make_error(Errc::not_found, "room " + room_name + " is vacant: nobody to check out");
  auto st = db_.prepare("UPDATE stays SET checkout = ? WHERE stay_id = ?");
  st.bind(1, static_cast<std::int64_t>(now)).bind(2, static_cast<std::int64_t>(r->stay_id));
  st.run();
  return stay(r->stay_id);
}

Result<Stay> BillingStore::stay(std::uint64_t stay_id) {
  auto st = db_.prepare(std::string("SELECT ") + kStayColumns + " FROM stays WHERE stay_id = ?");
  st.bind(1, static_cast<std::int64_t>(stay_id));
  if (!st.step()) return make_error(Errc::not_found, "no stay " + std::to_string(stay_id));
  return stay_from(st);
}

std::vector<Stay> BillingStore::stays() {
  std::vector<Stay> out;
  auto st = db_.prepare(std::string("SELECT ") + kStayColumns + " FROM stays ORDER BY stay_id");
  while (st.step()) out.push_back(stay_from(st));
  return out;
}

Result<RelayReply> BillingStore::room_report(std::span<const std::uint8_t> sealed, std::uint64_t now) {
  sql::Transaction tx(db_);
  auto checked = check_history(sealed);
  if (!checked) return checked.error();
  auto room = room_of_stb(checked->stb_id);
  if (!room) return room.error();
  RelayReply reply;
  reply.receipts = std::move(checked->receipts);
  // One path settles each record: not while a guest's handset is paying for the same records.
  if (!checked->fresh.empty()) {
    if (auto free = check_no_payment_under_way(checked->stb_id); !free) return free.error();
  }
  // One folio settlement per run of records of one stay.
  std::size_t i = 0;
  while (i < checked->fresh.size()) {
    const auto stay_id = checked->fresh[i].stay_id;
    std::vector<HistoryRecord> run;
    while (i < checked->fresh.size() && checked->fresh[i].stay_id == stay_id) run.push_back(checked->fresh[i++]);
    auto s = stay(stay_id);
    if (!s || s->room != room->room) {
      return make_error(Errc::not_entitled, "STB " + std::to_string(checked->stb_id) + " reports purchases for stay " +
                                                std::to_string(stay_id) + ", not a stay in room " + room->room);
    }
    Money amount{0, run.front().price.currency};
    std::vector<Money> prices;
    for (const auto& r : run) {
      auto price = price_of(checked->stb_id, r);
      if (!price) return price.error();
      amount.minor += price->minor;
      prices.push_back(*price);
    }
    auto rc = settle_records(SettlementKind::folio, checked->stb_id, run, amount, 0, stay_id, 0, now);
    if (!rc) return rc.error();
    // Each charge also goes to the hotel's PMS (a late charge if the guest has left).
    auto post = db_.prepare("INSERT INTO pms_postings (stay_id, room, guest_id, amount_minor, currency, description, time, stb_id, sequence) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (std::size_t k = 0; k < run.size(); ++k) {
      const auto& r = run[k];
      if (prices[k].minor == 0) continue;  // nothing to charge (already paid with a ticket)
      auto ev = engine_.event(r.event_id);
      post.reset();
      post.bind(1, static_cast<std::int64_t>(stay_id)).bind(2, s->room).bind(3, s->guest_id).bind(4, prices[k].minor)
          .bind(5, entitlement::to_string(prices[k].currency)).bind(6, "PPV " + (ev ? ev->title : std::to_string(r.event_id)))
          .bind(7, static_cast<std::int64_t>(r.time)).bind(8, checked->stb_id).bind(9, static_cast<std::int64_t>(r.sequence));
      post.run();
    }
    reply.receipts.push_back(rc->encode());
  }
  tx.commit();
  return reply;
}

// The PMS outbox.

std::vector<PmsPosting> BillingStore::pms_postings(bool open_only) {
  std::vector<PmsPosting> out;
  auto st = db_.prepare(std::string("SELECT posting_id, stay_id, room, guest_id, amount_minor, currency, description, time, state, attempts, "
                                    "answer FROM pms_postings ") +
                        (open_only ? "WHERE state = " + sql_value(PmsPostingState::pending) + " " : "") + "ORDER BY posting_id");
  while (st.step()) {
    PmsPosting p;
    p.posting_id = static_cast<std::uint64_t>(st.column_int(0));
    p.stay_id = static_cast<std::uint64_t>(st.column_int(1));
    p.room = st.column_text(2);
    p.guest_id = st.column_text(3);
    p.amount = money_of(st, 4, 5);
    p.description = st.column_text(6);
    p.time = static_cast<std::uint64_t>(st.column_int(7));
    p.state = pms_posting_state_of(st, 8);
    p.attempts = static_cast<int>(st.column_int(9));
    p.answer = st.column_text(10);
    out.push_back(p);
  }
  return out;
}

void BillingStore::pms_attempted(std::uint64_t posting_id) {
  auto st = db_.prepare("UPDATE pms_postings SET attempts = attempts + 1 WHERE posting_id = ?");
  st.bind(1, static_cast<std::int64_t>(posting_id));
  st.run();
}

void BillingStore::pms_answered(std::uint64_t posting_id, bool accepted, const std::string& answer, bool final) {
  auto st = db_.prepare("UPDATE pms_postings SET state = ?, answer = ? WHERE posting_id = ? AND state = " + sql_value(PmsPostingState::pending));
  const auto state = accepted ? PmsPostingState::ok : (final ? PmsPostingState::refused : PmsPostingState::pending);
  st.bind(1, std::string(to_string(state))).bind(2, answer).bind(3, static_cast<std::int64_t>(posting_id));
  st.run();
}

Status BillingStore::pms_retry(std::uint64_t posting_id) {
  auto st = db_.prepare("UPDATE pms_postings SET state = " + sql_value(PmsPostingState::pending) + ", attempts = 0 WHERE posting_id = ? AND state = " + sql_value(PmsPostingState::refused));
  st.bind(1, static_cast<std::int64_t>(posting_id));
  st.run();
  if (db_.changes() == 0) return make_error(Errc::not_found, "no refused posting " + std::to_string(posting_id));
  return ok_status();
}

void BillingStore::record_pms_link(const PmsLinkState& state) {
  auto st = db_.prepare("INSERT INTO pms_link (id, pms, condition, since, last_error, last_error_at, failed_attempts, recorded) "
                        "VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pms = excluded.pms, condition = excluded.condition, "
                        "since = excluded.since, last_error = excluded.last_error, last_error_at = excluded.last_error_at, "
                        "failed_attempts = excluded.failed_attempts, recorded = excluded.recorded");
  st.bind(1, state.pms).bind(2, std::string(stored_name(kPmsLinkConditions, state.condition))).bind(3, static_cast<std::int64_t>(state.since))
      .bind(4, state.last_error).bind(5, static_cast<std::int64_t>(state.last_error_at))
      .bind(6, static_cast<std::int64_t>(state.failed_attempts)).bind(7, static_cast<std::int64_t>(state.recorded));
  st.run();
}

std::optional<PmsLinkState> BillingStore::pms_link() {
  auto st = db_.prepare("SELECT pms, condition, since, last_error, last_error_at, failed_attempts, recorded FROM pms_link WHERE id = 1");
  if (!st.step()) return std::nullopt;
  PmsLinkState state;
  state.pms = st.column_text(0);
  state.condition = pms_link_condition_of(st, 1);
  state.since = static_cast<std::uint64_t>(st.column_int(2));
  state.last_error = st.column_text(3);
  state.last_error_at = static_cast<std::uint64_t>(st.column_int(4));
  state.failed_attempts = static_cast<std::uint64_t>(st.column_int(5));
  state.recorded = static_cast<std::uint64_t>(st.column_int(6));
  return state;
}

}  // namespace usher::billing
