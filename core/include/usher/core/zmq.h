// The one place Usher uses ZeroMQ (through cppzmq's RAII types): a request/reply server and a
// client that retries.
//
// ReplyServer binds a ROUTER socket and answers each request with a handler's reply, one at a
// time, until stopped. RequestClient sends a request and waits for the reply; when none arrives in
// time it drops the socket, reconnects and sends the same bytes again (the "lazy pirate" pattern),
// so the request id inside the payload lets the server recognise the retry.
//
//   ReplyServer server("tcp://127.0.0.1:7700", [](auto request) { return handle(request); });
//   server.run(stop_flag);
//   RequestClient client("tcp://127.0.0.1:7700");
//   auto reply = client.call(request);   // Errc::io after the retries run out
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "usher/core/result.h"

namespace usher::net {

using Bytes = std::vector<std::uint8_t>;

// How much a ReplyServer accepts from a caller. ZeroMQ refuses a frame larger than
// `max_message_bytes` as it reads the frame's length, before allocating anything for it, and drops
// that connection; the server keeps serving everyone else. At most `queue_per_caller` requests wait
// per connection (ZMQ_RCVHWM), so what one connection can make the server hold is bounded by their
// product.
struct ServerLimits {
  std::size_t max_message_bytes = 64 * 1024;
  int queue_per_caller = 256;
};

class ReplyServer {
 public:
  using Handler = std::function<Bytes(std::span<const std::uint8_t> request)>;
  // Gets every request waiting at once (up to kMaxBatch) and returns one reply each, in order: lets
  // a service commit a group of requests together before it answers any of them.
  using BatchHandler = std::function<std::vector<Bytes>(const std::vector<std::span<const std::uint8_t>>& requests)>;
  static constexpr std::size_t kMaxBatch = 64;
  // Binds at once; throws std::runtime_error naming the endpoint if it cannot. Each service passes
  // the limit its largest request needs (e.g. entitlement::kMaxEngineRequestBytes).
  ReplyServer(const std::string& endpoint, Handler handler, ServerLimits limits = {});
  ReplyServer(const std::string& endpoint, BatchHandler handler, ServerLimits limits = {});
  ReplyServer(const ReplyServer&) = delete;
  ReplyServer& operator=(const ReplyServer&) = delete;
  ~ReplyServer();
  // Serves until `stop` becomes true (checked every 100 ms).
  void run(const std::atomic<bool>& stop);
  // The endpoint actually bound (useful with tcp://127.0.0.1:* ).
  [[nodiscard]] std::string endpoint() const;
  [[nodiscard]] std::uint64_t requests_served() const { return served_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  BatchHandler handler_;
  std::uint64_t served_ = 0;
};

struct ClientOptions {
  std::chrono::milliseconds timeout{2000};  // for the first attempt
  int attempts = 3;
  // Each retry waits this many times longer than the attempt before: a client of a service that
  // is merely busy should not give up (or add its retries to the queue) as soon as one that is down.
  int growth = 1;
};

class RequestClient {
 public:
  explicit RequestClient(std::string endpoint, ClientOptions options = {});
  RequestClient(const RequestClient&) = delete;
  RequestClient& operator=(const RequestClient&) = delete;
  ~RequestClient();
  // Sends `request` and returns the reply; Errc::io when no reply came after every attempt.
  Result<Bytes> call(std::span<const std::uint8_t> request);

 private:
  void connect();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string endpoint_;
  ClientOptions options_;
};

}  // namespace usher::net
