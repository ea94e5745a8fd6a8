// Command-line plumbing shared by the subcommands: the CLI11 command tree and its strict value
// parsers (decimal numbers checked against their field's range, durations, times, money), the run
// loop that pumps packets from a source through a transform into a sink, and stop signals.
//
// Each part (cmd_*.cc) adds its subcommands to the tree with the add_* helpers below and registers
// what each leaf does; main() parses, then runs the one leaf the command line selected. Help and
// errors come from the same definitions, so they cannot drift from the parser.
#pragma once

#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "usher/core/clock.h"
#include "usher/core/metrics.h"
#include "usher/core/stop_signals.h"
#include "usher/core/result.h"
#include "usher/core/text.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/request_counters.h"
#include "usher/streams/io.h"

namespace usher::cli {

// Thrown for a user error found after parsing (two options that contradict each other, say):
// printed as "usher <command>: <message>" with exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The value, or the error's message thrown for main() to print (exit code 1).
template <typename T>
T need(Result<T> r) {
  if (!r) throw std::runtime_error(r.error().message);
  return std::move(r.value());
}

// ---- Value parsers: pure functions, unit-tested; the CLI binds them to options below. ----

// A whole number in [min, max], decimal only ("010" is ten, never eight; no sign on a field that
// cannot be negative, no spaces, no suffix). With `allow_hex`, "0x1FF0" is read as hexadecimal too
// (PIDs and CA system ids are written that way in every DVB document).
Result<std::int64_t> parse_integer_in(std::string_view text, std::int64_t min, std::uint64_t max, bool allow_hex);
template <std::integral T>
Result<T> parse_integer(std::string_view text, T min = std::numeric_limits<T>::min(), T max = std::numeric_limits<T>::max(),
                        bool allow_hex = false) {
  if constexpr (std::is_unsigned_v<T> && sizeof(T) == 8) {
    // The whole u64 range: parsed apart, since it does not fit the signed helper.
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
      return make_error(Errc::invalid_argument, "expects a decimal number, got '" + std::string(text) + "'");
    }
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
    if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
      return make_error(Errc::invalid_argument, "'" + std::string(text) + "' is out of range: from " + std::to_string(min) +
                                                    " to " + std::to_string(max));
    }
    return static_cast<T>(v);
  } else {
    USHER_TRY(auto v, parse_integer_in(text, static_cast<std::int64_t>(min), static_cast<std::uint64_t>(max), allow_hex));
    return static_cast<T>(v);
  }
}

// A duration: a number with an optional unit, ms, s, m, h or d ("90m", "2h", "3d"); a plain
// number is in `plain_unit` (seconds for most options, milliseconds where the option has always
// been in milliseconds). At most 100 years, so that adding it to a time cannot overflow.
Result<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                 std::chrono::milliseconds plain_unit = std::chrono::seconds(1));
// The same in whole seconds ("1500ms" is refused: the field cannot hold it).
Result<std::uint64_t> parse_duration_seconds(std::string_view text);

// A time: unix seconds, "now", "now+2h", "now-90m" (any duration above), or ISO
// "2026-12-01T20:00:00Z". Years 1970 to 9999: beyond that a field cannot hold it.
Result<std::uint64_t> parse_time(std::string_view text, std::uint64_t now);
inline constexpr std::uint64_t kLatestTime = 253402300799;  // 9999-12-31T23:59:59Z

// The closest of `candidates` to `word` by edit distance, if it is close enough to be a typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// ---- Binding the parsers to CLI11 options. Each stores into `target` after the line parsed. ----

// Tells a CLI11 option what its value means in --help ("N", "1..65535", "DURATION", ...).
template <std::integral T>
CLI::Option* add_integer(CLI::App& app, const std::string& names, T& target, const std::string& help, T min, T max,
                         bool allow_hex = false) {
  const std::string range = std::to_string(min) + ".." + std::to_string(max);
  return app
      .add_option_function<std::string>(
          names,
          [&target, min, max, allow_hex, names](const std::string& text) {
            auto v = parse_integer<T>(text, min, max, allow_hex);
            if (!v) throw CLI::ValidationError(names, v.error().message);
            target = *v;
          },
          help)
      ->type_name(allow_hex ? "N|0xN" : "N")
      ->description(help + " (" + range + ")");
}
CLI::Option* add_duration(CLI::App& app, const std::string& names, std::uint64_t& seconds, const std::string& help);
CLI::Option* add_duration_ms(CLI::App& app, const std::string& names, std::uint64_t& ms, const std::string& help);
CLI::Option* add_time(CLI::App& app, const std::string& names, std::uint64_t& unix_seconds, const std::string& help);
// A money amount "12.50" into minor units (entitlement::parse_amount).
CLI::Option* add_amount(CLI::App& app, const std::string& names, std::int64_t& minor, const std::string& help);
// A comma-separated list of 16-bit ids ("1,2,3").
CLI::Option* add_id_list(CLI::App& app, const std::string& names, std::vector<std::uint16_t>& ids, const std::string& help);
// --home DIR with its default shown in --help.
CLI::Option* add_home(CLI::App& app, std::string& home, const std::string& fallback);

// What each leaf command does, run after the whole line parsed (so a bad option anywhere changes
// nothing).
class Commands {
 public:
  void on(CLI::App* leaf, std::function<int()> action) { actions_[leaf] = std::move(action); }
  [[nodiscard]] const std::function<int()>* find(const CLI::App* leaf) const {
    auto it = actions_.find(leaf);
    return it == actions_.end() ? nullptr : &it->second;
  }

 private:
  std::map<const CLI::App*, std::function<int()>> actions_;
};

// A subcommand group ("entitlement", "entitlement service"): one subcommand at most, its help
// printed when none is given.
CLI::App* add_group(CLI::App& parent, const std::string& name, const std::string& description);

// The whole `usher` command line: parses argv, runs the selected command, returns the exit code
// (0 done, 1 the command failed, 2 the command line is wrong).
int run_command_line(int argc, const char* const* argv);

// Writes `value` as one line of JSON (keys in the order they were set) and flushes: the counters and
// summaries scripts and tests parse. Text that is not valid UTF-8 is replaced, never a broken line.
void print_json_line(std::FILE* to, const nlohmann::ordered_json& value);
// A run's transport counters, when its input or output is on the network: "rtp_in" (sequence
// numbers: lost, reordered, late, duplicates...) and "udp_out" (datagrams, unpaced, restarts) objects
// added to its closing JSON line; and the same, short, for a live status line ("" when neither).
void add_transport_counters(nlohmann::ordered_json& line, const streams::PacketSource& in, const streams::PacketSink& out);
std::string transport_status(const streams::PacketSource& in, const streams::PacketSink& out);

using usher::format_utc;
using usher::pad_left;
using usher::pad_right;
using usher::unix_now;
// SIGINT/SIGTERM set the flag that long-running commands poll (and make stop_signals().fd()
// readable). The handlers are installed at the first call of any of these.
void install_stop_handlers();
const std::atomic<bool>& stop_requested();
const StopSignals& stop_signals();

// ---- What the long-running commands (headend run, stb run, entitlement serve, billing serve) share:
// --status-interval and --metrics. ----
struct MonitorOptions {
  std::uint64_t status_interval_ms = 5000;  // 0: no status lines
  std::string metrics;                      // HOST:PORT, empty: no endpoint
};
void add_monitor_options(CLI::App& app, MonitorOptions& options, const std::string& status_help);
// Starts the --metrics endpoint (nullptr when not asked for); throws UsageError for a bad HOST:PORT
// and std::runtime_error when it cannot bind, before the command starts anything else.
std::unique_ptr<MetricsServer> start_metrics(const MonitorOptions& options, MetricsServer::Render render);
// A live input is one without an end to measure progress against: UDP, stdin (unless it is a file).
bool is_live_input(const std::string& locator);
// Reading a stream input so that a stop signal cuts a blocking read short and a silent input still
// wakes the loop for its status lines.
streams::SourceOptions live_source_options(std::chrono::milliseconds idle_timeout);

// Says when the next status line is due, and how long it has been since the last.
class StatusTimer {
 public:
  explicit StatusTimer(std::uint64_t interval_ms) : interval_(interval_ms), last_(std::chrono::steady_clock::now()) {}
  // True (and restarts the interval) when one is due.
  bool due() {
    if (interval_.count() == 0) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < interval_) return false;
    elapsed_ = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return true;
  }
  // Seconds covered by the line due() just allowed.
  [[nodiscard]] double elapsed_seconds() const { return elapsed_; }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_;
  double elapsed_ = 0;
};
// A framed service's page of metrics: usher_PART_requests_total{kind,outcome}.
std::string service_metrics(const std::string& part, const entitlement::RequestCounters::Snapshot& counts);
// Serves until SIGINT/SIGTERM: a status line (requests served, refused, by kind) every status
// interval in which the counts changed, none while idle; then the final counters as a JSON line on
// stderr.
void serve_until_stopped(const std::string& part, net::ReplyServer& server, const entitlement::RequestCounters& counters,
                         const MonitorOptions& options);
// Mbit/s of `packets` TS packets in `seconds`.
double packet_mbps(std::uint64_t packets, double seconds);
// One status line on stderr ("usher <part>: <text>"), flushed.
void print_status(const std::string& part, const std::string& text);
// "12.3% of 1.2 GB, 4.5x real time, 38.2 Mbit/s" for a file input.
std::string progress_text(std::uint64_t bytes_done, std::uint64_t file_bytes, double stream_seconds, double wall_seconds);

// Reads packets from `in`, passes them through `transform`, writes to `out` until the source ends or
// a stop is requested (SIGINT, SIGTERM): either way `finish` flushes what is held back and the sink
// is closed on a whole packet. `tick` runs about every second of wall time (progress, refreshes).
void pump(streams::PacketSource& in, streams::PacketSink& out,
          const std::function<void(std::span<const streams::TsPacket>, std::vector<streams::TsPacket>&)>& transform,
          const std::function<void(std::vector<streams::TsPacket>&)>& finish, const std::function<void()>& tick);

void add_streams(CLI::App& root, Commands& commands);
void add_entitlement(CLI::App& root, Commands& commands);
void add_headend(CLI::App& root, Commands& commands);
void add_stb(CLI::App& root, Commands& commands);
void add_demo(CLI::App& root, Commands& commands);
void add_wallet(CLI::App& root, Commands& commands);
void add_billing(CLI::App& root, Commands& commands);

}  // namespace usher::cli
