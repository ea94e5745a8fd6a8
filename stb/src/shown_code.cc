#include "usher/stb/shown_code.h"

#include <filesystem>
#include <fstream>

#include "usher/core/home.h"

namespace usher::stb {

namespace fs = std::filesystem;

Status write_shown_code(const std::string& home, const char* name, const std::string& code) {
  const auto path = fs::path(home) / name;
  const auto temporary = fs::path(home) / (std::string(name) + ".new");
  // Made 0600 before the code is written, so that no other user can read it in between.
  USHER_CHECK(make_private_file(temporary.string(), true));
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << code << "\n";
    out.flush();
    if (!out) return Error{Errc::storage, "cannot write " + temporary.string()};
  }
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) return Error{Errc::storage, "cannot write " + path.string() + ": " + ec.message()};
  return ok_status();
}

}  // namespace usher::stb
