// RunningEngine: the engine's protocol (EngineService) served over a real ZeroMQ socket on loopback
// from a thread of the test process, until the object goes. For tests of the engine's clients (the
// headend's key link, the wallet's registration) that need an engine but not its process.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "usher/core/zmq.h"
#include "usher/entitlement/engine_service.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/store.h"

namespace usher::testing {

class RunningEngine {
 public:
  explicit RunningEngine(entitlement::EntitlementStore& store, const std::string& endpoint = "tcp://127.0.0.1:*")
      : service_(store, acquirer_),
        server_(endpoint, net::ReplyServer::BatchHandler([this](const auto& r) { return service_.handle_batch(r); })),
        thread_([this] { server_.run(stop_); }) {}
  RunningEngine(const RunningEngine&) = delete;
  RunningEngine& operator=(const RunningEngine&) = delete;
  ~RunningEngine() {
    stop_ = true;
    thread_.join();
  }
  [[nodiscard]] std::string endpoint() const { return server_.endpoint(); }

 private:
  entitlement::TestAcquirer acquirer_;
  entitlement::EngineService service_;
  net::ReplyServer server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace usher::testing
