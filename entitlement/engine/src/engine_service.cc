// EngineService: the engine's requests (protocol.h) answered over the operator's store.
#include "usher/entitlement/engine_service.h"

#include <chrono>

#include "usher/core/bytes.h"
#include "usher/core/clock.h"
#include "usher/core/log.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/wire.h"

namespace usher::entitlement {
using namespace wire;

std::vector<std::uint8_t> EngineService::handle(std::span<const std::uint8_t> request) {
  auto frame = decode_frame(request);
  if (!frame) {
    RequestId id{};  // echo the id when there is one, so that even a version mismatch reaches its caller
    if (request.size() >= 2 + id.size()) std::copy_n(request.begin() + 2, id.size(), id.begin());
    return encode_error(id, frame.error());
  }
  try {
    auto reply = dispatch(*frame);
    if (!reply) return encode_error(frame->id, reply.error());
    return encode_ok(frame->id, *reply);
  } catch (const std::exception& e) {
    Logger("entitlement").error("request failed: ", e.what());
    return encode_error(frame->id, make_error(Errc::storage, "internal error; the request had no effect"));
  }
}

namespace {
// Requests answered from a plain read, outside the batch's write transaction: a headend following
// the EMM feed never holds the lock that purchases wait for.
bool read_only(std::span<const std::uint8_t> request) {
  return request.size() >= 2 && request[0] == kProtocolVersion && request[1] == static_cast<std::uint8_t>(MessageType::emm_changes);
}
}  // namespace

std::vector<std::vector<std::uint8_t>> EngineService::handle_batch(const std::vector<std::span<const std::uint8_t>>& requests) {
  std::vector<std::vector<std::uint8_t>> replies(requests.size());
  std::vector<std::size_t> writes;
  std::vector<std::size_t> reads;
  for (std::size_t i = 0; i < requests.size(); ++i) (read_only(requests[i]) ? reads : writes).push_back(i);
  if (!writes.empty()) {
    auto committed = store_.batch([&] {
      for (const auto i : writes) replies[i] = handle(requests[i]);
    });
    if (!committed) {
      // Nothing of the group is durable: every request is answered with the failure.
      for (const auto i : writes) {
        RequestId id{};
        if (requests[i].size() >= 2 + id.size()) std::copy_n(requests[i].begin() + 2, id.size(), id.begin());
        replies[i] = encode_error(id, committed.error());
      }
    }
  }
  // After the commit: a headend asking in the same batch as a purchase sees its EMM.
  for (const auto i : reads) replies[i] = handle(requests[i]);
  return replies;
}

std::vector<std::uint8_t> EngineService::emm_changes(std::uint64_t cursor) {
  // Expired entries leave the queue a few at a time, in a transaction as short as a purchase's,
  // as removals of the feed; then the page is read with no write lock held.
  try {
    store_.purge_expired_emms(unix_now());
  } catch (const std::exception& e) {
    Logger("entitlement").warn("expired EMMs not purged this time: ", e.what());
  }
  // A service key rotation that has started: its group EMMs sealed again without the older key.
  try {
    if (auto settled = store_.settle_key_rotations(unix_now()); !settled) {
      Logger("entitlement").warn("key rotations not completed this time: ", settled.error().message);
    } else if (*settled > 0) {
      Logger("entitlement").info(*settled, " service key rotation(s) started: group EMMs sealed again with the new key only");
    }
  } catch (const std::exception& e) {
    Logger("entitlement").warn("key rotations not completed this time: ", e.what());
  }
  return encode(store_.emm_changes(cursor));
}

Status EngineService::admit_spend(const SpendAuthorization& spend) {
  // Unverified spends are refused by the store with their reason; they take nothing from a bucket.
  auto card = store_.card(spend.card_id);
  if (!card || !spend.verify(card->handset_public)) return ok_status();
  if (!per_card_.admit(spend.card_id, RateLimiter::Clock::now())) {
    return make_error(Errc::busy, "too many requests from card " + std::to_string(spend.card_id) + ": try again in a few seconds");
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> EngineService::dispatch_signed(const Frame& f) {
  const auto type = static_cast<MessageType>(f.type_or_status);
  auto s = split_signed(f.body);
  if (!s) return s.error();
  const auto now = unix_now();
  std::optional<CardInfo> signer;
  if (type == MessageType::register_handset) {
    USHER_TRY(auto q, decode_register_handset(s->body));
    if (s->card_id != 0 || !s->verify(f.type_or_status, f.id, q.handset_public)) {
      return make_error(Errc::auth_failed, "register_handset must be signed by the key it registers");
    }
    if (!registrations_.admit(0, RateLimiter::Clock::now())) {
      return make_error(Errc::busy, "too many new handsets at once: try again in a minute");
    }
  } else {
    auto card = store_.card(s->card_id);
    // One answer whether the card is unknown or the key is wrong: nobody learns which cards exist.
    if (!card || !s->verify(f.type_or_status, f.id, card->handset_public)) {
      return make_error(Errc::auth_failed, "the request is not signed by the handset holding card " + std::to_string(s->card_id));
    }
    if (!per_card_.admit(s->card_id, RateLimiter::Clock::now())) {
      return make_error(Errc::busy, "too many requests from card " + std::to_string(s->card_id) + ": try again in a few seconds");
    }
    signer = std::move(*card);
  }
  // After the signature: only the signer hears about its clock.
  USHER_CHECK(check_request_time(s->time, now));
  const auto body = s->body;
  return store_.once_signed(s->replay_key(), s->card_id, s->time, now, [&]() -> Result<std::vector<std::uint8_t>> {
    switch (type) {
      case MessageType::register_handset: {
        USHER_TRY(auto q, decode_register_handset(body));
        USHER_TRY(auto c, store_.register_handset(q.account, q.handset_public, q.currency));
        return encode(RegisterHandsetReply{c.card_id, {0, c.currency}, c.certificate});
      }
      case MessageType::balance: {
        ByteReader r(body);
        std::uint64_t card_id = 0;
        if (!r.u64(card_id) || !finished(r)) return bad("balance");
        if (card_id != signer->card_id) return make_error(Errc::not_entitled, "a handset reads its own card's balance only");
        USHER_TRY(auto b, store_.balance(card_id));
        return encode_card(card_id, b);
      }
      case MessageType::top_up: {
        USHER_TRY(auto q, decode_top_up(body));
        if (q.card_id != signer->card_id) return make_error(Errc::not_entitled, "a handset tops up its own card only");
        USHER_TRY(auto b, store_.top_up(q.card_id, q.amount_minor, q.funding_reference, funding_));
        return encode_card(q.card_id, b);
      }
      case MessageType::ticket_status: {
        USHER_TRY(auto ids, decode_ids(body));
        ByteWriter w;
        w.u16(static_cast<std::uint16_t>(ids.size()));
        for (auto id : ids) {
          // Another card's ticket is reported as unknown: its state is its buyer's to know.
          const bool mine = store_.ticket_card(id) == signer->card_id;
          auto st = mine ? store_.ticket_state(id) : Result<EntitlementStore::TicketState>(make_error(Errc::not_found, ""));
          w.u8(!st ? 2 : st->status == TicketStatus::revoked ? 1 : 0);
          w.u64(st ? st->delivered : 0);
        }
        return w.take();
      }
      case MessageType::account_stbs: {
        ByteReader r(body);
        std::string account;
        if (!get_text(r, account) || !finished(r)) return bad("account_stbs");
        ByteWriter w;
        const auto ids = store_.account_stbs(account);
        w.u16(static_cast<std::uint16_t>(ids.size()));
        for (auto id : ids) w.u32(id);
        return w.take();
      }
      default:
        break;
    }
    return make_error(Errc::invalid_argument, "not a signed request type");
  });
}

Result<std::vector<std::uint8_t>> EngineService::dispatch(const Frame& f) {
  switch (static_cast<MessageType>(f.type_or_status)) {
    case MessageType::list_events:
      return encode_events(store_.events());
    case MessageType::balance:
    case MessageType::register_handset:
    case MessageType::top_up:
    case MessageType::ticket_status:
    case MessageType::account_stbs:
      return dispatch_signed(f);
    case MessageType::buy_ticket: {
      USHER_TRY(auto q, decode_buy_ticket(f.body));
      USHER_CHECK(admit_spend(q.spend));
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        USHER_TRY(auto p, store_.buy_ticket(q.event_id, q.stb_id, q.spend, unix_now(), q.deliver_at));
        return encode(BuyTicketReply{p.ticket.encode(), p.emm_section, p.balance});
      });
    }
    case MessageType::buy_by_code: {
      USHER_TRY(auto q, decode_buy_by_code(f.body));
      USHER_CHECK(admit_spend(q.spend));
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        USHER_TRY(auto p, store_.buy_by_code(q.code, q.spend, unix_now()));
        return encode(BuyTicketReply{p.ticket.encode(), p.emm_section, p.balance});
      });
    }
    case MessageType::delivery_acks: {
      USHER_TRY(auto blobs, decode_blobs(f.body));
      std::vector<DeliveryAck> acks;
      for (const auto& b : blobs) {
        USHER_TRY(auto a, DeliveryAck::decode(b));
        acks.push_back(a);
      }
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        USHER_TRY(auto confirmed, store_.record_delivery_acks(acks));
        return encode_ids(confirmed);
      });
    }
    case MessageType::buy_pass: {
      USHER_TRY(auto q, decode_buy_pass(f.body));
      USHER_CHECK(admit_spend(q.spend));
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        USHER_TRY(auto p, store_.buy_pass(q.service_id, q.days, q.stb_id, q.spend, unix_now()));
        return encode(BuyTicketReply{p.ticket.encode(), p.emm_section, p.balance});
      });
    }
    case MessageType::pass_price: {
      ByteReader r(f.body);
      std::uint16_t service = 0;
      if (!r.u16(service) || !finished(r)) return bad("pass_price");
      USHER_TRY(auto price, store_.pass_price(service));
      return encode_money(price);
    }
    case MessageType::headend_keys: {
      ByteReader r(f.body);
      std::uint32_t headend_id = 0;
      if (!r.u32(headend_id) || !finished(r)) return bad("headend_keys");
      USHER_TRY(auto sealed, store_.sealed_key_bundle(headend_id, unix_now()));
      ByteWriter w;
      put_blob(w, sealed);
      // The EMM bandwidth the operator set (bit/s; 0: none), after the bundle: a headend that
      // predates it stops reading before.
      w.u64(store_.emm_kbps() * 1000);
      // Then the service keys' versions with their start times (rotation), sealed apart: a headend
      // that predates them stops reading before.
      USHER_TRY(auto versions, store_.sealed_key_versions(headend_id, unix_now()));
      put_blob(w, versions);
      return w.take();
    }
    case MessageType::emm_carousel:
      return encode_sections(store_.emm_sections(unix_now()));
    case MessageType::emm_changes: {
      USHER_TRY(auto cursor, decode_emm_changes_request(f.body));
      return emm_changes(cursor);
    }
    case MessageType::billing_event:
    case MessageType::billing_stb_key:
    case MessageType::billing_card:
    case MessageType::billing_holding:
    case MessageType::billing_impulse_purchases:
    case MessageType::billing_charge:
    case MessageType::billing_refund:
    case MessageType::billing_ticket_payments:
    case MessageType::billing_account_stbs:
      return dispatch_billing(f);
  }
  return make_error(Errc::invalid_argument, "unknown message type " + std::to_string(f.type_or_status));
}

}  // namespace usher::entitlement
