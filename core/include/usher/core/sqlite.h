// SQLite behind the storage interface (sql.h): the embedded default for every store, and the only
// store of the STB and the handset. sqlite.cc is the one place Usher calls SQLite; its connection
// and statements are RAII types there, reached through sql::Database and sql::Statement.
//
// Files are opened in WAL mode with synchronous=FULL so that a committed change survives kill -9
// and power loss; busy waits are bounded by a timeout (10 s) instead of failing at once. A write
// transaction is BEGIN IMMEDIATE: the file's one write lock, taken at its start.
//
//   sql::Database db = sql::Database::open(path).value();
#pragma once

#include "usher/core/sql.h"
