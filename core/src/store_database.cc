#include "usher/core/store_database.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "usher/core/hex.h"
#include "usher/core/postgres.h"
#include "usher/core/sqlite.h"

namespace usher {
namespace fs = std::filesystem;

Result<std::optional<std::string>> stored_database_url(const std::string& home) {
  const auto path = fs::path(home) / kDatabaseUrlFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::string>();
  std::ifstream in(path);
  std::string url;
  if (!in || !std::getline(in, url)) return make_error(Errc::storage, "cannot read " + path.string());
  while (!url.empty() && (url.back() == '\r' || url.back() == ' ')) url.pop_back();
  return std::optional<std::string>(url);
}

Status keep_database_url(const std::string& home, const std::string& url) {
  if (url.empty()) return ok_status();
  if (url.rfind("postgresql://", 0) != 0 && url.rfind("postgres://", 0) != 0) {
    return make_error(Errc::invalid_argument, "--db takes a postgresql:// URL (without --db the store is a SQLite file in the home)");
  }
  USHER_CHECK(pg::parse_url(url));
  USHER_CHECK(make_private_directory(home));
  const std::string path = (fs::path(home) / kDatabaseUrlFile).string();
  USHER_CHECK(make_private_file(path, true));
  std::ofstream out(path, std::ios::trunc);
  out << url << "\n";
  out.close();
  if (!out) return make_error(Errc::io, "cannot write " + path);
  return ok_status();
}

Result<sql::Database> open_store_database(const std::string& home, const StoreNames& names, IfMissing missing) {
  USHER_TRY(auto url, stored_database_url(home));
  if (url) {
    USHER_CHECK(make_private_directory(home));
    return sql::open_postgres(*url, names.postgres_schema);
  }
  return open_private_database(home, names.sqlite_file, missing);
}

bool directory_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void forget_new_home(const std::string& home, const std::string& database_url, bool new_home) {
  std::error_code ec;
  if (!database_url.empty()) fs::remove(fs::path(home) / kDatabaseUrlFile, ec);
  if (new_home) fs::remove(home, ec);  // only when empty: a SQLite file made meanwhile stays, as before
}

bool has_store_database(const std::string& home, const StoreNames& names) {
  std::error_code ec;
  return fs::exists(fs::path(home) / kDatabaseUrlFile, ec) || fs::exists(fs::path(home) / names.sqlite_file, ec);
}

Status write_key_file(const std::string& path, const std::string& comment, const KeyFileFields& fields) {
  USHER_CHECK(make_private_file(path, true));
  std::ofstream out(path, std::ios::trunc);
  out << "# " << comment << "\n";
  for (const auto& [name, bytes] : fields) out << name << "=" << to_hex(bytes) << "\n";
  out.close();
  if (!out) return make_error(Errc::io, "cannot write " + path);
  return ok_status();
}

Result<KeyFileFields> read_key_file(const std::string& path, const std::vector<std::string>& required) {
  if (!make_private_file(path, false)) return make_error(Errc::storage, path + " is missing or cannot be made private");
  std::ifstream in(path);
  KeyFileFields fields;
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    auto bytes = from_hex(line.substr(eq + 1));
    if (!bytes) return make_error(Errc::storage, path + " has a malformed " + line.substr(0, eq));
    fields[line.substr(0, eq)] = std::move(*bytes);
  }
  for (const auto& name : required) {
    const auto it = fields.find(name);
    if (it == fields.end() || it->second.size() != 32) return make_error(Errc::storage, path + " has no 32-byte " + name);
  }
  return fields;
}

}  // namespace usher
