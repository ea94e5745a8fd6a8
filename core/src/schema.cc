#include "usher/core/schema.h"

#include <exception>
#include <stdexcept>
#include <utility>

namespace usher::sql {
namespace {
bool has_tables(Database& db) { return db.connection().has_tables(); }
Error unreadable(const std::string& path, const std::exception& e) {
  return make_error(Errc::storage, path + " is damaged or not a database: its schema version cannot be read (" + e.what() + ")");
}
}  // namespace

std::function<void(Database&)> sql_steps(std::string sql) {
  return [sql = std::move(sql)](Database& db) { db.exec(sql); };
}

int user_version(Database& db) { return db.connection().schema_version(); }

Schema::Schema(std::string store, std::vector<SchemaStep> steps) : store_(std::move(store)), steps_(std::move(steps)) {
  if (steps_.empty() || steps_.front().version < 1) throw std::logic_error(store_ + ": schema steps must start at 1 or more");
  for (std::size_t i = 1; i < steps_.size(); ++i) {
    if (steps_[i].version != steps_[i - 1].version + 1) throw std::logic_error(store_ + ": schema steps must be numbered one after the other");
  }
}

Status Schema::refuse_unknown(int version, bool tables, const std::string& path) const {
  if (version > latest()) {
    return make_error(Errc::storage, path + " was written by a newer Usher (schema " + std::to_string(version) + ", this one knows up to " +
                                         std::to_string(latest()) + "): refused, nothing changed");
  }
  // The first step makes the whole schema from nothing: it applies to a new file, and (when it is
  // step 1) to a file from before versions were kept; any other file below it is refused.
  if (version < 0 || (version > 0 && version < first()) || (version == 0 && tables && first() > 1)) {
    return make_error(Errc::storage, path + " has schema version " + std::to_string(version) + ", older than this Usher's " + store_ +
                                         " can bring forward (from " + std::to_string(first()) + " on): refused, nothing changed");
  }
  return ok_status();
}

Status Schema::check(Database& db, const std::string& path) const {
  try {
    const int version = user_version(db);
    if (version == latest()) return ok_status();
    USHER_CHECK(refuse_unknown(version, has_tables(db), path));
    return make_error(Errc::storage, path + " has schema version " + std::to_string(version) + " and this Usher reads " +
                                         std::to_string(latest()) + ": open it once for writing to bring it forward");
  } catch (const std::exception& e) {
    return unreadable(path, e);
  }
}

Status Schema::migrate(Database& db, const std::string& path) const {
  int version = 0;
  try {
    version = user_version(db);
    if (version == latest()) return ok_status();  // the usual case: nothing to write, no lock taken
  } catch (const std::exception& e) {
    return unreadable(path, e);
  }
  for (;;) {
    const SchemaStep* step = nullptr;
    try {
      Transaction tx(db);
      // Read again under the write lock: another process may have brought the file forward since.
      version = user_version(db);
      USHER_CHECK(refuse_unknown(version, has_tables(db), path));
      if (version == latest()) return ok_status();  // nothing written: the transaction ends empty
      step = &steps_[version == 0 ? 0 : static_cast<std::size_t>(version + 1 - first())];
      step->apply(db);
      db.connection().set_schema_version(step->version);
      tx.commit();
    } catch (const std::exception& e) {
      if (step == nullptr) return make_error(Errc::storage, "cannot bring " + path + " forward: " + e.what());
      return make_error(Errc::storage, "cannot bring " + path + " from schema " + std::to_string(version) + " to " +
                                           std::to_string(step->version) + " (" + step->summary + "): " + e.what() +
                                           "; it is left at schema " + std::to_string(version));
    }
  }
}

}  // namespace usher::sql
