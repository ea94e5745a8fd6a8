#include "usher/core/home.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "usher/core/log.h"

namespace usher {
namespace fs = std::filesystem;

namespace {
constexpr mode_t kGroupOther = S_IRWXG | S_IRWXO;

std::string octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

Error storage_error(const std::string& what, int err) { return make_error(Errc::storage, what + ": " + std::strerror(err)); }

void warn_tightened(const std::string& path, mode_t old_mode, mode_t new_mode) {
  Logger("home").warn(path, " was open to other users (mode ", octal(old_mode), "): made private (mode ", octal(new_mode), ")");
}

// Clears the group/other bits of an existing file or directory (`st` is its stat).
Status tighten(const std::string& path, const struct stat& st) {
  if ((st.st_mode & kGroupOther) == 0) return ok_status();
  const mode_t private_mode = st.st_mode & 07700;
  if (::chmod(path.c_str(), private_mode) != 0) return storage_error("cannot make " + path + " private (mode " + octal(st.st_mode) + ")", errno);
  warn_tightened(path, st.st_mode, private_mode);
  return ok_status();
}

// A file descriptor closed on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};
}  // namespace

Status make_private_directory(const std::string& dir) {
  if (dir.empty()) return make_error(Errc::storage, "no home directory given");
  fs::path path = fs::path(dir).lexically_normal();
  if (!path.has_filename() && path.has_parent_path()) path = path.parent_path();  // "home/" is "home"
  if (path.has_parent_path() && path.parent_path() != path) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) return make_error(Errc::storage, "cannot create " + path.parent_path().string() + ": " + ec.message());
  }
  // mkdir's mode can only lose bits to the umask, so the new directory is never looser than 0700;
  // fchmod below sets exactly 0700 in case the umask took some of the owner's.
  const bool made = ::mkdir(path.c_str(), S_IRWXU) == 0;
  if (!made && errno != EEXIST) return storage_error("cannot create " + dir, errno);
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOTDIR) return make_error(Errc::storage, dir + " is not a directory: a home must be a directory");
    return storage_error("cannot open " + dir, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return storage_error("cannot inspect " + dir, errno);
  if (made) {
    if ((st.st_mode & 07777) != S_IRWXU && ::fchmod(fd.get(), S_IRWXU) != 0) return storage_error("cannot set the mode of " + dir, errno);
    return ok_status();
  }
  return tighten(path.string(), st);
}

Status make_private_file(const std::string& path, bool create) {
  if (create) {
    const int raw = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
    if (raw >= 0) {
      // Ours alone (O_EXCL): nobody in this process can hold a lock on it that closing would drop.
      Fd fd(raw);
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0) return storage_error("cannot inspect " + path, errno);
      if ((st.st_mode & 07777) != (S_IRUSR | S_IWUSR) && ::fchmod(fd.get(), S_IRUSR | S_IWUSR) != 0) {
        return storage_error("cannot set the mode of " + path, errno);
      }
      return ok_status();
    }
    if (errno != EEXIST) return storage_error("cannot create " + path, errno);
  }
  // An existing file is inspected and tightened by its path, never opened: closing a descriptor
  // drops every POSIX lock this process holds on the file, including SQLite's for another
  // connection to the same database (the engine's store is opened twice in one process by billing).
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return make_error(Errc::not_found, "no " + path);
    return storage_error("cannot inspect " + path, errno);
  }
  if (!S_ISREG(st.st_mode)) return make_error(Errc::storage, path + " is not a regular file");
  USHER_CHECK(tighten(path, st));
  // SQLite gives the files it makes beside a database the database's mode; ones left by an older
  // version or copied in by hand are tightened the same way.
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    const std::string side = path + suffix;
    struct stat side_st {};
    if (::lstat(side.c_str(), &side_st) != 0 || !S_ISREG(side_st.st_mode)) continue;
    USHER_CHECK(tighten(side, side_st));
  }
  return ok_status();
}

Result<sql::Database> open_private_database(const std::string& home, const std::string& name, IfMissing missing) {
  const bool create = missing == IfMissing::create;
  const std::string path = (fs::path(home) / name).string();
  if (create) {
    USHER_CHECK(make_private_directory(home));
  }
  USHER_CHECK(make_private_file(path, create));
  // An existing store's directory is tightened too (it exists: the file is in it).
  if (!create) {
    USHER_CHECK(make_private_directory(home));
  }
  return sql::Database::open(path, create);
}

}  // namespace usher
