// The network services at their edges, as an attacker reaches them: the real `usher` services on
// loopback, sent frames no client of ours would send.
#include <gtest/gtest.h>

#include <zmq.hpp>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "cli_process.h"
#include "temp_dir.h"
#include "usher/billing/billing_service.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher::testing {
namespace {

// A field of /proc/<pid>/status in kB (VmRSS: resident now; VmHWM: the peak since it started).
long proc_status_kb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// Sends one frame of `bytes` bytes (all the same byte: zero-copy from one shared buffer) on a
// DEALER that does not reconnect, and waits until the server drops the connection. False when it
// was still connected after `timeout` (the server took the frame).
bool server_drops_frame(const std::string& endpoint, const std::vector<std::uint8_t>& payload, std::chrono::seconds timeout) {
  zmq::context_t context(1);
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::reconnect_ivl, -1);
  const std::string monitor_address = "inproc://monitor";
  if (zmq_socket_monitor(dealer.handle(), monitor_address.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) return false;
  zmq::socket_t monitor(context, zmq::socket_type::pair);
  monitor.connect(monitor_address);
  dealer.connect(endpoint);
  zmq::message_t frame(const_cast<std::uint8_t*>(payload.data()), payload.size(), nullptr, nullptr);
  dealer.send(frame, zmq::send_flags::none);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    zmq::pollitem_t item{monitor.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(200));
    if ((item.revents & ZMQ_POLLIN) == 0) continue;
    zmq::message_t event, address;
    (void)monitor.recv(event);
    (void)monitor.recv(address);
    return true;  // the only event asked for: disconnected
  }
  return false;
}

TEST(ServiceLimits, HugeFramesAreRefusedAndTheEngineKeepsServingInBoundedMemory) {
  TempDir dir;
  const auto ports = free_ports(1);
  ASSERT_EQ(ports.size(), 1U);
  const std::string engine = "tcp://127.0.0.1:" + std::to_string(ports[0]);
  ASSERT_EQ(run(usher("entitlement init --home " + dir.file("ent"))).status, 0);
  Background serve(usher("entitlement serve --home " + dir.file("ent") + " --bind " + engine) + " 2>>" + dir.file("engine.log"));
  ASSERT_TRUE(wait_listening(ports[0]));
  wallet::EngineClient client(engine);
  ASSERT_TRUE(client.events().ok());
  const long rss_before = proc_status_kb(serve.pid(), "VmRSS");

  // Three frames of 64 MiB each, well past the engine's limit: each connection is dropped as soon
  // as the frame's length is read. The old server received each whole (and held it).
  const std::vector<std::uint8_t> huge(64U << 20, 0x5a);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(server_drops_frame(engine, huge, std::chrono::seconds(30)));
  }
  // One byte over the limit is refused too; the limit itself is not the problem.
  std::vector<std::uint8_t> just_over(entitlement::kEngineServerLimits.max_message_bytes + 1, 1);
  EXPECT_TRUE(server_drops_frame(engine, just_over, std::chrono::seconds(30)));

  // Everyone else is still served.
  auto events = client.events();
  ASSERT_TRUE(events.ok()) << events.error().message;
  const long rss_after = proc_status_kb(serve.pid(), "VmRSS");
  const long peak = proc_status_kb(serve.pid(), "VmHWM");
  std::cout << "engine RSS before " << rss_before << " kB, after " << rss_after << " kB, peak " << peak << " kB\n";
  ASSERT_GT(rss_before, 0);
  // Never near one huge frame: the peak stays within a few MB of where it started.
  EXPECT_LT(peak, rss_before + 16 * 1024);
}

// Billing and the STB's local link: a frame one byte over each one's limit is refused, the one at
// the limit is not, and each keeps answering.
TEST(ServiceLimits, BillingAndTheLocalLinkRefuseFramesOverTheirLimits) {
  TempDir dir;
  const auto ports = free_ports(2);
  ASSERT_EQ(ports.size(), 2U);
  const std::string billing = "tcp://127.0.0.1:" + std::to_string(ports[0]);
  const std::string link = "tcp://127.0.0.1:" + std::to_string(ports[1]);
  ASSERT_EQ(run(usher("entitlement init --home " + dir.file("ent"))).status, 0);
  ASSERT_EQ(run(usher("stb init --home " + dir.file("stb") + " --id 1001 --operator " + dir.file("ent") + "/operator.pub")).status, 0);
  // One machine: --engine-home has the operator certify billing at once.
  ASSERT_EQ(run(usher("billing init --home " + dir.file("billing") + " --engine-home " + dir.file("ent"))).status, 0);
  Background billing_proc(usher("billing serve --home " + dir.file("billing") + " --bind " + billing) + " 2>>" + dir.file("billing.log"));
  Background link_proc(usher("stb link --home " + dir.file("stb") + " --bind " + link) + " 2>>" + dir.file("link.log"));
  ASSERT_TRUE(wait_listening(ports[0]));
  ASSERT_TRUE(wait_listening(ports[1]));
  struct Case {
    std::string endpoint;
    std::size_t limit;
  };
  for (const auto& c : {Case{billing, billing::kBillingServerLimits.max_message_bytes},
                        Case{link, entitlement::kLinkServerLimits.max_message_bytes}}) {
    SCOPED_TRACE(c.endpoint);
    EXPECT_TRUE(server_drops_frame(c.endpoint, std::vector<std::uint8_t>(c.limit + 1, 1), std::chrono::seconds(30)));
    // At the limit the frame is taken (and let go: a bare DEALER frame is no request); the connection stays.
    EXPECT_FALSE(server_drops_frame(c.endpoint, std::vector<std::uint8_t>(c.limit, 1), std::chrono::seconds(1)));
    // An ordinary request is still answered.
    net::RequestClient client(c.endpoint, {std::chrono::milliseconds(2000), 2, 1});
    auto reply = entitlement::call_framed(client, 99, {});
    ASSERT_FALSE(reply.ok());
    EXPECT_NE(reply.error().code, Errc::io) << reply.error().message;
  }
}

}  // namespace
}  // namespace usher::testing
