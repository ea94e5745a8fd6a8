// Logger: one named logger per part ("headend", "stb", ...), level set at run time
// (USHER_LOG=debug|info|warn|error, or --log-level). Lines go to stderr as
// "<time> <level> <part>: <message>". Identifiers are logged; secrets never (Secret has no printer).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace usher {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error", "off"; false if unknown.
bool parse_log_level(std::string_view text, LogLevel& out);

class Logger {
 public:
  explicit Logger(std::string part) : part_(std::move(part)) {}
  template <typename... Args>
  void debug(const Args&... a) const { emit(LogLevel::debug, a...); }
  template <typename... Args>
  void info(const Args&... a) const { emit(LogLevel::info, a...); }
  template <typename... Args>
  void warn(const Args&... a) const { emit(LogLevel::warn, a...); }
  template <typename... Args>
  void error(const Args&... a) const { emit(LogLevel::error, a...); }

 private:
  template <typename... Args>
  void emit(LogLevel level, const Args&... a) const {
    if (level < log_level()) return;
    std::ostringstream os;
    (os << ... << a);
    write(level, os.str());
  }
  void write(LogLevel level, const std::string& message) const;
  std::string part_;
};

}  // namespace usher
