#include "usher/core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace usher {
namespace {
LogLevel initial_level() {
  LogLevel l = LogLevel::info;
  if (const char* env = std::getenv("USHER_LOG")) parse_log_level(env, l);
  return l;
}
std::atomic<LogLevel>& level_ref() {
  static std::atomic<LogLevel> level{initial_level()};
  return level;
}
std::mutex& write_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

void set_log_level(LogLevel level) { level_ref() = level; }
LogLevel log_level() { return level_ref(); }

bool parse_log_level(std::string_view t, LogLevel& out) {
  if (t == "debug") out = LogLevel::debug;
  else if (t == "info") out = LogLevel::info;
  else if (t == "warn") out = LogLevel::warn;
  else if (t == "error") out = LogLevel::error;
  else if (t == "off") out = LogLevel::off;
  else return false;
  return true;
}

void Logger::write(LogLevel level, const std::string& message) const {
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error", "off"};
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
  std::lock_guard lock(write_mutex());
  std::fprintf(stderr, "%s %-5s %s: %s\n", stamp, kNames[static_cast<int>(level)], part_.c_str(), message.c_str());
}

}  // namespace usher
