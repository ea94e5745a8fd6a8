// HotelDesk: the front desk's operations on the hotel network (flow F6). It talks to each room's
// STB over the STB's link (`usher stb link` on the hotel network) with billing's signed room
// states, collects the room's purchases into the guest's folio, and clears the room at check-out.
//
//   HotelDesk desk(store, "tcp://10.0.0.5:7710");
//   desk.check_in("102", "12345", "Koehler, Andreas", now);   // the room STB may buy from now
//   auto out = desk.check_out("102", now, /*force=*/false);    // folio closed, room cleared
//   std::cout << out->folio.text();
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "usher/billing/billing_store.h"
#include "usher/core/zmq.h"

namespace usher::billing {

class HotelDesk {
 public:
  // `billing_endpoint`: where room STBs report their purchases (told to them in the room state).
  HotelDesk(BillingStore& store, std::string billing_endpoint,
            net::ClientOptions link_options = {std::chrono::milliseconds(700), 2, 1})
      : store_(store), billing_endpoint_(std::move(billing_endpoint)), link_options_(link_options) {}

  // Sets up a room and its STB, and tells the STB it is a vacant hotel room (no purchases until a
  // check-in). Returns whether the STB took it (else it is told later, by sync).
  Result<bool> add_room(const std::string& room, std::uint32_t stb_id, const std::string& link_endpoint);

  struct CheckIn {
    Stay stay;
    bool stb_told = false;  // false: the STB did not answer; it is told when it does (sync)
  };
  Result<CheckIn> check_in(const std::string& room, const std::string& guest_id, const std::string& guest_name, std::uint64_t now);

  struct CheckOut {
    Stay stay;
    Statement folio;
    bool stb_cleared = false;  // false: the room STB did not answer; cleared when it does (sync)
  };
  // Collects the room STB's last purchases into the folio, closes it, and clears the STB. Without
  // `force`, refused while the STB does not answer (its purchases would be missing from the bill);
  // with it, the folio closes and purchases that arrive later are posted to it as late charges.
  Result<CheckOut> check_out(const std::string& room, std::uint64_t now, bool force);

  // Collects a room STB's purchases into folios (receipts back to the STB) and delivers a pending
  // room state. For the billing service's periodic round.
  Status sync(const std::string& room, std::uint64_t now);

 private:
  Status collect(const Room& room, std::uint64_t now);
  Status push_pending(const std::string& room, std::uint64_t now);
  // `change` (a check-in or check-out) and the room state it makes for the STB, stored together.
  Result<Stay> with_room_state(const std::string& room, bool clear, const std::function<Result<Stay>()>& change);
  BillingStore& store_;
  std::string billing_endpoint_;
  net::ClientOptions link_options_;
};

}  // namespace usher::billing
