// usher demo: the broadcast path end to end on this machine, each step a real `usher` process.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli.h"
#include "media_probe.h"

extern char** environ;

namespace usher::cli {
namespace {
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usher demo: the scrambled broadcast path end to end

  usher demo [--dir DIR] [--seconds 10] [--crypto-period 2]
      Generates a stream, creates an operator with one service and two STBs (1001 entitled,
      1002 not), scrambles, runs both STBs and checks with ffprobe what a viewer would see.
      Files stay in DIR (default usher-data/demo, emptied first). Each step is printed as the
      command that runs it; their logs are in DIR/log.txt. The last line is a JSON summary.
)";

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "usher" : p.string();
}

// Runs `usher <args>` as a child process, its output appended to the log. Throws if it fails.
void step(const std::string& log_path, const std::vector<std::string>& args) {
  std::string shown = "$ usher";
  for (const auto& a : args) shown += " " + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
  std::printf("%s\n", shown.c_str());
  std::fflush(stdout);
  {
    std::ofstream log(log_path, std::ios::app);
    log << shown << "\n";
  }
  const std::string exe = self_exe();
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& s : all) cargv.push_back(s.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + exe);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("step failed: " + shown + " (see " + log_path + ")");
  }
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
  const Args a(argv, {});
  if (a.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const fs::path dir = fs::absolute(a.get("dir", "usher-data/demo"));
  const std::string seconds = std::to_string(a.number("seconds", 10));
  const std::string period = std::to_string(a.number("crypto-period", 2));
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const std::string log = (dir / "log.txt").string();
  const std::string ent = (dir / "entitlement").string();
  const std::string source = (dir / "source.ts").string();
  const std::string scrambled = (dir / "scrambled.ts").string();
  const std::string out1001 = (dir / "stb-1001.ts").string();
  const std::string out1002 = (dir / "stb-1002.ts").string();
  std::printf("usher demo in %s\n", dir.c_str());

  step(log, {"streams", "generate", "--out", source, "--seconds", seconds});
  step(log, {"entitlement", "init", "--home", ent});
  step(log, {"entitlement", "service", "add", "--home", ent, "--id", "1", "--name", "Usher Demo"});
  for (const char* id : {"1001", "1002"}) {
    const std::string home = (dir / (std::string("stb-") + id)).string();
    step(log, {"stb", "init", "--home", home, "--id", id, "--operator", ent + "/operator.pub"});
    step(log, {"entitlement", "device", "add", "--home", ent, "--stb-file", home + "/stb.pub"});
  }
  step(log, {"entitlement", "grant", "--home", ent, "--stb", "1001", "--service", "1", "--days", "30"});
  step(log, {"headend", "run", "--entitlement-home", ent, "--in", source, "--out", scrambled, "--crypto-period", period});
  step(log, {"stb", "run", "--home", (dir / "stb-1001").string(), "--in", scrambled, "--out", out1001});
  step(log, {"stb", "run", "--home", (dir / "stb-1002").string(), "--in", scrambled, "--out", out1002});

  struct Row {
    const char* name;
    std::string path;
    DecodeReport r;
  };
  std::vector<Row> rows{{"source", source, {}}, {"scrambled", scrambled, {}}, {"stb_1001_entitled", out1001, {}},
                        {"stb_1002_not_entitled", out1002, {}}};
  std::printf("\n%-24s %8s %14s  %s\n", "file", "frames", "decode errors", "path");
  for (auto& row : rows) {
    row.r = probe_decode(row.path);
    std::printf("%-24s %8ld %14ld  %s\n", row.name, row.r.frames, row.r.decode_errors, row.path.c_str());
  }
  const bool ok = rows[0].r.frames > 0 && rows[2].r.frames == rows[0].r.frames && rows[2].r.decode_errors == 0 &&
                  rows[1].r.frames < rows[0].r.frames && rows[3].r.frames < rows[0].r.frames;
  std::printf("\n%s\n", ok ? "outcome: the entitled STB decodes every frame; the scrambled stream and the other STB do not"
                           : "outcome: NOT as expected (see log.txt)");
  std::string json = "{\"dir\":\"" + json_escape(dir.string()) + "\"";
  for (const auto& row : rows) {
    json += ",\"" + std::string(row.name) + "\":{\"path\":\"" + json_escape(row.path) + "\",\"frames\":" +
            std::to_string(row.r.frames) + ",\"decode_errors\":" + std::to_string(row.r.decode_errors) + "}";
  }
  json += std::string(",\"ok\":") + (ok ? "true" : "false") + "}";
  std::printf("%s\n", json.c_str());
  return ok ? 0 : 1;
}

}  // namespace usher::cli
