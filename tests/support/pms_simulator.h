// PmsSimulator: a hotel property-management system for tests, speaking the FIAS-style records of
// billing/fias.h on a loopback TCP port. It checks guests in and out (sends GI/GO), answers charge
// postings (PA ASOK, or ASNG for a guest the PMS never had in that room), and posts each P# once however often it
// is sent. Faults on demand: leave the next postings unanswered, refuse them, or drop the link.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "usher/core/tcp.h"

namespace usher::testing {

class PmsSimulator {
 public:
  struct Charge {
    std::string room;
    std::string guest_id;
    std::int64_t amount_minor = 0;
    std::string description;
  };
  // Listens on 127.0.0.1:`port` (0: any free port), e.g. the port a billing link already dials.
  explicit PmsSimulator(std::uint16_t port = 0);
  ~PmsSimulator();
  [[nodiscard]] std::uint16_t port() const { return port_; }

  void guest_in(const std::string& room, const std::string& guest_id, const std::string& name);
  void guest_out(const std::string& room, const std::string& guest_id);
  void ignore_next_postings(int n) { ignore_ += n; }
  void refuse_next_postings(int n) { refuse_ += n; }
  void accept_postings() { refuse_ = 0; }
  void drop_link() { drop_ = true; }

  // Charges posted, once each, by P#.
  std::map<std::uint64_t, Charge> charges();
  [[nodiscard]] int postings_received() const { return received_; }
  [[nodiscard]] bool linked() const { return linked_; }

 private:
  void serve();
  void send(const std::vector<std::uint8_t>& frame);
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> ignore_{0};
  std::atomic<int> refuse_{0};
  std::atomic<bool> drop_{false};
  std::atomic<int> received_{0};
  std::atomic<bool> linked_{false};
  std::mutex mu_;
  std::vector<std::vector<std::uint8_t>> outbox_;
  std::set<std::string> guests_;  // "room/guest id" ever checked in
  std::map<std::uint64_t, Charge> charges_;
  std::thread thread_;
  std::unique_ptr<net::TcpListener> listener_;
};

}  // namespace usher::testing
