// Schema versions of Usher's SQLite stores: each store lists its schema as numbered steps, and a
// file's PRAGMA user_version says how many of them it holds. Opening a store brings the file forward
// step by step, each step in one transaction of its own with the new version written in the same
// transaction, so a crash halfway through a step leaves the file at the version before it. A file
// written by a newer Usher (a version this code does not know) is refused and left untouched.
//
//   const sql::Schema& engine_schema() {
//     static const sql::Schema schema("engine store", {
//         {1, "the engine's tables", sql_steps(kTablesV1)},
//         {2, "rooms get a floor", sql_steps("ALTER TABLE rooms ADD COLUMN floor INTEGER")},
//     });
//     return schema;
//   }
//   USHER_CHECK(engine_schema().migrate(db, path));
//
// Step 1 of a store that existed before versions were kept is that store's schema at the time, in
// CREATE ... IF NOT EXISTS statements: a file from then has user_version 0 and its tables, and
// step 1 finds them there and leaves them as they are. docs/architecture.md, "Schema versions".
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/sql.h"

namespace usher::sql {

// One numbered step of a store's schema.
struct SchemaStep {
  int version;                           // the user_version of a file once this step is applied
  std::string summary;                   // what the step changes, named when it fails
  std::function<void(Database&)> apply;  // runs inside the step's transaction; throws to fail it
};

// A step that runs `sql` (one or more statements).
std::function<void(Database&)> sql_steps(std::string sql);

// The schema version a store's database holds (SQLite: its PRAGMA user_version).
int user_version(Database& db);

// A store's schema: its steps, numbered one after the other. The first step makes the whole schema
// in an empty file; a store whose older files are not brought forward starts its list above 1 (the
// STB's secure element starts at 2), and files of a version below its first step are refused.
class Schema {
 public:
  // `store` names the kind of file in messages ("engine store"). Throws std::logic_error when the
  // steps are not numbered one after the other from 1 or more (a mistake in the code).
  Schema(std::string store, std::vector<SchemaStep> steps);

  [[nodiscard]] int latest() const { return steps_.back().version; }
  [[nodiscard]] int first() const { return steps_.front().version; }
  [[nodiscard]] const std::string& store() const { return store_; }

  // Brings the file `db` (opened read-write from `path`) to the latest version: each missing step
  // in a transaction of its own, user_version set in it. A new, empty file gets every step. Refused
  // with Errc::storage, nothing changed, for a file of a newer version, a file older than the
  // first step (user_version 0 with tables counts as step 1 when the list starts at 1), or a step
  // that fails (the file is left at the version before that step). A file
  // already at the latest version is only read.
  Status migrate(Database& db, const std::string& path) const;

  // For a file opened read-only: Errc::storage unless it is at the latest version (a newer one is
  // refused as by migrate, an older one has to be opened once for writing first). Reads only.
  Status check(Database& db, const std::string& path) const;

 private:
  // The refusal for a file at `version` that this code cannot bring forward, or ok.
  Status refuse_unknown(int version, bool has_tables, const std::string& path) const;

  std::string store_;
  std::vector<SchemaStep> steps_;
};

}  // namespace usher::sql
