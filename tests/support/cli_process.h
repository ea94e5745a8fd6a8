// Running the real `usher` binary from end-to-end tests: one-shot commands with their output, and
// background services that can be stopped politely (SIGTERM) or killed (SIGKILL) and started again.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "usher/core/tcp.h"

namespace usher::testing {

struct Run {
  int status = -1;
  std::string output;
};

// Runs a shell command; its exit status and what it wrote on stdout and stderr.
inline Run run(const std::string& command) {
  Run r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) r.output += buf.data();
  const int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline std::string usher(const std::string& args) { return std::string(USHER_BINARY) + " " + args; }

// How many video frames ffprobe decodes in a file (0 when it decodes none or cannot read it).
inline long frames(const std::string& path) {
  auto r = run("ffprobe -v quiet -select_streams v:0 -count_frames -show_entries stream=nb_read_frames -of csv=p=0 " + path);
  try {
    return std::stol(r.output);
  } catch (...) {
    return 0;
  }
}

// The pairing code an STB's running `usher stb link` shows (written to pairing-code in its home
// before it binds: read it once the link listens).
inline std::string pairing_code(const std::string& stb_home) {
  FILE* f = std::fopen((stb_home + "/pairing-code").c_str(), "r");
  if (f == nullptr) return "";
  std::array<char, 32> buf{};
  const bool read = std::fgets(buf.data(), buf.size(), f) != nullptr;
  std::fclose(f);
  std::string code = read ? buf.data() : "";
  while (!code.empty() && (code.back() == '\n' || code.back() == '\r')) code.pop_back();
  return code;
}

// `n` different loopback TCP ports free right now (the kernel's picks), for services the test is
// about to start.
inline std::vector<std::uint16_t> free_ports(std::size_t n) {
  std::vector<net::TcpListener> held;
  std::vector<std::uint16_t> ports;
  while (ports.size() < n) {
    auto l = net::TcpListener::bind("127.0.0.1", 0);
    if (!l) break;
    ports.push_back(l->port());
    held.push_back(std::move(l.value()));
  }
  return ports;
}

// Waits until something listens on `port` (a service started in the background is ready).
inline bool wait_listening(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (net::TcpStream::connect("127.0.0.1", port, std::chrono::milliseconds(200))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

class Background {
 public:
  explicit Background(std::string command) : command_(std::move(command)) { start(); }
  ~Background() { stop(SIGTERM); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  void start() {
    // Built before fork: the child of a process with threads (link servers, say) may only make
    // async-signal-safe calls until exec; allocating there can wait forever on a lock another
    // thread held at the fork (it did, under ASan, with a hundred link threads).
    const std::string shell_command = "exec " + command_;
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", shell_command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  // Stops it with `sig` and waits for it; returns its wait status.
  int stop(int sig) {
    int st = 0;
    if (pid_ > 0) {
      kill(pid_, sig);
      waitpid(pid_, &st, 0);
    }
    pid_ = -1;
    return st;
  }
  // Waits for it to end by itself; its exit code (-1 when killed).
  int wait() {
    if (pid_ <= 0) return exit_;
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    exit_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return exit_;
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // True while it runs (reaps it when it has ended; wait() then returns -1).
  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == 0) return true;
    exit_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    pid_ = -1;
    return false;
  }

 private:
  std::string command_;
  pid_t pid_ = -1;
  int exit_ = -1;
};

}  // namespace usher::testing
