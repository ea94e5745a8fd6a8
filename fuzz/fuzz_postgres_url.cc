// PostgreSQL URLs (--db postgresql://user:password@host:port/database?options): never a crash; a
// refusal is invalid_argument with a message; an accepted URL's connection string, quoted by us, is
// read back by libpq as exactly the values it parsed from the URL (no quote or backslash in a value
// can change what libpq is told).
#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "usher/core/postgres.h"

namespace {
std::map<std::string, std::string> options_of(const std::string& conninfo) {
  std::map<std::string, std::string> out;
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    PQfreemem(error);
    __builtin_trap();
  }
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out[o->keyword] = o->val;
  }
  PQconninfoFree(options);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  if (url.find('\0') != std::string::npos) return 0;  // a C string ends there: not a URL anyone can pass
  const auto parsed = usher::pg::parse_url(url);
  if (!parsed) {
    if (parsed.error().code != usher::Errc::invalid_argument || parsed.error().message.empty()) __builtin_trap();
    return 0;
  }
  auto from_url = options_of(url);
  auto from_conninfo = options_of(parsed->conninfo);
  for (const auto& [keyword, value] : from_url) {
    const auto it = from_conninfo.find(keyword);
    if (it == from_conninfo.end() || it->second != value) __builtin_trap();
  }
  return 0;
}
