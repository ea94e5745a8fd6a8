// Which backend the store suites under test use (defined in postgres_server.cc). Kept apart from
// postgres_server.h so that fixtures and benchmarks include it without GoogleTest.
#pragma once

#include <string>

namespace usher::testing {

// The store suites run on both backends: each such test binary is also a ctest entry
// "<binary>_on_postgresql", run with USHER_TEST_BACKEND=postgresql. The tests make their operator
// and billing stores with store_database_url(): "" (the SQLite file in the home) normally, a new
// database on the process's shared server in that run. Where the server cannot start the run prints
// "PostgreSQL cannot be started here" and exits (ctest shows it skipped), or fails when
// postgres_required().
bool stores_on_postgresql();
std::string store_database_url();

}  // namespace usher::testing
