// Issue 9 §2, end to end with real processes: SIGINT and SIGTERM end `headend run`, `stb run`,
// `entitlement serve` and `billing serve` cleanly (exit 0, the final JSON counters, a whole-packet
// output that decodes); status lines on live runs, progress on file runs; --metrics scraped with a
// real TCP client while they run, and not hurt by garbage sent to its port. Every wait is for a
// condition, with a generous deadline.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "cli_process.h"
#include "temp_dir.h"
#include "usher/core/tcp.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/settlement.h"
#include "usher/streams/io.h"

namespace usher {
namespace {

using namespace std::chrono_literals;
using testing::Background;
using testing::frames;
using testing::run;
using testing::usher;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool eventually(const std::function<bool()>& condition, std::chrono::seconds deadline = 60s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

// The last line of `text` that is a JSON object, parsed (null when there is none).
nlohmann::json last_json_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  nlohmann::json last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.front() == '{') last = nlohmann::json::parse(line, nullptr, false);
  }
  return last;
}

// Sends `request` to the port and reads the answer to its end ("" when it could not connect).
std::string http(std::uint16_t port, const std::string& request) {
  auto s = net::TcpStream::connect("127.0.0.1", port, 2s);
  if (!s) return "";
  if (!s->send_all({reinterpret_cast<const std::uint8_t*>(request.data()), request.size()})) return "";
  std::string answer;
  std::uint8_t buf[4096];
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    auto got = s->receive(buf, 100ms);
    if (!got) break;
    answer.append(reinterpret_cast<const char*>(buf), *got);
  }
  return answer;
}
std::string scrape(std::uint16_t port) { return http(port, "GET /metrics HTTP/1.0\r\n\r\n"); }

// The value of the sample `series` (name with its labels, as written) on a metrics page; -1 if absent.
double metric(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// Every sample's family has # HELP and # TYPE before it; counters end in _total.
void expect_exposition_format(const std::string& page) {
  const auto body = page.substr(page.find("\r\n\r\n") + 4);
  std::istringstream lines(body);
  std::string line;
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  while (std::getline(lines, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      types[name] = line.substr(line.rfind(' ') + 1);
    } else {
      const auto name = line.substr(0, line.find_first_of("{ "));
      ASSERT_TRUE(types.contains(name)) << line;
      EXPECT_TRUE(helped.contains(name)) << line;
      if (types[name] == "counter") {
        EXPECT_TRUE(name.ends_with("_total")) << line;
      }
    }
  }
  EXPECT_FALSE(types.empty()) << page;
}

class Monitor : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_dir_ = new testing::TempDir();
    auto r = run(usher("streams generate --seconds 6 --out " + source_dir_->file("source.ts")));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete source_dir_; }

  void SetUp() override {
    must("entitlement init --home " + ent());
    must("entitlement service add --home " + ent() + " --id 1 --name News");
    std::ofstream(dir.file("cw.txt")) << "0102030604050611\n";
  }
  void must(const std::string& args) {
    auto r = run(usher(args));
    ASSERT_EQ(r.status, 0) << "usher " << args << "\n" << r.output;
  }
  std::string ent() const { return dir.file("ent"); }
  static std::string source() { return source_dir_->file("source.ts"); }

  // The output a stopped run left: whole packets, a TS ffprobe reads, and (descrambled with the fixed
  // control words when it was scrambled) video that decodes.
  void expect_valid_ts(const std::string& path, bool scrambled, std::uint64_t packets_out) {
    const auto size = std::filesystem::file_size(path);
    EXPECT_GT(size, 0u);
    EXPECT_EQ(size % 188, 0u) << "a stopped run must end on a whole packet";
    EXPECT_EQ(size, packets_out * 188) << "the counters must say what was written";
    auto probe = run("ffprobe -v error -show_entries stream=codec_type -of csv=p=0 " + path);
    EXPECT_EQ(probe.status, 0) << probe.output;
    EXPECT_NE(probe.output.find("video"), std::string::npos) << probe.output;
    std::string clear = path;
    if (scrambled) {
      clear = path + ".clear.ts";
      must("stb run --cw-file " + dir.file("cw.txt") + " --in " + path + " --out " + clear);
    }
    EXPECT_GT(frames(clear), 0);
  }

  testing::TempDir dir;
  static testing::TempDir* source_dir_;
};
testing::TempDir* Monitor::source_dir_ = nullptr;

TEST_F(Monitor, HeadendOnUdpStopsCleanlyOnEitherSignalWithStatusLinesAndMetrics) {
  const auto packets = streams::read_ts_file(source());
  for (const int sig : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const auto ports = testing::free_ports(2);
    ASSERT_EQ(ports.size(), 2u);
    const auto out = dir.file("live-" + std::to_string(sig) + ".ts");
    const auto err = dir.file("headend-" + std::to_string(sig) + ".log");
    Background headend(usher("headend run --entitlement-home " + ent() + " --cw-file " + dir.file("cw.txt") +
                             " --in udp://127.0.0.1:" + std::to_string(ports[0]) + " --out " + out +
                             " --status-interval 1 --metrics 127.0.0.1:" + std::to_string(ports[1])) +
                       " 2>" + err);
    ASSERT_TRUE(testing::wait_listening(ports[1])) << slurp(err);
    auto sink = streams::open_sink("udp://127.0.0.1:" + std::to_string(ports[0]), {false});
    std::size_t sent = 0;
    const auto send = [&](std::size_t until) {
      for (; sent < until; sent += 7) {
        sink->write(std::span(packets).subspan(sent, std::min<std::size_t>(7, packets.size() - sent)));
        if (sent % 700 == 0) std::this_thread::sleep_for(1ms);  // not more than the socket's buffer at once
      }
    };
    send(packets.size() / 7 / 3 * 7);
    double first = -1;
    ASSERT_TRUE(eventually([&] {
      first = metric(scrape(ports[1]), "usher_headend_packets_in_total");
      return first > 0;
    })) << slurp(err);
    // Garbage and a request far over the cap on the metrics port: answered or dropped, the run goes on.
    EXPECT_EQ(http(ports[1], std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16)).rfind("HTTP/1.0 400", 0), 0u);
    (void)http(ports[1], std::string(1 << 20, 'x'));
    EXPECT_EQ(http(ports[1], "GET /other HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0), 0u);
    send(packets.size() / 7 * 2 / 3 * 7);
    std::string page;
    ASSERT_TRUE(eventually([&] {
      page = scrape(ports[1]);
      return metric(page, "usher_headend_packets_in_total") > first;
    })) << page;
    expect_exposition_format(page);
    EXPECT_GT(metric(page, "usher_headend_ecm_sections_total"), 0) << page;
    EXPECT_EQ(metric(page, "usher_headend_service_scrambled{service_id=\"1\",state=\"scrambled\"}"), 1) << page;
    // A status line on the live run: rates, the service and its state, ECMs, EMM share, CC errors.
    ASSERT_TRUE(eventually([&] { return slurp(err).find("usher headend: in ") != std::string::npos; })) << slurp(err);
    const auto log = slurp(err);
    const auto status = log.substr(log.find("usher headend: in "));
    for (const char* part : {"Mbit/s", "ECMs", "EMM", "CC errors", "services: 1 scrambled"}) {
      EXPECT_NE(status.find(part), std::string::npos) << part << " in " << status;
    }

    const int st = headend.stop(sig);  // mid-run: the sender still has a third to send
    ASSERT_TRUE(WIFEXITED(st)) << slurp(err);
    EXPECT_EQ(WEXITSTATUS(st), 0) << slurp(err);
    const auto counters = last_json_line(slurp(err));
    ASSERT_TRUE(counters.is_object()) << slurp(err);
    EXPECT_EQ(counters["stopped"], true);
    EXPECT_EQ(counters["services_scrambled"], 1);
    EXPECT_GT(counters["packets_in"].get<std::uint64_t>(), 0u);
    EXPECT_LE(counters["packets_in"].get<std::uint64_t>(), sent);
    expect_valid_ts(out, true, counters["packets_out"].get<std::uint64_t>());
  }
}

TEST_F(Monitor, StbOnAPipeStopsCleanlyOnEitherSignal) {
  // A real STB, entitled by EMM: its status line says it is descrambling the service.
  const auto stb_home = dir.file("stb-1001");
  must("stb init --home " + stb_home + " --id 1001 --operator " + ent() + "/operator.pub");
  must("entitlement device add --home " + ent() + " --stb-file " + stb_home + "/stb.pub");
  must("entitlement grant --home " + ent() + " --stb 1001 --service 1 --days 1");
  const auto scrambled = dir.file("scrambled.ts");
  must("headend run --entitlement-home " + ent() + " --in " + source() + " --out " + scrambled);
  const auto bytes = slurp(scrambled);
  for (const int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const auto fifo = dir.file("in-" + std::to_string(sig) + ".fifo");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const auto out = dir.file("stb-" + std::to_string(sig) + ".ts");
    const auto err = dir.file("stb-" + std::to_string(sig) + ".log");
    const auto ports = testing::free_ports(1);
    Background stb(usher("stb run --home " + stb_home + " --in - --out " + out +
                         " --status-interval 1 --metrics 127.0.0.1:" + std::to_string(ports[0])) +
                   " <" + fifo + " 2>" + err);
    // Opening the writing end waits for the reader (the shell opening the FIFO for the stb). It stays
    // open: the stb sees a live input that has not ended.
    const int w = ::open(fifo.c_str(), O_WRONLY);
    ASSERT_GE(w, 0);
    const std::size_t half = bytes.size() / 2;
    ASSERT_EQ(::write(w, bytes.data(), half), static_cast<ssize_t>(half));
    ASSERT_TRUE(eventually([&] { return metric(scrape(ports[0]), "usher_stb_packets_out_total") > 0; })) << slurp(err);
    ASSERT_TRUE(eventually([&] { return slurp(err).find("usher stb: in ") != std::string::npos; })) << slurp(err);
    const auto log = slurp(err);
    EXPECT_NE(log.find("1 descrambling", log.find("usher stb: in ")), std::string::npos) << log;
    const int st = stb.stop(sig);
    ::close(w);
    ASSERT_TRUE(WIFEXITED(st)) << slurp(err);
    EXPECT_EQ(WEXITSTATUS(st), 0) << slurp(err);
    const auto counters = last_json_line(slurp(err));
    ASSERT_TRUE(counters.is_object()) << slurp(err);
    EXPECT_EQ(counters["stopped"], true);
    EXPECT_GT(counters["packets_descrambled"].get<std::uint64_t>(), 0u);
    EXPECT_LE(counters["packets_in"].get<std::uint64_t>() * 188, half);
    expect_valid_ts(out, false, counters["packets_out"].get<std::uint64_t>());
  }
}

TEST_F(Monitor, AFileRunShowsProgressAndEndsAsBefore) {
  // Paced by its PCRs to a UDP output, the file run takes the stream's duration: progress lines come.
  const auto ports = testing::free_ports(1);
  auto r = run(usher("headend run --entitlement-home " + ent() + " --in " + source() +
                     " --out udp://127.0.0.1:" + std::to_string(ports[0]) + " --status-interval 1"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto at = r.output.find("usher headend: progress ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const auto line = r.output.substr(at, r.output.find('\n', at) - at);
  for (const char* part : {"% of ", " MB", "x real time", "Mbit/s"})
    EXPECT_NE(line.find(part), std::string::npos) << line;
  const auto counters = last_json_line(r.output);
  EXPECT_EQ(counters["stopped"], false);
  // The STB's file run, paced the same way.
  auto stb = run(usher("stb run --cw-file " + dir.file("cw.txt") + " --in " + source() +
                       " --out udp://127.0.0.1:" + std::to_string(ports[0]) + " --status-interval 1"));
  ASSERT_EQ(stb.status, 0) << stb.output;
  const auto stb_at = stb.output.find("usher stb: progress ");
  ASSERT_NE(stb_at, std::string::npos) << stb.output;
  const auto stb_line = stb.output.substr(stb_at, stb.output.find('\n', stb_at) - stb_at);
  for (const char* part : {"% of ", "x real time", "Mbit/s"})
    EXPECT_NE(stb_line.find(part), std::string::npos) << stb_line;
  // --status-interval 0: no lines at all.
  auto quiet = run(usher("headend run --entitlement-home " + ent() + " --in " + source() +
                         " --out udp://127.0.0.1:" + std::to_string(ports[0]) + " --status-interval 0"));
  ASSERT_EQ(quiet.status, 0) << quiet.output;
  EXPECT_EQ(quiet.output.find("usher headend: "), std::string::npos) << quiet.output;
}

TEST_F(Monitor, BadMetricsAddressIsRefusedBeforeAnythingStarts) {
  for (const std::string bad : {"nowhere", "127.0.0.1:0", "127.0.0.1:70000", "example.com:9100"}) {
    SCOPED_TRACE(bad);
    auto r = run(usher("headend run --entitlement-home " + ent() + " --in " + source() + " --out " +
                       dir.file("never.ts") + " --metrics " + bad));
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--metrics"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir.file("never.ts")));
    auto serve = run(usher("entitlement serve --home " + ent() + " --bind tcp://127.0.0.1:* --metrics " + bad));
    EXPECT_EQ(serve.status, 2) << serve.output;
  }
  // A port already taken: a clear error, exit 1, before the run.
  auto held = net::TcpListener::bind("127.0.0.1", 0);
  ASSERT_TRUE(held.ok());
  auto r = run(usher("stb run --cw-file " + dir.file("cw.txt") + " --in " + source() + " --out " +
                     dir.file("never.ts") + " --metrics 127.0.0.1:" + std::to_string(held->port())));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--metrics 127.0.0.1:" + std::to_string(held->port())), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("never.ts")));
}

// A framed request of `type` with an empty body, as a handset would send it.
std::vector<std::uint8_t> framed(std::uint8_t type) {
  return entitlement::encode_request(static_cast<entitlement::MessageType>(type), entitlement::new_request_id(), {});
}

TEST_F(Monitor, EntitlementServeIdleAndBusyStopsWithItsCounters) {
  for (const int sig : {SIGINT, SIGTERM}) {
    for (const bool busy : {false, true}) {
      SCOPED_TRACE(std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + (busy ? ", busy" : ", idle"));
      const auto ports = testing::free_ports(2);
      const auto endpoint = "tcp://127.0.0.1:" + std::to_string(ports[0]);
      const auto err = dir.file("engine-" + std::to_string(sig) + (busy ? "-busy" : "-idle") + ".log");
      Background serve(usher("entitlement serve --home " + ent() + " --bind " + endpoint +
                             " --status-interval 1 --metrics 127.0.0.1:" + std::to_string(ports[1])) +
                       " 2>" + err);
      ASSERT_TRUE(testing::wait_listening(ports[0])) << slurp(err);
      ASSERT_TRUE(testing::wait_listening(ports[1])) << slurp(err);
      std::thread load;
      std::atomic<bool> stop_load{false};
      if (busy) {
        net::RequestClient client(endpoint);
        for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.call(framed(1)).ok());  // list_events
        const std::vector<std::uint8_t> garbage = {0xde, 0xad};
        ASSERT_TRUE(client.call(garbage).ok());  // answered with an error: refused
        ASSERT_TRUE(eventually([&] {
          return slurp(err).find("usher entitlement: 5 requests served, 1 refused") != std::string::npos;
        })) << slurp(err);
        std::string page;
        ASSERT_TRUE(eventually([&] {
          page = scrape(ports[1]);
          return metric(page, "usher_entitlement_requests_total{kind=\"list_events\",outcome=\"served\"}") == 5;
        })) << page;
        expect_exposition_format(page);
        EXPECT_EQ(metric(page, "usher_entitlement_requests_total{kind=\"malformed\",outcome=\"refused\"}"), 1) << page;
        // Still serving while it is stopped: requests keep coming until the signal.
        load = std::thread([&] {
          net::RequestClient c(endpoint, {std::chrono::milliseconds(500), 1, 1});
          while (!stop_load) (void)c.call(framed(1));
        });
      } else {
        EXPECT_EQ(metric(scrape(ports[1]), "usher_entitlement_requests_total{kind=\"all\",outcome=\"served\"}"), 0);
      }
      const int st = serve.stop(sig);
      stop_load = true;
      if (load.joinable()) load.join();
      ASSERT_TRUE(WIFEXITED(st)) << slurp(err);
      EXPECT_EQ(WEXITSTATUS(st), 0) << slurp(err);
      const auto log = slurp(err);
      const auto counters = last_json_line(log);
      ASSERT_TRUE(counters.is_object()) << log;
      EXPECT_EQ(counters["stopped"], true);
      if (busy) {
        EXPECT_GE(counters["requests_served"].get<std::uint64_t>(), 5u);
        EXPECT_EQ(counters["requests_refused"], 1);
        EXPECT_EQ(counters["by_kind"]["list_events"]["served"], counters["requests_served"]);
        EXPECT_EQ(counters["replies_sent"].get<std::uint64_t>(), counters["requests_served"].get<std::uint64_t>() + 1);
      } else {
        EXPECT_EQ(counters["requests_served"], 0);
        EXPECT_EQ(log.find("usher entitlement: "), std::string::npos) << "no status lines while idle:\n" << log;
      }
    }
  }
}

TEST_F(Monitor, BillingServeStopsWithItsCountersOnEitherSignal) {
  const auto bil = dir.file("billing");
  must("billing init --home " + bil + " --operator " + ent() + "/operator.pub");
  must("entitlement billing add --home " + ent() + " --public-file " + bil + "/billing.pub --out " + dir.file("billing-1.cert"));
  must("billing certify --home " + bil + " --certificate " + dir.file("billing-1.cert"));
  for (const int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const auto ports = testing::free_ports(2);
    const auto endpoint = "tcp://127.0.0.1:" + std::to_string(ports[0]);
    const auto err = dir.file("billing-" + std::to_string(sig) + ".log");
    Background serve(usher("billing serve --home " + bil + " --bind " + endpoint +
                           " --status-interval 1 --metrics 127.0.0.1:" + std::to_string(ports[1])) +
                     " 2>" + err);
    ASSERT_TRUE(testing::wait_listening(ports[0])) << slurp(err);
    ASSERT_TRUE(testing::wait_listening(ports[1])) << slurp(err);
    net::RequestClient client(endpoint);
    // A relay that does not verify: refused, and counted as such by kind.
    ASSERT_TRUE(client.call(framed(static_cast<std::uint8_t>(entitlement::BillingMessage::relay))).ok());
    std::string page;
    ASSERT_TRUE(eventually([&] {
      page = scrape(ports[1]);
      return metric(page, "usher_billing_requests_total{kind=\"relay\",outcome=\"refused\"}") == 1;
    })) << page;
    expect_exposition_format(page);
    ASSERT_TRUE(eventually([&] {
      return slurp(err).find("usher billing: 0 requests served, 1 refused") != std::string::npos;
    })) << slurp(err);
    const int st = serve.stop(sig);
    ASSERT_TRUE(WIFEXITED(st)) << slurp(err);
    EXPECT_EQ(WEXITSTATUS(st), 0) << slurp(err);
    const auto counters = last_json_line(slurp(err));
    ASSERT_TRUE(counters.is_object()) << slurp(err);
    EXPECT_EQ(counters["stopped"], true);
    EXPECT_EQ(counters["requests_refused"], 1);
    EXPECT_EQ(counters["by_kind"]["relay"]["refused"], 1);
  }
}

}  // namespace
}  // namespace usher
