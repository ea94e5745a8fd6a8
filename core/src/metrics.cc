#include "usher/core/metrics.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <thread>

#include "usher/core/log.h"
#include "usher/core/tcp.h"

namespace usher {
namespace {

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Counters are whole numbers: written as such, exactly, up to 2^53.
  if (value == std::floor(value) && std::fabs(value) < 9.007199254740992e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

std::string escape_label(std::string_view value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  for (const char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

bool is_token_char(std::uint8_t c) { return c > 0x20 && c < 0x7F; }

}  // namespace

void PrometheusText::sample(std::string_view type, std::string_view name, std::string_view help, double value,
                            const Labels& labels) {
  const std::string family(name);
  if (std::find(families_.begin(), families_.end(), family) == families_.end()) {
    families_.push_back(family);
    text_ += "# HELP " + family + " " + escape_help(help) + "\n# TYPE " + family + " " + std::string(type) + "\n";
  }
  text_ += family;
  if (!labels.empty()) {
    text_ += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) text_ += ',';
      text_ += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
    }
    text_ += '}';
  }
  text_ += " " + format_value(value) + "\n";
}

void PrometheusText::counter(std::string_view name, std::string_view help, double value, const Labels& labels) {
  sample("counter", name, help, value, labels);
}

void PrometheusText::gauge(std::string_view name, std::string_view help, double value, const Labels& labels) {
  sample("gauge", name, help, value, labels);
}

Result<HostPort> parse_host_port(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument,
                      "'" + std::string(text) + "' " + why + " (use HOST:PORT, e.g. 127.0.0.1:9100)");
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("has no port");
  std::string host(text.substr(0, colon));
  const auto port_text = text.substr(colon + 1);
  if (host.empty()) return bad("has no host");
  if (host == "localhost") host = "127.0.0.1";
  unsigned a = 0, b = 0, c = 0, d = 0;
  char tail = 0;
  if (std::sscanf(host.c_str(), "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 ||
      d > 255 || host.find_first_not_of("0123456789.") != std::string::npos) {
    return bad("does not start with an IPv4 address or localhost");
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
      port > 65535) {
    return bad("has no port from 1 to 65535");
  }
  return HostPort{host, static_cast<std::uint16_t>(port)};
}

std::size_t http_head_end(std::span<const std::uint8_t> bytes) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != '\n') continue;
    if (i >= 1 && bytes[i - 1] == '\n') return i + 1;
    if (i >= 2 && bytes[i - 1] == '\r' && bytes[i - 2] == '\n') return i + 1;
  }
  return 0;
}

Result<HttpRequest> parse_http_request(std::span<const std::uint8_t> bytes) {
  const auto bad = [](const std::string& why) { return make_error(Errc::malformed, "bad HTTP request: " + why); };
  if (http_head_end(bytes) == 0) return bad("its head does not end");
  std::size_t line_end = 0;
  while (line_end < bytes.size() && bytes[line_end] != '\n') ++line_end;
  std::size_t line_size = line_end;
  if (line_size > 0 && bytes[line_size - 1] == '\r') --line_size;
  const auto line = bytes.first(line_size);
  // METHOD SP TARGET SP VERSION: three tokens of printable ASCII, single spaces.
  std::vector<std::string> tokens(1);
  for (const std::uint8_t c : line) {
    if (c == ' ') {
      if (tokens.back().empty() || tokens.size() == 3) return bad("not METHOD TARGET VERSION");
      tokens.emplace_back();
    } else if (is_token_char(c)) {
      tokens.back() += static_cast<char>(c);
    } else {
      return bad("a byte that is not printable ASCII in the request line");
    }
  }
  if (tokens.size() != 3 || tokens[2].empty()) return bad("not METHOD TARGET VERSION");
  if (tokens[2] != "HTTP/1.0" && tokens[2] != "HTTP/1.1") return bad("version " + tokens[2]);
  HttpRequest request;
  request.method = tokens[0];
  request.path = tokens[1].substr(0, tokens[1].find('?'));
  return request;
}

std::string MetricsServer::respond(std::span<const std::uint8_t> request, const Render& render) {
  const auto reply = [](const std::string& status, const std::string& type, const std::string& body) {
    return "HTTP/1.0 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  };
  auto parsed = parse_http_request(request);
  if (!parsed) return reply("400 Bad Request", "text/plain; charset=utf-8", parsed.error().message + "\n");
  if (parsed->path != "/metrics") return reply("404 Not Found", "text/plain; charset=utf-8", "only /metrics is here\n");
  if (parsed->method != "GET" && parsed->method != "HEAD") {
    return reply("405 Method Not Allowed", "text/plain; charset=utf-8", "GET /metrics\n");
  }
  auto page = reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", render());
  if (parsed->method == "HEAD") page.resize(page.find("\r\n\r\n") + 4);
  return page;
}

struct MetricsServer::Impl {
  Impl(net::TcpListener l, Render r) : listener(std::move(l)), render(std::move(r)) {}
  net::TcpListener listener;
  Render render;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> scrapes{0};
  std::thread thread;

  void serve_one(net::TcpStream client) {
    std::vector<std::uint8_t> head;
    std::uint8_t buffer[1024];
    const auto deadline = std::chrono::steady_clock::now() + kClientTimeout;
    std::string answer;
    while (!stop) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;  // too slow: dropped without an answer
      auto got = client.receive(buffer, std::min(left, std::chrono::milliseconds(100)));
      if (!got) return;  // closed before the head ended
      head.insert(head.end(), buffer, buffer + *got);
      if (http_head_end(head) != 0) {
        answer = respond(head, render);
        break;
      }
      if (head.size() >= kMaxRequestBytes) {
        answer = "HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        break;
      }
    }
    if (answer.empty()) return;
    if (answer.find(" 200 OK\r\n") != std::string::npos) ++scrapes;
    if (client.send_all(std::span(reinterpret_cast<const std::uint8_t*>(answer.data()), answer.size()))) {
      client.close_after_answer(std::chrono::milliseconds(500), 4 * kMaxRequestBytes);
    }
  }

  void run() {
    while (!stop) {
      auto client = listener.accept(std::chrono::milliseconds(100));
      if (!client) continue;
      try {
        serve_one(std::move(client.value()));
      } catch (const std::exception& e) {
        // A scrape that fails (the render threw, memory) must not end the command it watches.
        Logger("metrics").warn("scrape failed: ", e.what());
      }
    }
  }
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(std::string_view host_port, Render render) {
  USHER_TRY(auto where, parse_host_port(host_port));
  auto listener = net::TcpListener::bind(where.host, where.port);
  if (!listener)
    return make_error(listener.error().code, "--metrics " + std::string(host_port) + ": " + listener.error().message);
  std::unique_ptr<MetricsServer> server(
      new MetricsServer(std::make_unique<Impl>(std::move(listener.value()), std::move(render))));
  auto* impl = server->impl_.get();
  impl->thread = std::thread([impl] { impl->run(); });
  return server;
}

MetricsServer::~MetricsServer() {
  impl_->stop = true;
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::uint16_t MetricsServer::port() const { return impl_->listener.port(); }
std::uint64_t MetricsServer::scrapes() const { return impl_->scrapes.load(); }

}  // namespace usher
