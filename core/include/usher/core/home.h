// A service's home directory and the SQLite files in it, made private to their owner once, here:
// the directory mode 0700, each database file (and SQLite's -wal/-shm beside it) mode 0600. They
// hold private keys (the operator's, an STB's, a wallet's), so no other user may read them.
//
// Modes are given explicitly to mkdir/open and then set with chmod/fchmod, never by changing the
// process's umask: umask is process-wide, and toggling it while other threads create files (the
// engine's workers, the STB's player) would make their files private or ours public by chance.
//
// An existing home or database file that others can read or enter (left by an older version, or
// made by hand) is tightened: the group and other permission bits are cleared, the owner's kept,
// and a warning names the path and its old mode. If it cannot be tightened (not ours, read-only file
// system) opening fails with Errc::storage rather than going on with keys others can read.
//
//   USHER_TRY(auto db, open_private_database(home, "billing.db", IfMissing::create));
#pragma once

#include <string>

#include "usher/core/result.h"
#include "usher/core/sqlite.h"

namespace usher {

// Makes `dir` a private directory: created (missing parents too, with default modes) as 0700 if it
// does not exist, group/other bits cleared if it does. Errc::storage when it cannot be created or
// tightened, or when the path exists and is not a directory.
Status make_private_directory(const std::string& dir);

// Makes the file at `path` private: created empty as 0600 if missing and `create`, group/other bits
// cleared if it exists (also on SQLite's "-wal", "-shm" and "-journal" files beside it).
// Errc::not_found when it is missing and not `create`; Errc::storage when it is not a regular file
// or cannot be made private.
Status make_private_file(const std::string& path, bool create);

enum class IfMissing {
  create,  // a new home: make the directory and the database file
  refuse,  // an existing store: Errc::not_found if the file is not there
};

// Opens home/name with sql::Database::open after making the directory (only when `missing` is
// create) and the file private.
Result<sql::Database> open_private_database(const std::string& home, const std::string& name, IfMissing missing);

}  // namespace usher
