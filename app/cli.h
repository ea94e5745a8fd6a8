// Command-line plumbing shared by the subcommands: argument parsing, the run loop that pumps
// packets from a source through a transform into a sink, and time parsing.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <stdexcept>

#include "usher/core/clock.h"
#include "usher/core/result.h"
#include "usher/streams/io.h"

namespace usher::cli {

// Thrown for a user error: printed as "usher: <message>" with exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --name value, --name=value and --flag options; everything else is positional.
class Args {
 public:
  Args(const std::vector<std::string>& argv, const std::set<std::string>& flags);
  [[nodiscard]] bool has(const std::string& name) const { return options_.contains(name); }
  [[nodiscard]] std::string get(const std::string& name, const std::string& fallback = "") const;
  [[nodiscard]] std::string require(const std::string& name) const;
  [[nodiscard]] std::int64_t number(const std::string& name, std::int64_t fallback) const;
  [[nodiscard]] std::int64_t require_number(const std::string& name) const;
  [[nodiscard]] const std::vector<std::string>& positional() const { return positional_; }
  [[nodiscard]] bool help() const { return has("help"); }

 private:
  std::map<std::string, std::string> options_;
  std::vector<std::string> positional_;
};

// The usual start of a part's command: with no subcommand, or --help anywhere, prints `usage` and
// returns the exit code (2 when nothing was asked, 0 for help). Otherwise returns nullopt and
// sets `sub` and `args` (the options after the subcommand).
std::optional<int> start_command(const std::vector<std::string>& argv, const char* usage, std::string& sub,
                                 std::optional<Args>& args, const std::set<std::string>& flags = {});

// The value, or the error's message thrown for main() to print.
template <typename T>
T need(Result<T> r) {
  if (!r) throw std::runtime_error(r.error().message);
  return std::move(r.value());
}

// Parses a time: unix seconds, "now", "now+90s/+10m/+2h/+3d", or ISO "YYYY-MM-DDTHH:MM:SSZ".
std::uint64_t parse_time(const std::string& text);
using usher::unix_now;
// Parses a duration: seconds, or 90s, 45m, 2h.
std::uint64_t parse_duration(const std::string& text);
// SIGINT/SIGTERM set the flag that long-running services poll.
void install_stop_handlers();
const std::atomic<bool>& stop_requested();
using usher::format_utc;

// Reads packets from `in`, passes them through `transform`, writes to `out` until the source ends.
// `tick` runs about every second of wall time (progress, refreshes).
void pump(streams::PacketSource& in, streams::PacketSink& out,
          const std::function<void(std::span<const streams::TsPacket>, std::vector<streams::TsPacket>&)>& transform,
          const std::function<void(std::vector<streams::TsPacket>&)>& finish, const std::function<void()>& tick);

int cmd_streams(const std::vector<std::string>& args);
int cmd_entitlement(const std::vector<std::string>& args);
int cmd_headend(const std::vector<std::string>& args);
int cmd_stb(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_wallet(const std::vector<std::string>& args);
int cmd_billing(const std::vector<std::string>& args);

}  // namespace usher::cli
