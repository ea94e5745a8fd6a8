// StbLinkServer: an STB's local link (as `usher stb link` serves it) on loopback ZeroMQ, run on a
// thread of the test with its own connection to the STB's secure element, until destroyed.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/local_link.h"

namespace usher::testing {

class StbLinkServer {
 public:
  explicit StbLinkServer(const std::string& stb_home, const std::string& bind = "tcp://127.0.0.1:*")
      : se_(stb::SecureElement::open(stb_home).value()), link_(se_, stb_home),
        server_(bind, [this](std::span<const std::uint8_t> r) { return link_.handle(r); }, entitlement::kLinkServerLimits),
        thread_([this] { server_.run(stop_); }) {}
  ~StbLinkServer() {
    stop_ = true;
    thread_.join();
  }
  StbLinkServer(const StbLinkServer&) = delete;
  StbLinkServer& operator=(const StbLinkServer&) = delete;
  [[nodiscard]] std::string endpoint() const { return server_.endpoint(); }
  // The code a handset pairs with now (read before the server's thread changes it: pair one at a time).
  [[nodiscard]] std::string pairing_code() const { return link_.pairing_code(); }

 private:
  std::atomic<bool> stop_{false};
  stb::SecureElement se_;
  stb::LocalLink link_;
  net::ReplyServer server_;
  std::thread thread_;
};

}  // namespace usher::testing
