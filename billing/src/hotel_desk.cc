#include "usher/billing/hotel_desk.h"

#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace ent = entitlement;

namespace {
// One call to a room STB's link; one client serves all the calls of a desk operation.
// `signer`: billing's, for what the STB serves only to a paired handset or billing.
Result<std::vector<std::uint8_t>> link_call(net::RequestClient& client, const std::string& endpoint, ent::LinkMessage type,
                                            std::span<const std::uint8_t> body, const ent::LinkSigner* signer = nullptr) {
  auto reply = signer != nullptr ? ent::call_link_signed(client, type, body, *signer)
                                 : ent::call_framed(client, static_cast<std::uint8_t>(type), body);
  if (!reply && reply.error().code == Errc::io) return make_error(Errc::io, "the room STB at " + endpoint + " does not answer");
  return reply;
}
}  // namespace

Result<bool> HotelDesk::add_room(const std::string& room, std::uint32_t stb_id, const std::string& link_endpoint) {
  USHER_CHECK(store_.hotel_credit());
  USHER_CHECK(store_.add_room(room, stb_id, link_endpoint));
  USHER_CHECK(store_.room_state(room, false, billing_endpoint_));
  return static_cast<bool>(push_pending(room, 0));
}

Result<Stay> HotelDesk::with_room_state(const std::string& room, bool clear, const std::function<Result<Stay>()>& change) {
  // One transaction: a crash between the two would leave a guest the room STB never hears of, or
  // one gone whom it still sells to.
  Result<Stay> stay = make_error(Errc::storage, "room " + room + ": nothing stored");
  auto stored = store_.batch([&] {
    stay = change();
    if (!stay) return;
    if (auto state = store_.room_state(room, clear, billing_endpoint_); !state) {
      stay = state.error();
      throw std::runtime_error(state.error().message);  // undoes the change
    }
  });
  if (!stay) return stay.error();
  if (!stored) return stored.error();
  return stay;
}

Result<HotelDesk::CheckIn> HotelDesk::check_in(const std::string& room, const std::string& guest_id, const std::string& guest_name,
                                               std::uint64_t now) {
  USHER_TRY(auto stay, with_room_state(room, false, [&] { return store_.check_in(room, guest_id, guest_name, now); }));
  CheckIn out{stay, false};
  out.stb_told = static_cast<bool>(push_pending(room, now));
  return out;
}

Status HotelDesk::collect(const Room& room, std::uint64_t now) {
  net::RequestClient link(room.link_endpoint, link_options_);
  const auto signer = store_.link_signer(room.stb_id);
  USHER_TRY(auto sealed, link_call(link, room.link_endpoint, ent::LinkMessage::collect_history, {}, &signer));
  USHER_TRY(auto reply, store_.room_report(sealed, now));
  for (const auto& rc : reply.receipts) {
    auto applied = link_call(link, room.link_endpoint, ent::LinkMessage::apply_receipt, rc, &signer);
    // A receipt the STB already has is fine; it answers "replayed".
    if (!applied && applied.error().code != Errc::replayed) return applied.error();
  }
  return ok_status();
}

Status HotelDesk::push_pending(const std::string& room_name, std::uint64_t now) {
  USHER_TRY(auto room, store_.room(room_name));
  auto state = store_.pending_room_state(room_name);
  if (!state) return ok_status();
  net::RequestClient link(room.link_endpoint, link_options_);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = link_call(link, room.link_endpoint, ent::LinkMessage::room_state, *state);
    if (r || r.error().code == Errc::replayed) {
      store_.mark_state_delivered(room_name);
      return ok_status();
    }
    if (r.error().code != Errc::not_entitled) return r.error();
    // The STB will not clear a room with purchases not yet collected: collect them, then again.
    USHER_CHECK(collect(room, now));
  }
  return make_error(Errc::not_entitled, "room " + room_name + ": the STB keeps buying while being cleared");
}

Result<HotelDesk::CheckOut> HotelDesk::check_out(const std::string& room_name, std::uint64_t now, bool force) {
  USHER_TRY(auto room, store_.room(room_name));
  if (room.stay_id == 0) return make_error(Errc::not_found, "room " + room_name + " is vacant: nobody to check out");
  if (auto c = collect(room, now); !c) {
    if (!force || c.error().code != Errc::io) {
      return make_error(c.error().code, c.error().message + ": the room's last purchases are not collected (retry, or --force to close the "
                                                            "folio now and post them as late charges)");
    }
  }
  USHER_TRY(auto stay, with_room_state(room_name, true, [&] { return store_.close_stay(room_name, now); }));
  CheckOut out;
  out.stb_cleared = static_cast<bool>(push_pending(room_name, now));
  out.stay = *store_.stay(stay.stay_id);
  USHER_TRY(auto folio, store_.folio(stay.stay_id));
  out.folio = folio;
  return out;
}

Status HotelDesk::sync(const std::string& room_name, std::uint64_t now) {
  USHER_TRY(auto room, store_.room(room_name));
  USHER_CHECK(collect(room, now));
  return push_pending(room_name, now);
}

}  // namespace usher::billing
