#include "postgres_server.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "usher/core/postgres.h"
#include "usher/core/tcp.h"

namespace usher::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Who runs initdb and the server: this process's own user, or (when that is root, whom PostgreSQL
// refuses) an unprivileged one.
struct RunAs {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};

Result<RunAs> unprivileged_user() {
  RunAs who;
  if (geteuid() != 0) return who;
  for (const char* name : {"postgres", "nobody"}) {
    if (const passwd* pw = getpwnam(name); pw != nullptr && pw->pw_uid != 0) {
      who.switch_user = true;
      who.uid = pw->pw_uid;
      who.gid = pw->pw_gid;
      who.name = name;
      return who;
    }
  }
  return make_error(Errc::not_found, "running as root, and PostgreSQL refuses root: no unprivileged user "
                                     "(postgres or nobody) to run it as");
}

// The server binaries: $USHER_POSTGRES_BIN, else Debian's /usr/lib/postgresql/<version>/bin with
// the highest version that has both initdb and postgres.
Result<std::string> server_binaries() {
  auto usable = [](const fs::path& bin) {
    return access((bin / "initdb").c_str(), X_OK) == 0 && access((bin / "postgres").c_str(), X_OK) == 0;
  };
  if (const char* env = std::getenv("USHER_POSTGRES_BIN"); env != nullptr && *env != '\0') {
    if (usable(env)) return std::string(env);
    return make_error(Errc::not_found, std::string("USHER_POSTGRES_BIN=") + env + " holds no initdb and postgres");
  }
  std::optional<std::pair<std::vector<int>, fs::path>> best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    std::vector<int> version;
    std::istringstream parts(entry.path().filename().string());
    for (std::string part; std::getline(parts, part, '.');) {
      if (part.empty() || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        version.clear();
        break;
      }
      version.push_back(std::stoi(part));
    }
    if (version.empty() || !usable(entry.path() / "bin")) continue;
    if (!best || version > best->first) best.emplace(version, entry.path() / "bin");
  }
  if (!best) {
    return make_error(Errc::not_found, "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin: "
                                       "scripts/install-deps.sh installs Debian's postgresql package");
  }
  return best->second.string();
}

// The last lines of a log, on one line, for an error message.
std::string log_tail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > 1500) text = "..." + text.substr(text.size() - 1500);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text.empty() ? "(" + path + " is empty)" : text;
}

// Starts `argv` (argv[0] a full path) with stdout and stderr appended to `log`, stdin from
// /dev/null, a clean environment (C locale) and no other open file descriptor, as `who`. With
// `with_parent`, the child is sent SIGINT (PostgreSQL's fast shutdown) when this process dies.
Result<pid_t> spawn(const std::vector<std::string>& argv, const std::string& log, const RunAs& who, bool with_parent) {
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return make_error(Errc::io, "cannot write " + log);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    ::close(log_fd);
    return make_error(Errc::io, "cannot open /dev/null");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string locale = "LC_ALL=C";
  std::string path = "PATH=/usr/bin:/bin";
  std::vector<char*> env{locale.data(), path.data(), nullptr};
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid == 0) {
    // The child: only async-signal-safe calls from here to execve.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(126);
    close_range(3, ~0U, 0);
    if (who.switch_user && (setgroups(0, nullptr) != 0 || setgid(who.gid) != 0 || setuid(who.uid) != 0)) _exit(126);
    // After setuid: changing user clears the parent-death signal.
    if (with_parent && (prctl(PR_SET_PDEATHSIG, SIGINT) != 0 || getppid() != parent)) _exit(126);
    execve(args[0], args.data(), env.data());
    _exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) return make_error(Errc::io, "fork failed");
  return pid;
}

// Waits up to `timeout` for `pid` to exit: its wait status, or nothing while it still runs.
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return status;
    if (Clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Whether postmaster.pid says the postmaster `pid` is ready for connections (its 8th line, as
// pg_ctl reads it): no mistaking another server on the same port for ours.
bool postmaster_ready(const std::string& data, pid_t pid) {
  std::ifstream in(data + "/postmaster.pid");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.size() < 8 || lines[0] != std::to_string(pid)) return false;
  return lines[7].rfind("ready", 0) == 0;
}

std::string random_password() {
  std::random_device random;
  std::string out;
  for (int i = 0; i < 24; ++i) out += "0123456789abcdef"[random() % 16];
  return out;
}

// The superuser's password for initdb --pwfile, readable only by the server's user.
bool write_password(const std::string& path, const std::string& password, const RunAs& who) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const std::string line = password + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  const bool owned = !who.switch_user || fchown(fd, who.uid, who.gid) == 0;
  ::close(fd);
  return written && owned;
}

// The server's settings past its port and directories: the fast ones skip every disk sync.
std::vector<std::string> durability_settings(Durability durability) {
  if (durability == Durability::durable) return {"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"};
  return {"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB"};
}

}  // namespace

bool postgres_required() {
  const char* env = std::getenv("USHER_REQUIRE_POSTGRES");
  return env != nullptr && std::string(env) == "1";
}

Result<std::unique_ptr<PostgresServer>> PostgresServer::start(Durability durability) {
  USHER_TRY(auto bin, server_binaries());
  USHER_TRY(auto who, unprivileged_user());

  std::unique_ptr<PostgresServer> server(new PostgresServer());
  server->durability_ = durability;
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/usher-pg-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return make_error(Errc::io, "cannot make a directory like " + templ);
  server->directory_ = templ;
  const std::string data = templ + "/data";
  const std::string log = templ + "/server.log";
  if (who.switch_user && chown(templ.c_str(), who.uid, who.gid) != 0) {
    return make_error(Errc::io, "cannot give " + templ + " to user " + who.name);
  }

  // initdb: the superuser `usher` with a password for TCP (scram-sha-256), trust on the socket,
  // which only the server's user can reach. --no-sync for the fast server: a throwaway cluster
  // needs no disk syncs.
  server->password_ = random_password();
  const std::string password_file = templ + "/password";
  if (!write_password(password_file, server->password_, who)) return make_error(Errc::io, "cannot write " + password_file);
  std::vector<std::string> initdb_argv{bin + "/initdb", "-D", data, "-U", "usher", "--pwfile=" + password_file,
                                       "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"};
  if (durability == Durability::fast) initdb_argv.emplace_back("--no-sync");
  USHER_TRY(auto initdb, spawn(initdb_argv, templ + "/initdb.log", who, false));
  const int initdb_status = wait_exit(initdb, std::chrono::hours(1)).value_or(-1);
  ::unlink(password_file.c_str());
  if (!WIFEXITED(initdb_status) || WEXITSTATUS(initdb_status) != 0) {
    return make_error(Errc::io, "initdb failed (" + describe_exit(initdb_status) + "): " + log_tail(templ + "/initdb.log"));
  }

  // The server, on a port the kernel just gave out as free; another process may take it first, in
  // which case the server cannot bind and exits, and the next port is tried.
  for (int attempt = 1;; ++attempt) {
    {
      USHER_TRY(auto probe, net::TcpListener::bind("127.0.0.1", 0));
      server->port_ = probe.port();
    }
    std::vector<std::string> server_argv{bin + "/postgres", "-D", data, "-p", std::to_string(server->port_), "-c",
                                         "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + templ, "-c",
                                         "max_connections=60", "-c", "lc_messages=C"};
    for (auto& setting : durability_settings(durability)) server_argv.push_back(std::move(setting));
    USHER_TRY(auto pid, spawn(server_argv, log, who, true));
    server->pid_ = pid;
    const auto until = Clock::now() + std::chrono::seconds(60);
    bool ready = false;
    std::optional<int> exited;
    while (!ready && !exited && Clock::now() < until) {
      exited = wait_exit(server->pid_, std::chrono::milliseconds(0));
      ready = !exited && postmaster_ready(data, server->pid_);
      if (!ready && !exited) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ready) break;
    if (!exited) {
      (void)server->stop();
      return make_error(Errc::io, "PostgreSQL did not get ready within 60 s: " + log_tail(log));
    }
    server->pid_ = 0;
    const std::string tail = log_tail(log);
    const bool port_taken = tail.find("could not bind") != std::string::npos || tail.find("already in use") != std::string::npos;
    if (!port_taken || attempt == 5) {
      return make_error(Errc::io, "PostgreSQL exited at start (" + describe_exit(*exited) + "): " + tail);
    }
  }

  USHER_TRY(auto admin, pg::Connection::open(server->url("postgres")));
  USHER_CHECK(admin.run_outside_transaction("create the test database", "CREATE DATABASE usher"));
  return server;
}

Result<PostgresServer*> PostgresServer::shared() {
  static Result<std::unique_ptr<PostgresServer>> server = start();
  if (!server) return server.error();
  return server->get();
}

PostgresServer::~PostgresServer() {
  (void)stop();
  std::error_code ec;
  if (!directory_.empty()) fs::remove_all(directory_, ec);
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://usher:" + password_ + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

Result<std::string> PostgresServer::create_database() {
  const std::string name = "test_" + std::to_string(++databases_);
  USHER_TRY(auto admin, pg::Connection::open(url("postgres")));
  USHER_CHECK(admin.run_outside_transaction("create a test database", "CREATE DATABASE " + name));
  return url(name);
}

Status PostgresServer::stop() {
  if (pid_ == 0) return ok_status();
  const pid_t pid = std::exchange(pid_, 0);
  // SIGINT is the fast shutdown (pg_ctl stop -m fast): clients cut off, a clean exit.
  ::kill(pid, SIGINT);
  if (wait_exit(pid, std::chrono::seconds(30))) return ok_status();
  ::kill(pid, SIGQUIT);
  if (wait_exit(pid, std::chrono::seconds(5))) return make_error(Errc::io, "PostgreSQL needed an immediate shutdown");
  ::kill(pid, SIGKILL);
  (void)wait_exit(pid, std::chrono::hours(1));
  return make_error(Errc::io, "PostgreSQL had to be killed");
}

}  // namespace usher::testing

namespace usher::testing {

bool stores_on_postgresql() {
  const char* env = std::getenv("USHER_TEST_BACKEND");
  return env != nullptr && std::string(env) == "postgresql";
}

std::string store_database_url() {
  if (!stores_on_postgresql()) return "";
  auto server = PostgresServer::shared();
  if (!server) {
    std::fprintf(stderr, "PostgreSQL cannot be started here: %s\n", server.error().message.c_str());
    std::fflush(stderr);
    std::_Exit(postgres_required() ? 1 : 0);
  }
  auto url = (*server)->create_database();
  if (!url) {
    std::fprintf(stderr, "cannot make a test database: %s\n", url.error().message.c_str());
    std::_Exit(1);
  }
  return *url;
}

}  // namespace usher::testing
