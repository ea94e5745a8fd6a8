#include "usher/entitlement/request_counters.h"

#include "usher/entitlement/protocol.h"
#include "usher/entitlement/settlement.h"

namespace usher::entitlement {
namespace {
// A frame: u8 version, u8 type (request) or status (reply: 0 ok), 16-byte request id, body.
constexpr std::size_t kFrameHeader = 2 + sizeof(RequestId);
}  // namespace

std::string engine_message_kind(std::uint8_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::list_events:
      return "list_events";
    case MessageType::register_handset:
      return "register_handset";
    case MessageType::top_up:
      return "top_up";
    case MessageType::balance:
      return "balance";
    case MessageType::buy_ticket:
      return "buy_ticket";
    case MessageType::headend_keys:
      return "headend_keys";
    case MessageType::emm_carousel:
      return "emm_carousel";
    case MessageType::emm_changes:
      return "emm_changes";
    case MessageType::buy_by_code:
      return "buy_by_code";
    case MessageType::delivery_acks:
      return "delivery_acks";
    case MessageType::ticket_status:
      return "ticket_status";
    case MessageType::account_stbs:
      return "account_stbs";
    case MessageType::buy_pass:
      return "buy_pass";
    case MessageType::pass_price:
      return "pass_price";
    case MessageType::billing_event:
      return "billing_event";
    case MessageType::billing_stb_key:
      return "billing_stb_key";
    case MessageType::billing_card:
      return "billing_card";
    case MessageType::billing_holding:
      return "billing_holding";
    case MessageType::billing_impulse_purchases:
      return "billing_impulse_purchases";
    case MessageType::billing_charge:
      return "billing_charge";
    case MessageType::billing_refund:
      return "billing_refund";
    case MessageType::billing_ticket_payments:
      return "billing_ticket_payments";
    case MessageType::billing_account_stbs:
      return "billing_account_stbs";
  }
  return "unknown";
}

std::string billing_message_kind(std::uint8_t type) {
  switch (static_cast<BillingMessage>(type)) {
    case BillingMessage::relay:
      return "relay";
    case BillingMessage::pay:
      return "pay";
    case BillingMessage::prepay:
      return "prepay";
    case BillingMessage::room_report:
      return "room_report";
    case BillingMessage::certificate:
      return "certificate";
  }
  return "unknown";
}

void RequestCounters::count(std::span<const std::uint8_t> request, std::span<const std::uint8_t> reply) {
  const std::string kind = request.size() >= kFrameHeader ? kind_name_(request[1]) : "malformed";
  const bool ok = reply.size() >= kFrameHeader && reply[1] == 0;
  std::lock_guard lock(mutex_);
  auto& outcome = counts_.by_kind[kind];
  if (ok) {
    ++outcome.served;
    ++counts_.served;
  } else {
    ++outcome.refused;
    ++counts_.refused;
  }
}

void RequestCounters::count_batch(const std::vector<std::span<const std::uint8_t>>& requests,
                                  const std::vector<std::vector<std::uint8_t>>& replies) {
  for (std::size_t i = 0; i < requests.size() && i < replies.size(); ++i) count(requests[i], replies[i]);
}

RequestCounters::Snapshot RequestCounters::snapshot() const {
  std::lock_guard lock(mutex_);
  return counts_;
}

}  // namespace usher::entitlement
