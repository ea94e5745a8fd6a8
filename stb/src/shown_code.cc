#include "usher/stb/shown_code.h"

#include <filesystem>
#include <fstream>

namespace usher::stb {

namespace fs = std::filesystem;

Status write_shown_code(const std::string& home, const char* name, const std::string& code) {
  const auto path = fs::path(home) / name;
  const auto temporary = fs::path(home) / (std::string(name) + ".new");
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << code << "\n";
    out.flush();
    if (!out) return Error{Errc::storage, "cannot write " + temporary.string()};
  }
  std::error_code ec;
  fs::permissions(temporary, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace, ec);
  if (!ec) fs::rename(temporary, path, ec);
  if (ec) return Error{Errc::storage, "cannot write " + path.string() + ": " + ec.message()};
  return ok_status();
}

}  // namespace usher::stb
