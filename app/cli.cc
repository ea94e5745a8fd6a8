#include "cli.h"
#include "usher/core/clock.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>

namespace usher::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& flags) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      options_["help"] = "1";
    } else if (a.rfind("--", 0) == 0 && a.size() > 2) {
      const auto eq = a.find('=');
      if (eq != std::string::npos) {
        options_[a.substr(2, eq - 2)] = a.substr(eq + 1);
      } else {
        const std::string name = a.substr(2);
        if (flags.contains(name)) {
          options_[name] = "1";
        } else {
          if (i + 1 >= argv.size()) throw UsageError("option --" + name + " needs a value");
          options_[name] = argv[++i];
        }
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = options_.find(name);
  return it == options_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& name) const {
  auto it = options_.find(name);
  if (it == options_.end()) throw UsageError("missing --" + name + " (see --help)");
  return it->second;
}

std::int64_t Args::number(const std::string& name, std::int64_t fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    std::size_t used = 0;
    const auto n = std::stoll(v, &used, 0);
    if (used != v.size()) throw std::invalid_argument(v);
    return n;
  } catch (const std::exception&) {
    throw UsageError("--" + name + " expects a number, got '" + v + "'");
  }
}

std::int64_t Args::require_number(const std::string& name) const {
  (void)require(name);
  return number(name, 0);
}

std::optional<int> start_command(const std::vector<std::string>& argv, const char* usage, std::string& sub,
                                 std::optional<Args>& args, const std::set<std::string>& flags) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(usage, stdout);
    return argv.empty() ? 2 : 0;
  }
  sub = argv[0];
  args.emplace(std::vector<std::string>(argv.begin() + 1, argv.end()), flags);
  if (args->help()) {
    std::fputs(usage, stdout);
    return 0;
  }
  return std::nullopt;
}

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }
}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}
const std::atomic<bool>& stop_requested() { return g_stop; }

std::uint64_t parse_duration(const std::string& text) {
  if (text.empty()) throw UsageError("empty duration");
  std::uint64_t mult = 1;
  std::string digits = text;
  switch (text.back()) {
    case 's': digits.pop_back(); break;
    case 'm': mult = 60; digits.pop_back(); break;
    case 'h': mult = 3600; digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) {
    throw UsageError("bad duration '" + text + "': use seconds, 90s, 45m or 2h");
  }
  return std::stoull(digits) * mult;
}

std::uint64_t parse_time(const std::string& text) {
  if (text.rfind("now", 0) == 0) {
    std::uint64_t t = unix_now();
    if (text.size() > 3) {
      if (text[3] != '+' && text[3] != '-') throw UsageError("bad time '" + text + "'");
      const std::string amount = text.substr(4);
      if (amount.empty()) throw UsageError("bad time '" + text + "'");
      std::uint64_t mult = 1;
      std::string digits = amount;
      switch (amount.back()) {
        case 's': digits.pop_back(); break;
        case 'm': mult = 60; digits.pop_back(); break;
        case 'h': mult = 3600; digits.pop_back(); break;
        case 'd': mult = 86400; digits.pop_back(); break;
        default: break;
      }
      std::uint64_t n = 0;
      try {
        n = std::stoull(digits) * mult;
      } catch (const std::exception&) {
        throw UsageError("bad time '" + text + "'");
      }
      t = text[3] == '+' ? t + n : t - n;
    }
    return t;
  }
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) return std::stoull(text);
  std::tm tm{};
  if (strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) == nullptr) {
    throw UsageError("bad time '" + text + "': use unix seconds, now+2h, or 2026-12-01T20:00:00Z");
  }
  return static_cast<std::uint64_t>(timegm(&tm));
}

void pump(streams::PacketSource& in, streams::PacketSink& out,
          const std::function<void(std::span<const streams::TsPacket>, std::vector<streams::TsPacket>&)>& transform,
          const std::function<void(std::vector<streams::TsPacket>&)>& finish, const std::function<void()>& tick) {
  std::vector<streams::TsPacket> input;
  std::vector<streams::TsPacket> output;
  auto last_tick = std::chrono::steady_clock::now();
  bool more = true;
  while (more) {
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
