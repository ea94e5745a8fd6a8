// Where an operator's store keeps its data: the SQLite file in its home (the default: nothing to set
// up), or a PostgreSQL database (`--db postgresql://...` at init), for an operator whose stores
// outgrow one machine or who runs several engines or billings on one database. The choice is made
// once, when the home is made, and kept in the home as database.url (mode 0600: the URL may hold
// a password); every later command finds it there. The home directory still holds the keys.
//
//   USHER_TRY(auto db, open_store_database(home, {"entitlement.db", "engine"}, IfMissing::refuse));
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>
#include <string>

#include "usher/core/home.h"
#include "usher/core/result.h"
#include "usher/core/sql.h"

namespace usher {

// The names of one kind of store: its SQLite file in the home, its schema on a PostgreSQL server.
struct StoreNames {
  std::string sqlite_file;      // "entitlement.db"
  std::string postgres_schema;  // "engine"
};

inline constexpr const char* kDatabaseUrlFile = "database.url";

// The PostgreSQL URL a home keeps (nullopt: the home's SQLite file). Errc::storage when the file
// cannot be read.
Result<std::optional<std::string>> stored_database_url(const std::string& home);

// For a new home: checks `url` (postgresql:// or postgres://; empty: SQLite) and keeps it in the
// home, made private. Errc::invalid_argument for a URL that is not PostgreSQL's, saying which.
Status keep_database_url(const std::string& home, const std::string& url);

bool directory_exists(const std::string& path);
// The undoing making_store_home does: the kept URL, and the home itself when it was new and is empty.
void forget_new_home(const std::string& home, const std::string& database_url, bool new_home);

// Makes a new home's store with `make` (which opens it with open_store_database): the URL kept
// first (keep_database_url), and when `make` fails the home is left as it was, so that init can be
// run again: no URL kept, no empty directory made.
template <typename Make>
auto making_store_home(const std::string& home, const std::string& database_url, Make&& make) -> decltype(make()) {
  const bool new_home = !directory_exists(home);
  USHER_CHECK(keep_database_url(home, database_url));
  auto made = make();
  if (!made) forget_new_home(home, database_url, new_home);
  return made;
}

// Opens the store's database: PostgreSQL when the home keeps a URL, else the SQLite file (made
// when `missing` is create). Errc::not_found when the home has neither (and `missing` is refuse).
Result<sql::Database> open_store_database(const std::string& home, const StoreNames& names, IfMissing missing);

// Whether the home has a store (a kept URL, or the SQLite file).
bool has_store_database(const std::string& home, const StoreNames& names);

// Private keys kept in the home beside a store on a database server (operator.key, billing.key),
// so that the database never holds them: "name=hex" lines, the file mode 0600.
using KeyFileFields = std::map<std::string, std::vector<std::uint8_t>>;
Status write_key_file(const std::string& path, const std::string& comment, const KeyFileFields& fields);
// Errc::storage naming the file when it is missing, not private, or lacks one of `required` as
// 32 bytes.
Result<KeyFileFields> read_key_file(const std::string& path, const std::vector<std::string>& required);

}  // namespace usher
