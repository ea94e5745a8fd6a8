#include "usher/billing/billing_service.h"

#include <optional>
#include <set>

#include "usher/core/clock.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"

namespace usher::billing {
namespace ent = entitlement;

// A payment of the group waiting for its charge (step 2) and its receipt (step 3).
struct BillingService::Payment {
  std::size_t index = 0;
  std::uint64_t settlement_id = 0;
  bool charged = false;
  std::optional<ent::Receipt> receipt;
};

Result<std::span<const std::uint8_t>> BillingService::authenticate(const ent::Frame& frame, std::uint64_t now) {
  auto s = ent::split_signed(frame.body);
  if (!s) return s.error();
  auto card_key = store_.engine().card_key(s->card_id);
  // An engine that did not answer says nothing about the card: the handset is asked to try again.
  if (!card_key && (card_key.error().code == Errc::io || card_key.error().code == Errc::storage || card_key.error().code == Errc::busy)) {
    return card_key.error();
  }
  // One answer whether the card is unknown or the key is wrong: nobody learns which cards exist.
  if (!card_key || !s->verify(frame.type_or_status, frame.id, *card_key)) {
    return make_error(Errc::auth_failed, "the request is not signed by the handset holding card " + std::to_string(s->card_id));
  }
  if (auto fresh = ent::check_request_time(s->time, now); !fresh) return fresh.error();
  if (!per_card_.admit(s->card_id, RateLimiter::Clock::now())) {
    return make_error(Errc::busy, "too many requests from card " + std::to_string(s->card_id) + ": try again in a few seconds");
  }
  return s->body;
}

std::vector<std::uint8_t> BillingService::handle(std::span<const std::uint8_t> request) {
  return std::move(handle_batch({request}).front());
}

Result<std::vector<std::uint8_t>> BillingService::dispatch(std::uint8_t type, std::span<const std::uint8_t> body, std::uint64_t now,
                                                           std::vector<Payment>& payments, std::size_t index, std::uint64_t signer_card) {
  switch (static_cast<ent::BillingMessage>(type)) {
    case ent::BillingMessage::relay: {
      auto q = ent::decode_relay_request(body);
      if (!q) return q.error();
      if (q->card_id != signer_card) return make_error(Errc::auth_failed, "a relay names the card of the handset that signs it");
      auto r = store_.relay(q->sealed_history, q->card_id, now);
      if (!r) return r.error();
      return ent::encode(*r);
    }
    case ent::BillingMessage::pay: {
      auto q = ent::decode_pay_request(body);
      if (!q) return q.error();
      auto started = store_.start_payment(q->settlement_id, q->spend, now);
      if (!started) return started.error();
      if (*started) return (*started)->encode();  // paid before: the same receipt
      payments.push_back({index, q->settlement_id, false, std::nullopt});
      return std::vector<std::uint8_t>{};  // not answered here: once charged (step 3)
    }
    case ent::BillingMessage::prepay: {
      auto q = ent::decode_prepay_request(body);
      if (!q) return q.error();
      if (q->card_id != signer_card) return make_error(Errc::auth_failed, "a prepayment names the card of the handset that signs it");
      auto r = store_.prepay(q->stb_id, q->amount, q->card_id, now);
      if (!r) return r.error();
      return ent::encode(*r);
    }
    case ent::BillingMessage::certificate:
      // Public: the handset relays it to the STB, which seals its history for billing's key.
      return store_.certificate().encode();
    case ent::BillingMessage::room_report: {
      auto r = store_.room_report(body, now);
      if (!r) return r.error();
      if (!r->receipts.empty()) log_.info("room report: ", r->receipts.size(), " folio settlements");
      return ent::encode(*r);
    }
  }
  return make_error(Errc::invalid_argument, "unknown billing message " + std::to_string(type));
}

std::vector<std::vector<std::uint8_t>> BillingService::handle_batch(const std::vector<std::span<const std::uint8_t>>& requests) {
  const auto now = unix_now();
  const Error retry{Errc::storage, "billing could not store that; try again"};
  std::vector<std::vector<std::uint8_t>> replies(requests.size());
  std::vector<std::optional<ent::Frame>> frames(requests.size());
  auto answer = [&](std::size_t i, const Result<std::vector<std::uint8_t>>& r) {
    if (r) {
      replies[i] = ent::encode_ok(frames[i]->id, *r);
    } else {
      if (r.error().code != Errc::storage) log_.warn("refused: ", r.error().message);
      replies[i] = ent::encode_error(frames[i]->id, r.error());
    }
  };
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto f = ent::decode_frame(requests[i]);
    if (!f) {
      replies[i] = ent::encode_error(ent::RequestId{}, f.error());
      continue;
    }
    frames[i] = std::move(*f);
    replies[i] = ent::encode_error(frames[i]->id, retry);  // until the group is committed
  }
  // Signed requests (relay, prepay): checked before the group; a replay is answered from memory.
  std::erase_if(answered_, [&](const auto& e) { return e.second.first + 2 * ent::kRequestWindowSeconds < now; });
  std::vector<std::optional<crypto::Digest>> replay_keys(requests.size());
  std::vector<std::span<const std::uint8_t>> bodies(requests.size());
  std::vector<std::uint64_t> signer_cards(requests.size(), 0);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!frames[i]) continue;
    bodies[i] = frames[i]->body;
    const auto type = static_cast<ent::BillingMessage>(frames[i]->type_or_status);
    if (type != ent::BillingMessage::relay && type != ent::BillingMessage::prepay) continue;
    if (auto s = ent::split_signed(frames[i]->body); s) {
      if (auto seen = answered_.find(s->replay_key()); seen != answered_.end()) {
        replies[i] = seen->second.second;
        frames[i].reset();  // answered
        continue;
      }
      replay_keys[i] = s->replay_key();
      signer_cards[i] = s->card_id;
    }
    auto inner = authenticate(*frames[i], now);
    if (!inner) {
      log_.warn("refused: ", inner.error().message);
      replies[i] = ent::encode_error(frames[i]->id, inner.error());
      frames[i].reset();
      continue;
    }
    bodies[i] = *inner;
  }
  try {
    // Settlements a failure left half done are finished before the group begins (see relay()).
    for (const auto& f : frames) {
      if (!f || f->type_or_status != static_cast<std::uint8_t>(ent::BillingMessage::relay)) continue;
      const auto i = static_cast<std::size_t>(&f - frames.data());
      if (auto q = ent::decode_relay_request(bodies[i]); q) {
        if (auto stb = ent::sealed_history_stb(q->sealed_history); stb) store_.finish_interrupted(*stb, now);
      }
    }
  } catch (const std::exception& e) {
    log_.error("finishing interrupted settlements: ", e.what());
  }

  // Step 1, one transaction of billing's: relays quoted, payments marked "charging", and the rest.
  std::vector<Payment> payments;
  auto grouped = store_.batch([&] {
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (!frames[i]) continue;
      try {
        auto reply = dispatch(frames[i]->type_or_status, bodies[i], now, payments, i, signer_cards[i]);
        const bool charge_pending = !payments.empty() && payments.back().index == i;
        if (!charge_pending) answer(i, reply);
      } catch (const std::exception& e) {
        log_.error("billing: ", e.what());
        replies[i] = ent::encode_error(frames[i]->id, retry);
      }
    }
  });
  if (!grouped) {
    log_.error(grouped.error().message);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (frames[i]) replies[i] = ent::encode_error(frames[i]->id, retry);
    }
    return replies;
  }
  // Relays and prepayments are answered in step 1: remembered for their replays.
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (replay_keys[i] && replies[i].size() > 1 && replies[i][1] == 0) answered_[*replay_keys[i]] = {now, replies[i]};
  }
  if (payments.empty()) return replies;

  // Step 2, at the engine: the charges, each once per settlement and spend (the engine commits
  // each before it answers). One the engine did not answer stays "charging" and is finished by the
  // handset's retry or by recover(); the handset hears why.
  for (auto& p : payments) {
    try {
      auto c = store_.charge(p.settlement_id);
      if (c) p.charged = true;
      else answer(p.index, c.error());
    } catch (const std::exception& e) {
      log_.error("billing: ", e.what());
      replies[p.index] = ent::encode_error(frames[p.index]->id, retry);
    }
  }

  // Step 3, one transaction of billing's: records settled and receipts signed.
  auto completed = store_.batch([&] {
    for (auto& p : payments) {
      if (!p.charged) continue;
      auto rc = store_.complete_payment(p.settlement_id, now);
      if (rc) p.receipt = *rc;
      else answer(p.index, rc.error());
    }
  });
  if (!completed) log_.error(completed.error().message);
  std::set<std::uint64_t> logged;
  for (const auto& p : payments) {
    if (!p.receipt) continue;
    if (!completed) {
      // Charged but not yet receipted: the settlement stays "charging"; a retry finishes it.
      replies[p.index] = ent::encode_error(frames[p.index]->id, retry);
      continue;
    }
    answer(p.index, p.receipt->encode());
    if (!logged.insert(p.settlement_id).second) continue;  // the same payment twice in the group
    log_.info("settlement ", p.receipt->receipt_id, " paid: ", ent::format_money(p.receipt->amount), " from card ", p.receipt->card_id,
              " for STB ", p.receipt->stb_id);
  }
  return replies;
}

}  // namespace usher::billing
