#include "usher/stb/room_report.h"

#include "usher/core/clock.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"

namespace usher::stb {

Result<std::uint64_t> report_to_billing(SecureElement& se, const std::string& billing_endpoint) {
  // Sealed for the hotel billing's certificate the room state brought.
  auto sealed = se.sealed_unsettled_history();
  if (!sealed) return sealed.error();
  net::RequestClient client(billing_endpoint, {std::chrono::milliseconds(1500), 2, 1});
  auto body = entitlement::call_framed(client, static_cast<std::uint8_t>(entitlement::BillingMessage::room_report), *sealed);
  if (!body) return body.error();
  auto reply = entitlement::decode_relay_reply(*body);
  if (!reply) return reply.error();
  std::uint64_t settled = 0;
  for (const auto& rc : reply->receipts) {
    auto applied = se.apply_receipt(rc, unix_now());
    if (applied) settled += applied->records_settled;
    else if (applied.error().code != Errc::replayed) return applied.error();
  }
  return settled;
}

}  // namespace usher::stb
