#include "media_probe.h"

#include <array>
#include <cstdio>
#include <memory>
#include <string>

namespace usher::cli {
namespace {

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

std::string run(const std::string& command) {
  struct Close {
    void operator()(FILE* f) const { pclose(f); }
  };
  std::unique_ptr<FILE, Close> pipe(popen(command.c_str(), "r"));
  if (!pipe) return {};
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe.get()) != nullptr) out += buf.data();
  return out;
}

}  // namespace

DecodeReport probe_decode(const std::string& path) {
  DecodeReport r;
  const std::string frames = run("ffprobe -v quiet -select_streams v:0 -count_frames -show_entries stream=nb_read_frames "
                                 "-of csv=p=0 " + quote(path) + " 2>/dev/null");
  try {
    r.frames = std::stol(frames);
  } catch (const std::exception&) {
    r.frames = 0;
  }
  const std::string errors = run("ffmpeg -nostdin -v error -i " + quote(path) + " -map 0:v? -f null - 2>&1");
  for (char c : errors) r.decode_errors += c == '\n' ? 1 : 0;
  return r;
}

}  // namespace usher::cli
