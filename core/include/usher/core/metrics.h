// Prometheus metrics for the long-running commands (`--metrics HOST:PORT`): the text exposition
// format, and a tiny HTTP/1.0 server that answers `GET /metrics` on its own thread.
//
// The command owns its counters; it hands the server a function that renders them, called on the
// server's thread for each scrape, so whatever it reads must be safe to read from there (atomics, or
// a snapshot the command publishes under a mutex: see MetricsSnapshot).
//
//   auto server = need(MetricsServer::start("127.0.0.1:9100", [&] {
//     PrometheusText text;
//     text.counter("usher_requests_total", "Requests served.", served.load());
//     return text.str();
//   }));
//
// The port is an outside one: a request is read up to kMaxRequestBytes within kClientTimeout, one
// client at a time; anything else is answered 400/404/405 or dropped, and never reaches the command.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/core/result.h"

namespace usher {

// Builds a page of the Prometheus text format (version 0.0.4): each family once, with its # HELP and
// # TYPE lines, then its samples. Names must match [a-zA-Z_:][a-zA-Z0-9_:]*; label values are
// escaped.
class PrometheusText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // A counter's name ends in _total (the convention; checked by tests, not here).
  void counter(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  [[nodiscard]] const std::string& str() const { return text_; }

 private:
  void sample(std::string_view type, std::string_view name, std::string_view help, double value, const Labels& labels);
  std::string text_;
  std::vector<std::string> families_;
};

// A page the command re-renders when its numbers change (from its own thread) and the server reads
// (from its thread): a string swapped under a mutex.
class MetricsSnapshot {
 public:
  void publish(std::string text) {
    std::lock_guard lock(mutex_);
    text_ = std::move(text);
  }
  [[nodiscard]] std::string read() const {
    std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
};

// HOST:PORT of --metrics: HOST an IPv4 address (0.0.0.0 for every interface) or "localhost", PORT
// 1..65535 in decimal. Errc::invalid_argument with a message saying what is wrong.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort> parse_host_port(std::string_view text);

// The request line of an HTTP/1.x request whose head (up to the empty line) is in `bytes`.
// Errc::malformed for anything that is not "METHOD SP TARGET SP HTTP/1.x" with printable ASCII, or a
// head that does not end; the caller answers 400.
struct HttpRequest {
  std::string method;
  std::string path;  // the target without its query string
};
Result<HttpRequest> parse_http_request(std::span<const std::uint8_t> bytes);
// Where the head of a request ends (just past the empty line), or 0 when it has not ended yet.
std::size_t http_head_end(std::span<const std::uint8_t> bytes);

class MetricsServer {
 public:
  static constexpr std::size_t kMaxRequestBytes = 8 * 1024;
  static constexpr std::chrono::milliseconds kClientTimeout{2000};
  using Render = std::function<std::string()>;

  // Binds HOST:PORT (parse_host_port) and starts serving; the error says what failed (a bad
  // address, the port in use) before anything else starts.
  static Result<std::unique_ptr<MetricsServer>> start(std::string_view host_port, Render render);
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // Stops the thread (within about a poll interval) and closes the port.
  ~MetricsServer();
  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::uint64_t scrapes() const;

  // The reply to one request head: status line, headers and body (what the server sends). Exposed for
  // tests and the fuzz target.
  static std::string respond(std::span<const std::uint8_t> request, const Render& render);

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace usher
