// usher: conditional access and pay-per-view for digital television. One subcommand per part.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli.h"
#include "usher/core/log.h"

namespace {
constexpr const char* kUsage = R"(usher: conditional access and pay-per-view for digital television

usage: usher <command> [options]     (usher <command> --help for its options)

commands:
  demo          everything end to end on this machine with a generated stream
  streams       MPEG-TS tools: generate a test stream, show a stream's PSI and CA signalling
  entitlement   the operator: init, services, set-top boxes, grants and revocations
  headend       scramble services with DVB-CSA2 and insert ECMs, EMMs, CA descriptors
  stb           a set-top box: init, descramble what it is entitled to, local link, tickets
  wallet        a viewer's handset: prepaid card, buy pay-per-view for an STB or as a gift, relay history
  billing       settles STB viewing histories relayed by handsets, prepayments, hotel folios and the PMS link

global options:
  --log-level debug|info|warn|error|off   (or USHER_LOG)
)";
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto it = args.begin(); it != args.end();) {
    if (*it == "--log-level" && it + 1 != args.end()) {
      usher::LogLevel level;
      if (!usher::parse_log_level(*(it + 1), level)) {
        std::fprintf(stderr, "usher: unknown log level '%s'\n", (it + 1)->c_str());
        return 2;
      }
      usher::set_log_level(level);
      it = args.erase(it, it + 2);
    } else {
      ++it;
    }
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (command == "demo") return usher::cli::cmd_demo(rest);
    if (command == "streams") return usher::cli::cmd_streams(rest);
    if (command == "entitlement") return usher::cli::cmd_entitlement(rest);
    if (command == "headend") return usher::cli::cmd_headend(rest);
    if (command == "stb") return usher::cli::cmd_stb(rest);
    if (command == "wallet") return usher::cli::cmd_wallet(rest);
    if (command == "billing") return usher::cli::cmd_billing(rest);
    std::fprintf(stderr, "usher: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const usher::cli::UsageError& e) {
    std::fprintf(stderr, "usher %s: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "usher %s: %s\n", command.c_str(), e.what());
    return 1;
  }
}
