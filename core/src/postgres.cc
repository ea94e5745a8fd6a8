#include "usher/core/postgres.h"

#include <libpq-fe.h>

#include <algorithm>
#include <random>
#include <thread>

namespace usher::pg {
namespace {

// libpq's messages span lines ("...failed: FATAL:  password authentication failed\n\tIs the
// server..."): one line, single spaces, for our messages and logs.
std::string one_line(std::string_view text) {
  std::string out;
  bool space = false;
  for (const char c : text) {
    if (c == '\n' || c == '\t' || c == ' ' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// A value in a libpq connection string: quoted, with quotes and backslashes escaped.
std::string quoted(std::string_view value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// The URL as it may be shown: a password in its user part or its query replaced by ***.
std::string without_password(std::string url) {
  const auto query_password = url.find("password=", url.find('?') == std::string::npos ? url.size() : url.find('?'));
  if (query_password != std::string::npos) {
    const auto from = query_password + std::string_view("password=").size();
    url.replace(from, url.find('&', from) == std::string::npos ? std::string::npos : url.find('&', from) - from, "***");
  }
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const auto authority_end = url.find_first_of("/?", scheme_end + 3);
  const auto at = url.rfind('@', authority_end);
  if (at == std::string::npos || at < scheme_end + 3) return url;
  const auto colon = url.find(':', scheme_end + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + ":***" + url.substr(at);
}

// Why a connection attempt failed, from libpq's message: libpq gives no code for these, only text
// (in English when the server's lc_messages is; the message is kept whole in any case).
Errc connect_failure_code(std::string_view message) {
  if (contains(message, "password authentication failed") || contains(message, "no pg_hba.conf entry") ||
      contains(message, "authentication failed") || (contains(message, "role \"") && contains(message, "does not exist")) ||
      contains(message, "password is required") || contains(message, "no password supplied")) {
    return Errc::auth_failed;
  }
  if (contains(message, "database \"") && contains(message, "does not exist")) return Errc::not_found;
  if (contains(message, "too many clients") || contains(message, "remaining connection slots")) return Errc::busy;
  return Errc::io;
}

// The code for an SQL error by its SQLSTATE class (the first two characters).
Errc sql_error_code(const std::string& sqlstate) {
  const std::string cls = sqlstate.substr(0, 2);
  if (sqlstate == "23505") return Errc::already_exists;
  if (cls == "08" || cls == "57") return Errc::io;  // connection exception; operator intervention (shutdown)
  if (cls == "28") return Errc::auth_failed;         // invalid authorization
  if (sqlstate == "3D000") return Errc::not_found;   // no such database
  if (cls == "40") return Errc::busy;                // transaction rollback (conflict), when not retried
  if (sqlstate == "53300") return Errc::busy;        // too many connections
  return Errc::storage;
}

void back_off(const RetryPolicy& policy, int attempt) {
  thread_local std::minstd_rand random{std::random_device{}()};
  const auto shift = std::min(attempt - 1, 20);
  const auto ceiling = std::min<std::int64_t>(policy.max_backoff.count(), policy.first_backoff.count() << shift);
  if (ceiling <= 0) return;
  std::uniform_int_distribution<std::int64_t> pick(0, ceiling * 1000);
  std::this_thread::sleep_for(std::chrono::microseconds(pick(random)));
}

}  // namespace

std::string Endpoint::to_string() const {
  std::string out = "postgresql://";
  if (!user.empty()) out += user + "@";
  out += host;
  if (!port.empty()) out += ":" + port;
  out += "/" + database;
  return out;
}

Result<ConnectionSettings> parse_url(const std::string& url) {
  if (url.rfind("postgresql://", 0) != 0 && url.rfind("postgres://", 0) != 0) {
    // Not quoted: a libpq keyword string ("host=... password=...") would show its password.
    const auto scheme = url.find("://");
    return make_error(Errc::invalid_argument,
                      "not a postgresql:// URL" + (scheme == std::string::npos ? std::string() : " (it starts " + url.substr(0, scheme + 3) + ")") +
                          ": expected postgresql://user:password@host:port/database");
  }
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    std::string reason = parse_error != nullptr ? one_line(parse_error) : "out of memory";
    PQfreemem(parse_error);
    // libpq quotes the whole URL, password and all.
    const std::string shown = without_password(url);
    for (auto at = reason.find(url); at != std::string::npos; at = reason.find(url, at + shown.size())) {
      reason.replace(at, url.size(), shown);
    }
    return make_error(Errc::invalid_argument, "bad PostgreSQL URL '" + without_password(url) + "': " + reason);
  }
  ConnectionSettings settings;
  bool has_timeout = false;
  bool has_application = false;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string keyword = o->keyword;
    const std::string value = o->val;
    if (keyword == "user") settings.endpoint.user = value;
    if (keyword == "host" || (keyword == "hostaddr" && settings.endpoint.host.empty())) settings.endpoint.host = value;
    if (keyword == "port") settings.endpoint.port = value;
    if (keyword == "dbname") settings.endpoint.database = value;
    has_timeout = has_timeout || keyword == "connect_timeout";
    has_application = has_application || keyword == "application_name";
    settings.conninfo += keyword + "=" + quoted(value) + " ";
  }
  PQconninfoFree(options);
  if (!has_timeout) settings.conninfo += "connect_timeout='10' ";
  if (!has_application) settings.conninfo += "application_name='usher' ";
  return settings;
}

Error error_from_current_exception(std::string_view what, const Endpoint& where) {
  const std::string prefix = std::string(what) + ": PostgreSQL at " + where.to_string() + ": ";
  try {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    return make_error(Errc::io, prefix + "the connection was lost during COMMIT, so whether the transaction took effect is unknown: " +
                                    one_line(e.what()));
  } catch (const pqxx::broken_connection& e) {
    return make_error(connect_failure_code(e.what()), prefix + one_line(e.what()));
  } catch (const pqxx::sql_error& e) {
    const Errc code = sql_error_code(e.sqlstate());
    return make_error(code, prefix + one_line(e.what()) + " [SQLSTATE " + e.sqlstate() + "]");
  } catch (const std::exception& e) {
    return make_error(Errc::storage, prefix + one_line(e.what()));
  } catch (...) {
    return make_error(Errc::storage, prefix + "unknown exception");
  }
}

Result<Connection> Connection::open(const std::string& url, RetryPolicy policy) {
  USHER_TRY(auto settings, parse_url(url));
  try {
    auto connection = std::make_unique<pqxx::connection>(settings.conninfo);
    return Connection(std::move(connection), std::move(settings.endpoint), policy);
  } catch (...) {
    return error_from_current_exception("cannot connect", settings.endpoint);
  }
}

Status Connection::run_serializable(std::string_view what, const std::function<Status(pqxx::transaction_base&)>& body) {
  const int max_attempts = std::max(1, policy_.max_attempts);
  for (int attempt = 1;; ++attempt) {
    last_attempts_ = attempt;
    std::string conflict;
    try {
      pqxx::transaction<pqxx::isolation_level::serializable> tx(*connection_);
      Status status = body(tx);
      if (!status) {
        tx.abort();
        return status;
      }
      tx.commit();
      return status;
    } catch (const pqxx::serialization_failure& e) {
      conflict = one_line(e.what());
    } catch (const pqxx::deadlock_detected& e) {
      conflict = one_line(e.what());
    } catch (...) {
      return error_from_current_exception(what, endpoint_);
    }
    if (attempt >= max_attempts) {
      return make_error(Errc::busy, std::string(what) + ": PostgreSQL at " + endpoint_.to_string() + ": gave up after " +
                                        std::to_string(attempt) + " attempt(s), each lost to a concurrent transaction: " + conflict);
    }
    back_off(policy_, attempt);
  }
}

Status Connection::run_outside_transaction(std::string_view what, const std::string& sql) {
  try {
    pqxx::nontransaction tx(*connection_);
    tx.exec(sql);
    return ok_status();
  } catch (...) {
    return error_from_current_exception(what, endpoint_);
  }
}

}  // namespace usher::pg
