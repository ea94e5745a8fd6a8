#include "usher/billing/billing_service.h"

#include "usher/core/clock.h"
#include "usher/entitlement/protocol.h"

namespace usher::billing {
namespace ent = entitlement;

std::vector<std::uint8_t> BillingService::handle(std::span<const std::uint8_t> request) {
  auto frame = ent::decode_frame(request);
  if (!frame) return ent::encode_error(ent::RequestId{}, frame.error());
  auto reply = [&]() -> Result<std::vector<std::uint8_t>> {
    switch (static_cast<ent::BillingMessage>(frame->type_or_status)) {
      case ent::BillingMessage::relay: {
        auto q = ent::decode_relay_request(frame->body);
        if (!q) return q.error();
        auto r = store_.relay(q->sealed_history, q->card_id, unix_now());
        if (!r) return r.error();
        return ent::encode(*r);
      }
      case ent::BillingMessage::pay: {
        auto q = ent::decode_pay_request(frame->body);
        if (!q) return q.error();
        auto r = store_.pay(q->settlement_id, q->spend, unix_now());
        if (!r) return r.error();
        log_.info("settlement ", r->receipt_id, " paid: ", ent::format_money(r->amount), " from card ", r->card_id, " for STB ", r->stb_id);
        return r->encode();
      }
      case ent::BillingMessage::prepay: {
        auto q = ent::decode_prepay_request(frame->body);
        if (!q) return q.error();
        auto r = store_.prepay(q->stb_id, q->amount, q->card_id, unix_now());
        if (!r) return r.error();
        return ent::encode(*r);
      }
      case ent::BillingMessage::room_report: {
        auto r = store_.room_report(frame->body, unix_now());
        if (!r) return r.error();
        if (!r->receipts.empty()) log_.info("room report: ", r->receipts.size(), " folio settlements");
        return ent::encode(*r);
      }
    }
    return make_error(Errc::invalid_argument, "unknown billing message " + std::to_string(frame->type_or_status));
  };
  try {
    auto r = reply();
    if (!r) {
      log_.warn("refused: ", r.error().message);
      return ent::encode_error(frame->id, r.error());
    }
    return ent::encode_ok(frame->id, *r);
  } catch (const std::exception& e) {
    log_.error("billing: ", e.what());
    return ent::encode_error(frame->id, make_error(Errc::storage, "billing could not store that; try again"));
  }
}

}  // namespace usher::billing
