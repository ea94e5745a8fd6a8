// Stop signals and the --metrics endpoint: real signals, a real TCP port, a real client.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <string>
#include <thread>

#include "cli_process.h"
#include "usher/core/metrics.h"
#include "usher/core/stop_signals.h"
#include "usher/core/tcp.h"

namespace usher {
namespace {

using namespace std::chrono_literals;

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(StopSignals, SigtermSetsTheFlagAndWakesTheDescriptor) {
  StopSignals stop;
  EXPECT_FALSE(stop.requested());
  EXPECT_FALSE(readable(stop.fd()));
  ASSERT_EQ(::raise(SIGTERM), 0);
  EXPECT_TRUE(stop.requested());
  EXPECT_TRUE(stop.flag().load());
  EXPECT_TRUE(readable(stop.fd()));
  EXPECT_EQ(stop.signal_number(), SIGTERM);
}

TEST(StopSignals, OnlyOneAtATimeAndTheNextStartsAfresh) {
  {
    StopSignals first;
    EXPECT_THROW(StopSignals second, std::runtime_error);
    first.request();
    EXPECT_TRUE(first.requested());
  }
  StopSignals again;
  EXPECT_FALSE(again.requested());
  EXPECT_FALSE(readable(again.fd()));
  ASSERT_EQ(::raise(SIGINT), 0);
  EXPECT_EQ(again.signal_number(), SIGINT);
}

TEST(StopSignalsDeathTest, ASecondSignalWhileStoppingExitsAtOnce) {
  EXPECT_EXIT(
      {
        StopSignals stop;
        ::raise(SIGINT);
        ::raise(SIGINT);
        std::_Exit(0);  // not reached
      },
      ::testing::ExitedWithCode(128 + SIGINT), "");
}

TEST(HostPort, ParsesAndRefusesWithTheReason) {
  struct Case {
    const char* text;
    bool ok;
    const char* host;
    std::uint16_t port;
  };
  for (const auto& c : std::initializer_list<Case>{{"127.0.0.1:9100", true, "127.0.0.1", 9100},
                                                   {"0.0.0.0:1", true, "0.0.0.0", 1},
                                                   {"localhost:65535", true, "127.0.0.1", 65535},
                                                   {"127.0.0.1", false, "", 0},
                                                   {":9100", false, "", 0},
                                                   {"127.0.0.1:0", false, "", 0},
                                                   {"127.0.0.1:65536", false, "", 0},
                                                   {"127.0.0.1:91x", false, "", 0},
                                                   {"127.0.0.1:-1", false, "", 0},
                                                   {"300.0.0.1:9100", false, "", 0},
                                                   {"example.com:9100", false, "", 0},
                                                   {"1.2.3:9100", false, "", 0},
                                                   {"[::1]:9100", false, "", 0}}) {
    SCOPED_TRACE(c.text);
    auto r = parse_host_port(c.text);
    ASSERT_EQ(r.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(r->host, c.host);
      EXPECT_EQ(r->port, c.port);
    } else {
      EXPECT_EQ(r.error().code, Errc::invalid_argument);
      EXPECT_NE(r.error().message.find(c.text), std::string::npos) << r.error().message;
    }
  }
}

TEST(HttpRequest, RequestLinesParsedStrictly) {
  struct Case {
    const char* text;
    bool ok;
    const char* method;
    const char* path;
  };
  for (const auto& c :
       std::initializer_list<Case>{{"GET /metrics HTTP/1.0\r\n\r\n", true, "GET", "/metrics"},
                                   {"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", true, "GET", "/metrics"},
                                   {"HEAD / HTTP/1.1\n\n", true, "HEAD", "/"},
                                   {"GET /metrics HTTP/1.0\r\n", false, "", ""},  // the head has not ended
                                   {"GET /metrics\r\n\r\n", false, "", ""},
                                   {"GET  /metrics HTTP/1.0\r\n\r\n", false, "", ""},
                                   {"GET /metrics HTTP/2.0\r\n\r\n", false, "", ""},
                                   {"GET /met\x01rics HTTP/1.0\r\n\r\n", false, "", ""},
                                   {"GET /a b HTTP/1.0\r\n\r\n", false, "", ""},
                                   {"\r\n\r\n", false, "", ""},
                                   {"", false, "", ""}}) {
    SCOPED_TRACE(c.text);
    auto r = parse_http_request(bytes_of(c.text));
    ASSERT_EQ(r.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(r->method, c.method);
      EXPECT_EQ(r->path, c.path);
    } else {
      EXPECT_EQ(r.error().code, Errc::malformed);
    }
  }
}

TEST(PrometheusText, FamiliesOnceWithHelpTypeAndEscapedLabels) {
  PrometheusText m;
  m.counter("usher_x_total", "Things.\nCounted", 3, {{"kind", "a\"b\\c"}});
  m.counter("usher_x_total", "Things.\nCounted", 4, {{"kind", "d"}});
  m.gauge("usher_rate", "A rate.", 1.5);
  EXPECT_EQ(m.str(),
            "# HELP usher_x_total Things.\\nCounted\n# TYPE usher_x_total counter\n"
            "usher_x_total{kind=\"a\\\"b\\\\c\"} 3\nusher_x_total{kind=\"d\"} 4\n"
            "# HELP usher_rate A rate.\n# TYPE usher_rate gauge\nusher_rate 1.5\n");
}

// Sends `request` (may be empty: connects and says nothing) and reads the whole answer.
std::string exchange(std::uint16_t port, const std::string& request, std::chrono::milliseconds patience = 5s) {
  auto s = net::TcpStream::connect("127.0.0.1", port, 2s);
  if (!s) return "connect: " + s.error().message;
  if (!request.empty() && !s->send_all(bytes_of(request))) return "send failed";
  std::string answer;
  std::uint8_t buf[4096];
  const auto until = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < until) {
    auto got = s->receive(buf, 100ms);
    if (!got) break;  // closed: the answer is complete
    answer.append(reinterpret_cast<const char*>(buf), *got);
  }
  return answer;
}

std::unique_ptr<MetricsServer> start_on_a_free_port(const MetricsServer::Render& render) {
  for (int attempt = 0; attempt < 10; ++attempt) {  // another process may take the port in between
    const auto ports = testing::free_ports(1);
    if (ports.empty()) break;
    auto started = MetricsServer::start("127.0.0.1:" + std::to_string(ports[0]), render);
    if (started) return std::move(started.value());
  }
  return nullptr;
}

TEST(MetricsServer, ServesTheLatestSnapshotAndRefusesOtherPaths) {
  MetricsSnapshot snapshot;
  snapshot.publish("usher_a_total 1\n");
  // Port 0 (any free one) is refused: whoever scrapes must know the port.
  ASSERT_FALSE(MetricsServer::start("127.0.0.1:0", [&] { return snapshot.read(); }).ok());
  auto s = start_on_a_free_port([&] { return snapshot.read(); });
  ASSERT_TRUE(s);
  auto answer = exchange(s->port(), "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << answer;
  EXPECT_NE(answer.find("\r\n\r\nusher_a_total 1\n"), std::string::npos) << answer;
  snapshot.publish("usher_a_total 2\n");
  EXPECT_NE(exchange(s->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").find("usher_a_total 2\n"),
            std::string::npos);
  EXPECT_EQ(exchange(s->port(), "GET / HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0), 0u);
  EXPECT_EQ(exchange(s->port(), "POST /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 405", 0), 0u);
  EXPECT_EQ(exchange(s->port(), "\x16\x03\x01 garbage\r\n\r\n").rfind("HTTP/1.0 400", 0), 0u);
  // A head that never ends is cut at the cap, not read for ever.
  EXPECT_EQ(exchange(s->port(), std::string(16 * 1024, 'A')).rfind("HTTP/1.0 431", 0), 0u);
  EXPECT_EQ(s->scrapes(), 2u);
}

TEST(MetricsServer, ASilentClientIsDroppedAndTheNextIsServed) {
  MetricsSnapshot snapshot;
  snapshot.publish("usher_b_total 7\n");
  auto s = start_on_a_free_port([&] { return snapshot.read(); });
  ASSERT_TRUE(s);
  // Connects, says nothing: dropped after the client timeout without an answer.
  std::string silent_answer;
  std::thread silent([&] { silent_answer = exchange(s->port(), "", MetricsServer::kClientTimeout + 5s); });
  // Meanwhile another client gets its answer (after the silent one is dropped at the latest).
  const auto answer = exchange(s->port(), "GET /metrics HTTP/1.0\r\n\r\n", MetricsServer::kClientTimeout + 5s);
  silent.join();
  EXPECT_NE(answer.find("usher_b_total 7"), std::string::npos) << answer;
  EXPECT_EQ(silent_answer, "");
}

TEST(MetricsServer, AnAddressInUseIsAClearError) {
  auto held = net::TcpListener::bind("127.0.0.1", 0);
  ASSERT_TRUE(held.ok());
  auto r = MetricsServer::start("127.0.0.1:" + std::to_string(held->port()), [] { return std::string(); });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--metrics 127.0.0.1:" + std::to_string(held->port())), std::string::npos)
      << r.error().message;
  EXPECT_FALSE(MetricsServer::start("nowhere", [] { return std::string(); }).ok());
}

}  // namespace
}  // namespace usher
