#include "usher/billing/billing_service.h"

#include <optional>
#include <set>

#include "usher/core/clock.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace ent = entitlement;

// A payment of the group waiting for its charge (step 2) and its receipt (step 3).
struct BillingService::Payment {
  std::size_t index = 0;
  std::uint64_t settlement_id = 0;
  bool charged = false;
  std::optional<ent::Receipt> receipt;
};

std::vector<std::uint8_t> BillingService::handle(std::span<const std::uint8_t> request) {
  return std::move(handle_batch({request}).front());
}

Result<std::vector<std::uint8_t>> BillingService::dispatch(std::uint8_t type, std::span<const std::uint8_t> body, std::uint64_t now,
                                                           std::vector<Payment>& payments, std::size_t index) {
  switch (static_cast<ent::BillingMessage>(type)) {
    case ent::BillingMessage::relay: {
      auto q = ent::decode_relay_request(body);
      if (!q) return q.error();
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
      auto r = store_.prepay(q->stb_id, q->amount, q->card_id, now);
      if (!r) return r.error();
      return ent::encode(*r);
    }
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
  try {
    // Settlements a failure left half done are finished before the group begins (see relay()).
    for (const auto& f : frames) {
      if (!f || f->type_or_status != static_cast<std::uint8_t>(ent::BillingMessage::relay)) continue;
      if (auto q = ent::decode_relay_request(f->body); q) {
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
        auto reply = dispatch(frames[i]->type_or_status, frames[i]->body, now, payments, i);
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
  if (payments.empty()) return replies;

  // Step 2, one transaction of the engine's: the charges (each once per settlement and spend).
  auto charged = store_.engine().batch([&] {
    for (auto& p : payments) {
      auto c = store_.charge(p.settlement_id);
      if (c) p.charged = true;
      else answer(p.index, c.error());
    }
  });
  if (!charged) {
    // Nothing charged: the settlements stay "charging" and are finished by the handset's retry.
    log_.error(charged.error().message);
    for (const auto& p : payments) {
      if (p.charged) replies[p.index] = ent::encode_error(frames[p.index]->id, retry);
    }
    return replies;
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
