// OperatorFixture: the start every billing end-to-end test shares, all through the real `usher`
// command line: an operator with service 1, one STB with a credit line (and the offers that come
// with it by EMM), PPV events, the engine serving on a free loopback port, one headend pass whose
// EMMs the STB takes, and a billing service initialised against the operator.
#pragma once

#include <gtest/gtest.h>

#include <ctime>
#include <memory>
#include <string>

#include "cli_process.h"
#include "store_backend.h"
#include "temp_dir.h"

namespace usher::testing {

class OperatorFixture : public ::testing::Test {
 protected:
  struct Setup {
    std::string stb_id;
    std::string account;       // "" for none
    std::string credit_limit;  // "20.00"; "0" for a hotel room STB (offers only)
    int events = 0;
    // Price of event e (1..events) as text, e.g. "12.50".
    std::string (*price)(int e) = nullptr;
  };

  // Ports for the engine and `extra` more services.
  void start(const Setup& s, std::size_t extra) {
    ports = free_ports(1 + extra);
    ASSERT_EQ(ports.size(), 1 + extra);
    engine = endpoint(0);
    must("streams generate --seconds 2 --out " + dir.file("source.ts"));
    // In the PostgreSQL run of the suites the operator's store is on the test's server.
    const std::string database = testing::store_database_url();
    must("entitlement init --home " + ent() + (database.empty() ? "" : " --db " + database));
    must("entitlement service add --home " + ent() + " --id 1 --name Sport");
    must("stb init --home " + stb() + " --id " + s.stb_id + " --operator " + ent() + "/operator.pub");
    must("entitlement device add --home " + ent() + " --stb-file " + stb() + "/stb.pub" + (s.account.empty() ? "" : " --account " + s.account));
    must("entitlement credit --home " + ent() + " --stb " + s.stb_id + " --limit " + s.credit_limit + " --currency EUR");
    // Events added after the credit line are offered to the STB one EMM each, as they come.
    const auto start_time = std::time(nullptr) + 3600;
    for (int e = 1; e <= s.events; ++e) {
      must("entitlement event add --home " + ent() + " --id " + std::to_string(e) + " --service 1 --start " +
           std::to_string(start_time + e * 7200) + " --duration 3600 --title Match" + std::to_string(e) + " --price " + s.price(e) +
           " --currency EUR");
    }
    must("headend init --home " + dir.file("headend") + " --id 1 --operator " + ent() + "/operator.pub");
    must("entitlement headend add --home " + ent() + " --file " + dir.file("headend") + "/headend.pub");
    engine_proc = std::make_unique<Background>(usher("entitlement serve --home " + ent() + " --bind " + engine) + " 2>>" + dir.file("engine.log"));
    ASSERT_TRUE(wait_listening(ports[0]));
    must("headend run --engine " + engine + " --home " + dir.file("headend") + " --in " + dir.file("source.ts") + " --out " +
         dir.file("air.ts") + " --crypto-period 1");
    // The STB takes its EMMs (credit line, offers). It holds no subscription, so the service stays
    // scrambled for it and `stb run` says so with exit status 3.
    auto took = run(usher("stb run --home " + stb() + " --in " + dir.file("air.ts") + " --out " + dir.file("watched.ts")));
    EXPECT_EQ(took.status, 3) << took.output;
    EXPECT_NE(took.output.find("\"outcome\":\"no entitlement\""), std::string::npos) << took.output;
    // Billing has a home of its own and reaches the engine only at its endpoint: its keys go to the
    // operator as billing.pub and come back certified as a file, no home shared.
    must("billing init --home " + bil() + " --operator " + ent() + "/operator.pub --engine " + engine +
         (database.empty() ? "" : " --db " + database));
    must("entitlement billing add --home " + ent() + " --public-file " + bil() + "/billing.pub --out " + dir.file("billing-1.cert"));
    must("billing certify --home " + bil() + " --certificate " + dir.file("billing-1.cert"));
  }

  std::string must(const std::string& args) {
    auto r = run(usher(args));
    EXPECT_EQ(r.status, 0) << "usher " << args << "\n" << r.output;
    return r.output;
  }
  [[nodiscard]] std::string endpoint(std::size_t i) const { return "tcp://127.0.0.1:" + std::to_string(ports.at(i)); }
  [[nodiscard]] std::string ent() const { return dir.file("ent"); }
  [[nodiscard]] std::string stb() const { return dir.file("stb"); }
  [[nodiscard]] std::string bil() const { return dir.file("billing"); }

  TempDir dir;
  std::vector<std::uint16_t> ports;
  std::string engine;
  std::unique_ptr<Background> engine_proc;
};

}  // namespace usher::testing
