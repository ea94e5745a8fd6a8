// A process that starts a PostgresServer, prints "<its own pid> <postmaster pid> <url> <directory>"
// on one line and then waits for a signal: for the tests that a server does not outlive the process
// that started it, however that process ends (Ctrl-C, kill -9). On failure it prints "error <why>".
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "postgres_server.h"

int main() {
  // Ctrl-C's default action, even when started from a shell that ignores SIGINT for background jobs.
  signal(SIGINT, SIG_DFL);
  auto server = usher::testing::PostgresServer::start();
  if (!server) {
    std::printf("error %s\n", server.error().message.c_str());
    return 2;
  }
  std::printf("%d %d %s %s\n", static_cast<int>(getpid()), static_cast<int>((*server)->pid()), (*server)->url().c_str(),
              (*server)->directory().c_str());
  std::fflush(stdout);
  for (;;) pause();
}
