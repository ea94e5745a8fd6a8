#include "cli.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <thread>
#include <utility>

#include "usher/core/log.h"
#include "usher/entitlement/assets.h"

#ifndef USHER_VERSION
#error "USHER_VERSION comes from CMake's project(VERSION)"
#endif

namespace usher::cli {

Result<std::int64_t> parse_integer_in(std::string_view text, std::int64_t min, std::uint64_t max, bool allow_hex) {
  const std::string shown(text);
  auto range_error = [&] {
    return make_error(Errc::invalid_argument,
                      "'" + shown + "' is out of range: from " + std::to_string(min) + " to " + std::to_string(max));
  };
  int base = 10;
  std::string_view digits = text;
  bool negative = false;
  if (allow_hex && (digits.starts_with("0x") || digits.starts_with("0X"))) {
    base = 16;
    digits.remove_prefix(2);
  } else if (!digits.empty() && digits.front() == '-' && min < 0) {
    negative = true;
    digits.remove_prefix(1);
  }
  const char* allowed = base == 16 ? "0123456789abcdefABCDEF" : "0123456789";
  if (digits.empty() || digits.find_first_not_of(allowed) != std::string_view::npos) {
    return make_error(Errc::invalid_argument,
                      std::string("expects a ") + (allow_hex ? "decimal (or 0x hexadecimal)" : "decimal") + " number, got '" + shown + "'");
  }
  std::uint64_t magnitude = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) return range_error();
  if (negative) {
    if (magnitude > static_cast<std::uint64_t>(-(min + 1)) + 1) return range_error();
    return magnitude == 0 ? 0 : -static_cast<std::int64_t>(magnitude - 1) - 1;
  }
  if (magnitude > max || (min > 0 && magnitude < static_cast<std::uint64_t>(min))) return range_error();
  return static_cast<std::int64_t>(magnitude);
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text, std::chrono::milliseconds plain_unit) {
  constexpr std::uint64_t kMaxMs = 100ULL * 366 * 86400 * 1000;
  auto bad = [&] {
    return make_error(Errc::invalid_argument,
                      "bad duration '" + std::string(text) + "': use a number with a unit, as 90s, 45m, 2h, 3d or 500ms");
  };
  const auto unit_at = text.find_first_not_of("0123456789");
  const std::string_view digits = text.substr(0, unit_at);
  const std::string_view unit = unit_at == std::string_view::npos ? std::string_view() : text.substr(unit_at);
  if (digits.empty() || digits.size() > 15) return bad();
  std::uint64_t ms_per = 0;
  if (unit.empty()) ms_per = static_cast<std::uint64_t>(plain_unit.count());
  else if (unit == "ms") ms_per = 1;
  else if (unit == "s") ms_per = 1000;
  else if (unit == "m") ms_per = 60'000;
  else if (unit == "h") ms_per = 3'600'000;
  else if (unit == "d") ms_per = 86'400'000;
  else return bad();
  std::uint64_t n = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), n, 10);
  if (n > kMaxMs / ms_per) {
    return make_error(Errc::invalid_argument, "duration '" + std::string(text) + "' is too long (at most 100 years)");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * ms_per));
}

Result<std::uint64_t> parse_duration_seconds(std::string_view text) {
  USHER_TRY(auto d, parse_duration(text));
  if (d.count() % 1000 != 0) {
    return make_error(Errc::invalid_argument, "duration '" + std::string(text) + "' must be whole seconds");
  }
  return static_cast<std::uint64_t>(d.count() / 1000);
}

Result<std::uint64_t> parse_time(std::string_view text, std::uint64_t now) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument,
                      "bad time '" + shown + "'" + why + ": use unix seconds, now, now+2h, now-30m or 2026-12-01T20:00:00Z");
  };
  if (text.starts_with("now")) {
    if (text.size() == 3) return now;
    const char sign = text[3];
    if (sign != '+' && sign != '-') return bad("");
    auto d = parse_duration_seconds(text.substr(4));
    if (!d) return bad(" (" + d.error().message + ")");
    if (sign == '-') {
      if (*d > now) return bad(" (before 1970)");
      return now - *d;
    }
    if (now + *d > kLatestTime) return bad(" (after 9999)");
    return now + *d;
  }
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos) {
    auto t = parse_integer<std::uint64_t>(text, 0, kLatestTime);
    if (!t) return bad(" (" + t.error().message + ")");
    return *t;
  }
  std::tm tm{};
  const char* end = strptime(shown.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0' || shown.size() != 20) return bad("");
  const auto t = timegm(&tm);
  if (t < 0) return bad(" (before 1970)");
  return static_cast<std::uint64_t>(t);
}

namespace {

// Edits between two words, a swap of neighbours counting as one ("--hoem" is one from "--home"):
// the optimal string alignment distance.
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = 0;
  for (const auto& c : candidates) {
    const auto d = edit_distance(word, c);
    if (best.empty() || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  // A typo is a few edits, and fewer than the word has letters (or "--x" suggests everything).
  const std::size_t limit = std::max<std::size_t>(1, std::min<std::size_t>(3, word.size() / 3));
  if (best.empty() || best_distance > limit) {
    // A prefix of one option only ("--curr" for "--currency") is also what was meant.
    std::string prefixed;
    for (const auto& c : candidates) {
      if (word.size() > 3 && c.starts_with(word)) {
        if (!prefixed.empty()) return "";
        prefixed = c;
      }
    }
    return prefixed;
  }
  return best;
}

CLI::Option* add_duration(CLI::App& app, const std::string& names, std::uint64_t& seconds, const std::string& help) {
  return app
      .add_option_function<std::string>(
          names,
          [&seconds, names](const std::string& text) {
            auto v = parse_duration_seconds(text);
            if (!v) throw CLI::ValidationError(names, v.error().message);
            seconds = *v;
          },
          help + " (90s, 45m, 2h, 3d; plain number: seconds)")
      ->type_name("DURATION");
}

CLI::Option* add_duration_ms(CLI::App& app, const std::string& names, std::uint64_t& ms, const std::string& help) {
  return app
      .add_option_function<std::string>(
          names,
          [&ms, names](const std::string& text) {
            auto v = parse_duration(text, std::chrono::milliseconds(1));
            if (!v) throw CLI::ValidationError(names, v.error().message);
            ms = static_cast<std::uint64_t>(v->count());
          },
          help + " (500ms, 3s, 2m; plain number: milliseconds)")
      ->type_name("DURATION");
}

CLI::Option* add_time(CLI::App& app, const std::string& names, std::uint64_t& unix_seconds, const std::string& help) {
  return app
      .add_option_function<std::string>(
          names,
          [&unix_seconds, names](const std::string& text) {
            auto v = parse_time(text, unix_now());
            if (!v) throw CLI::ValidationError(names, v.error().message);
            unix_seconds = *v;
          },
          help + " (unix seconds, now, now+2h, 2026-12-01T20:00:00Z)")
      ->type_name("TIME");
}

CLI::Option* add_amount(CLI::App& app, const std::string& names, std::int64_t& minor, const std::string& help) {
  return app
      .add_option_function<std::string>(
          names,
          [&minor, names](const std::string& text) {
            auto v = entitlement::parse_amount(text);
            if (!v) throw CLI::ValidationError(names, v.error().message);
            minor = *v;
          },
          help)
      ->type_name("AMOUNT");
}

CLI::Option* add_id_list(CLI::App& app, const std::string& names, std::vector<std::uint16_t>& ids, const std::string& help) {
  return app
      .add_option_function<std::string>(
          names,
          [&ids, names](const std::string& text) {
            ids.clear();
            std::stringstream items(text);
            std::string item;
            while (std::getline(items, item, ',')) {
              auto v = parse_integer<std::uint16_t>(item, 1, 0xFFFF);
              if (!v) throw CLI::ValidationError(names, "expects comma-separated ids from 1 to 65535: " + v.error().message);
              ids.push_back(*v);
            }
            if (ids.empty() || text.back() == ',') throw CLI::ValidationError(names, "expects comma-separated ids, got '" + text + "'");
          },
          help)
      ->type_name("ID,ID,...");
}

CLI::Option* add_home(CLI::App& app, std::string& home, const std::string& fallback) {
  home = fallback;
  return app.add_option("--home", home, "the part's directory")->type_name("DIR")->default_str(fallback);
}

CLI::App* add_group(CLI::App& parent, const std::string& name, const std::string& description) {
  auto* group = parent.add_subcommand(name, description);
  group->require_subcommand(0, 1);
  return group;
}

namespace {

// The command the line selected, deepest first: "usher entitlement service add" gives "add".
CLI::App* selected_leaf(CLI::App& root) {
  CLI::App* app = &root;
  while (true) {
    const auto chosen = app->get_subcommands();
    if (chosen.empty()) return app;
    app = chosen.front();
  }
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr; app = app->get_parent()) path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

// Every spelling `app` accepts where the user typed something unknown: its options and those of
// the groups above it (--log-level, --version), and its subcommands.
std::vector<std::string> known_words(const CLI::App* app) {
  std::vector<std::string> words;
  for (const CLI::App* a = app; a != nullptr; a = a->get_parent()) {
    for (const auto* opt : a->get_options()) {
      for (const auto& l : opt->get_lnames()) words.push_back("--" + l);
      for (const auto& s : opt->get_snames()) words.push_back("-" + s);
    }
    if (a == app) {
      for (const auto* sub : a->get_subcommands([](const CLI::App*) { return true; })) words.push_back(sub->get_name());
    }
  }
  return words;
}

// "unknown option --hoem (did you mean --home?)" for each word the parser did not take.
std::string explain_extras(CLI::App& root, CLI::App* leaf) {
  std::string text;
  const auto words = known_words(leaf);
  bool after_unknown_option = false;
  for (const auto& extra : root.remaining(true)) {
    const bool option = extra.starts_with("-");
    // The value typed after an unknown option ("--hoem ./x") is not a second mistake.
    if (!option && std::exchange(after_unknown_option, false)) continue;
    after_unknown_option = option && extra.find('=') == std::string::npos;
    std::string word = extra;
    if (option) word = word.substr(0, word.find('='));
    std::string line = option ? "unknown option " + word : "unexpected argument '" + extra + "'";
    if (const auto near = closest_match(word, words); !near.empty()) line += " (did you mean " + near + "?)";
    text += (text.empty() ? "" : "; ") + line;
  }
  return text.empty() ? "unexpected arguments" : text;
}

// Wraps each paragraph of `text` at `width` columns (CLI11 2.1 prints descriptions on one line).
std::string wrap(const std::string& text, std::size_t width) {
  std::string out;
  std::istringstream paragraphs(text);
  for (std::string paragraph; std::getline(paragraphs, paragraph);) {
    std::istringstream words(paragraph);
    std::size_t column = 0;
    for (std::string word; words >> word;) {
      if (column > 0 && column + 1 + word.size() > width) {
        out += "\n";
        column = 0;
      } else if (column > 0) {
        out += " ";
        ++column;
      }
      out += word;
      column += word.size();
    }
    out += "\n";
  }
  return out;
}

// CLI11's help with the command's description and footer wrapped to a terminal's width.
class WrappingFormatter : public CLI::Formatter {
 public:
  std::string make_description(const CLI::App* app) const override {
    const auto text = app->get_description();
    return text.empty() ? "" : wrap(text, 100) + "\n";
  }
  std::string make_footer(const CLI::App* app) const override {
    const auto text = app->get_footer();
    return text.empty() ? "" : wrap(text, 100);
  }
};

// CLI11 gives an option its value whatever the next word is, so "--home --verbose" would make a
// directory named --verbose. No value of ours starts with "--": such a word is an option, and the
// value before it is missing.
void refuse_options_as_values(CLI::App& app) {
  const CLI::Validator not_an_option(
      [](std::string& value) {
        return value.starts_with("--") ? "needs a value before " + value.substr(0, value.find('=')) : std::string();
      },
      "");
  for (auto* opt : app.get_options()) {
    if (opt->get_expected_min() > 0 && !opt->get_positional()) opt->check(not_an_option);
  }
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) refuse_options_as_values(*sub);
}

}  // namespace

int run_command_line(int argc, const char* const* argv) {
  CLI::App root("usher: conditional access and pay-per-view for digital television", "usher");
  root.fallthrough();  // --log-level and --version after a subcommand's own options too
  root.require_subcommand(0, 1);
  root.set_version_flag("--version", "usher " USHER_VERSION);
  std::string log_level;
  bool verbose = false;
  root.add_option("--log-level", log_level, "debug, info, warn, error or off (or the USHER_LOG variable)")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  root.add_flag("-v,--verbose", verbose, "the same as --log-level debug");
  root.formatter(std::make_shared<WrappingFormatter>());
  Commands commands;
  add_demo(root, commands);
  add_streams(root, commands);
  add_entitlement(root, commands);
  add_headend(root, commands);
  add_stb(root, commands);
  add_wallet(root, commands);
  add_billing(root, commands);
  root.footer("usher <command> --help shows a command's options.");  // after the subcommands: not theirs
  refuse_options_as_values(root);

  try {
    root.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(root.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(root.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::printf("%s\n", e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    // A misspelt option is the cause of the "--x is required" that follows it: name the typo.
    CLI::App* leaf = selected_leaf(root);
    const bool typo_first = dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr ||
                            (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !root.remaining(true).empty());
    const std::string what = typo_first ? explain_extras(root, leaf) : std::string(e.what());
    std::fprintf(stderr, "%s: %s\nsee: %s --help\n", command_path(leaf).c_str(), what.c_str(), command_path(leaf).c_str());
    return 2;
  }
  if (verbose) set_log_level(LogLevel::debug);
  if (!log_level.empty()) {
    LogLevel level;
    (void)parse_log_level(log_level, level);
    set_log_level(level);
  }
  CLI::App* leaf = selected_leaf(root);
  const auto* action = commands.find(leaf);
  if (action == nullptr) {  // a group without its subcommand: what it offers
    std::fputs(leaf->help().c_str(), stderr);
    return 2;
  }
  const std::string where = command_path(leaf);
  try {
    return (*action)();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\nsee: %s --help\n", where.c_str(), e.what(), where.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", where.c_str(), e.what());
    return 1;
  }
}

void print_json_line(std::FILE* to, const nlohmann::ordered_json& value) {
  const auto line = value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::fputs(line.c_str(), to);
  std::fflush(to);
}

void add_transport_counters(nlohmann::ordered_json& line, const streams::PacketSource& in, const streams::PacketSink& out) {
  if (const auto r = in.rtp_stats()) {
    line["rtp_in"] = {{"datagrams", r->datagrams}, {"delivered", r->delivered}, {"lost", r->lost},
                      {"reordered", r->reordered}, {"late", r->late},           {"duplicates", r->duplicates},
                      {"refused", r->refused},     {"restarts", r->restarts}};
  }
  if (const auto u = out.network_stats()) {
    line["udp_out"] = {{"datagrams", u->datagrams}, {"unpaced", u->unpaced}, {"discontinuities", u->discontinuities},
                       {"pcr_gaps", u->pcr_gaps},   {"restarts", u->restarts}};
  }
}

std::string transport_status(const streams::PacketSource& in, const streams::PacketSink& out) {
  std::string text;
  if (const auto r = in.rtp_stats()) {
    text += "; RTP in: " + std::to_string(r->lost) + " lost, " + std::to_string(r->reordered) + " reordered, " +
            std::to_string(r->duplicates) + " duplicates";
  }
  if (const auto u = out.network_stats()) {
    text += "; out: " + std::to_string(u->datagrams) + " datagrams";
    if (u->restarts > 0) text += ", pacing restarted " + std::to_string(u->restarts) + "x after input stalls";
  }
  return text;
}

const StopSignals& stop_signals() {
  static StopSignals signals;  // for the rest of the process: a command runs once
  return signals;
}
void install_stop_handlers() { (void)stop_signals(); }
const std::atomic<bool>& stop_requested() { return stop_signals().flag(); }

void add_monitor_options(CLI::App& app, MonitorOptions& options, const std::string& status_help) {
  app.add_option_function<std::string>(
         "--status-interval",
         [&options](const std::string& text) {
           auto v = parse_duration(text);
           if (!v) throw CLI::ValidationError("--status-interval", v.error().message);
           options.status_interval_ms = static_cast<std::uint64_t>(v->count());
         },
         status_help + " (default 5s; 0: none; 10s, 1m; plain number: seconds)")
      ->type_name("DURATION");
  app.add_option("--metrics", options.metrics,
                 "serve Prometheus metrics at http://HOST:PORT/metrics while it runs (e.g. 127.0.0.1:9100)")
      ->type_name("HOST:PORT");
}

std::unique_ptr<MetricsServer> start_metrics(const MonitorOptions& options, MetricsServer::Render render) {
  if (options.metrics.empty()) return nullptr;
  if (auto where = parse_host_port(options.metrics); !where) throw UsageError("--metrics " + where.error().message);
  auto server = MetricsServer::start(options.metrics, std::move(render));
  if (!server) throw std::runtime_error(server.error().message);
  Logger("metrics").info("Prometheus metrics on http://", options.metrics, "/metrics");
  return std::move(server.value());
}

bool is_live_input(const std::string& locator) { return locator == "-" || locator.rfind("udp://", 0) == 0; }

streams::SourceOptions live_source_options(std::chrono::milliseconds idle_timeout) {
  streams::SourceOptions o;
  o.idle_timeout = idle_timeout;
  o.interrupt_fd = stop_signals().fd();
  o.wake_every = std::chrono::milliseconds(500);
  return o;
}

std::string service_metrics(const std::string& part, const entitlement::RequestCounters::Snapshot& counts) {
  PrometheusText m;
  const std::string name = "usher_" + part + "_requests_total";
  const std::string help = "Requests answered, by kind and outcome (served: ok; refused: an error reply).";
  m.counter(name, help, static_cast<double>(counts.served), {{"kind", "all"}, {"outcome", "served"}});
  m.counter(name, help, static_cast<double>(counts.refused), {{"kind", "all"}, {"outcome", "refused"}});
  for (const auto& [kind, outcome] : counts.by_kind) {
    m.counter(name, help, static_cast<double>(outcome.served), {{"kind", kind}, {"outcome", "served"}});
    m.counter(name, help, static_cast<double>(outcome.refused), {{"kind", kind}, {"outcome", "refused"}});
  }
  return m.str();
}

namespace {
std::string counts_text(const entitlement::RequestCounters::Snapshot& counts) {
  std::string text = std::to_string(counts.served) + " requests served, " + std::to_string(counts.refused) + " refused";
  std::string kinds;
  for (const auto& [kind, outcome] : counts.by_kind) {
    if (!kinds.empty()) kinds += ", ";
    kinds += kind + " " + std::to_string(outcome.served);
    if (outcome.refused != 0) kinds += "/" + std::to_string(outcome.refused) + " refused";
  }
  return kinds.empty() ? text : text + " (" + kinds + ")";
}
}  // namespace

void serve_until_stopped(const std::string& part, net::ReplyServer& server, const entitlement::RequestCounters& counters,
                         const MonitorOptions& options) {
  const auto& stop = stop_requested();
  // Status lines from their own thread: the serving one is inside ReplyServer::run. Joined on every
  // way out, a failure of the server included.
  std::atomic<bool> served{false};
  std::thread status_thread([&] {
    StatusTimer status(options.status_interval_ms);
    auto last = counters.snapshot();
    while (!stop && !served) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!status.due()) continue;
      const auto now = counters.snapshot();
      if (now == last) continue;  // idle: nothing to say
      print_status(part, counts_text(now) + " in total; " + std::to_string(now.served + now.refused - last.served - last.refused) +
                             " in the last " + std::to_string(static_cast<long long>(status.elapsed_seconds() + 0.5)) + " s");
      last = now;
    }
  });
  struct JoinAtExit {
    std::atomic<bool>& served;
    std::thread& thread;
    ~JoinAtExit() {
      served = true;
      thread.join();
    }
  };
  {
    JoinAtExit join{served, status_thread};
    server.run(stop);
  }
  const auto counts = counters.snapshot();
  nlohmann::ordered_json by_kind = nlohmann::ordered_json::object();
  for (const auto& [kind, outcome] : counts.by_kind) by_kind[kind] = {{"served", outcome.served}, {"refused", outcome.refused}};
  Logger(part).info("stopped by signal ", stop_signals().signal_number(), " after ", server.requests_served(), " requests");
  print_json_line(stderr, {{"requests_served", counts.served},
                           {"requests_refused", counts.refused},
                           {"replies_sent", server.requests_served()},
                           {"by_kind", std::move(by_kind)},
                           {"stopped", true}});
}

double packet_mbps(std::uint64_t packets, double seconds) {
  return seconds > 0 ? static_cast<double>(packets) * 188.0 * 8.0 / seconds / 1e6 : 0.0;
}

void print_status(const std::string& part, const std::string& text) {
  std::fprintf(stderr, "usher %s: %s\n", part.c_str(), text.c_str());
  std::fflush(stderr);
}

std::string progress_text(std::uint64_t bytes_done, std::uint64_t file_bytes, double stream_seconds, double wall_seconds) {
  char buf[160];
  const double percent = file_bytes > 0 ? 100.0 * static_cast<double>(std::min(bytes_done, file_bytes)) / static_cast<double>(file_bytes) : 0.0;
  const double mbps = wall_seconds > 0 ? static_cast<double>(bytes_done) * 8.0 / wall_seconds / 1e6 : 0.0;
  if (stream_seconds > 0 && wall_seconds > 0) {
    std::snprintf(buf, sizeof(buf), "progress %.1f%% of %.1f MB, %.1fx real time, %.1f Mbit/s", percent,
                  static_cast<double>(file_bytes) / 1e6, stream_seconds / wall_seconds, mbps);
  } else {
    std::snprintf(buf, sizeof(buf), "progress %.1f%% of %.1f MB, %.1f Mbit/s", percent, static_cast<double>(file_bytes) / 1e6, mbps);
  }
  return buf;
}

void pump(streams::PacketSource& in, streams::PacketSink& out,
          const std::function<void(std::span<const streams::TsPacket>, std::vector<streams::TsPacket>&)>& transform,
          const std::function<void(std::vector<streams::TsPacket>&)>& finish, const std::function<void()>& tick) {
  std::vector<streams::TsPacket> input;
  std::vector<streams::TsPacket> output;
  auto last_tick = std::chrono::steady_clock::now();
  bool more = true;
  const auto& stop = stop_requested();
  while (more && !stop) {
    input.clear();
    output.clear();
    more = in.read(input, 2048);
    transform(input, output);
    out.write(output);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_tick >= std::chrono::seconds(1)) {
      last_tick = now;
      tick();
    }
  }
  output.clear();
  finish(output);
  out.write(output);
  out.close();
}

}  // namespace usher::cli
