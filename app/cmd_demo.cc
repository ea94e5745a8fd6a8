// usher demo: the broadcast path end to end on this machine, each step a real `usher` process.
#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.h"
#include "media_probe.h"

extern char** environ;

namespace usher::cli {
namespace {
namespace fs = std::filesystem;

constexpr const char* kDescription =
    "Everything end to end on this machine with a generated stream, each step a real `usher` process.\n"
    "Act 1, subscription: generates a stream, creates an operator with one service and two STBs (1001 subscribed, 1002 not), "
    "scrambles, runs both STBs and checks with ffprobe what a viewer would see.\n"
    "Act 2, pay-per-view: a PPV event on the service; the engine runs as a ZeroMQ service; a viewer's handset tops up its "
    "prepaid card, buys the event for STB 1002 and hands the ticket over the STB's local link; the headend takes its keys and "
    "schedule from the engine; during the event STB 1002 watches and STB 1001 (a subscriber without a ticket) does not.\n"
    "Act 3, impulse purchase settled through the handset: STB 1001 has a credit line (by EMM); the viewer buys with the remote "
    "until it is used up; the handset relays the STB's history to the billing service, pays with its prepaid card and brings the "
    "receipt back, which frees the credit; billing's statement for the STB.\n"
    "Act 4, hotel: STB 1003 is room 102's; a guest checks in, buys a film on the room (the STB reports it to billing), checks "
    "out: a folio statement, and the room STB is cleared.\n"
    "Files stay in DIR (emptied first). Each step is printed as the command that runs it; their logs are in DIR/log.txt. The "
    "last line is a JSON summary.";

struct DemoOptions {
  std::string dir = "usher-data/demo";
  int seconds = 10;
  std::uint64_t crypto_period_s = 2;
};

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "usher" : p.string();
}

struct StepResult {
  bool ok = false;
  std::string output;
};

// Runs `usher <args>` as a child process; its output goes to the log (and, with `show`, to the
// screen, indented). Throws if it fails, unless `may_fail` (a refusal the demo means to show).
StepResult step(const std::string& log_path, const std::vector<std::string>& args, bool show = false, bool may_fail = false) {
  std::string shown = "$ usher";
  for (const auto& a : args) shown += " " + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
  std::printf("%s\n", shown.c_str());
  std::fflush(stdout);
  const std::string out_path = log_path + ".step";
  const std::string exe = self_exe();
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& s : all) cargv.push_back(s.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_TRUNC | O_CREAT, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + exe);
  int status = 0;
  waitpid(pid, &status, 0);
  StepResult r;
  r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  {
    std::ifstream in(out_path);
    std::stringstream text;
    text << in.rdbuf();
    r.output = text.str();
  }
  std::ofstream(log_path, std::ios::app) << shown << "\n" << r.output;
  if (show) {
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) std::printf("    %s\n", line.c_str());
  }
  if (!r.ok && !may_fail) throw std::runtime_error("step failed: " + shown + " (see " + log_path + ")");
  return r;
}

// A service started for the demo's second act, stopped (SIGTERM) when the demo ends.
class Background {
 public:
  Background(const std::string& log_path, const std::vector<std::string>& args) {
    std::string shown = "$ usher";
    for (const auto& a : args) shown += " " + a;
    std::printf("%s &\n", shown.c_str());
    std::fflush(stdout);
    const std::string exe = self_exe();
    std::vector<std::string> all{exe};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& x : all) cargv.push_back(x.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (posix_spawn(&pid_, exe.c_str(), &actions, nullptr, cargv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    if (pid_ < 0) throw std::runtime_error("cannot start " + shown);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

 private:
  pid_t pid_ = -1;
};

// The pairing code a just-started `stb link` shows (it writes it to pairing-code in its home as it
// starts); waits up to 10 s for it.
std::string pairing_code_of(const std::string& stb_home) {
  const auto path = fs::path(stb_home) / "pairing-code";
  for (int i = 0; i < 200; ++i) {
    std::ifstream in(path);
    std::string code;
    if (in >> code && !code.empty()) return code;
    usleep(50 * 1000);
  }
  throw std::runtime_error("the STB at " + stb_home + " shows no pairing code");
}

int demo(const DemoOptions& a) {
  const fs::path dir = fs::absolute(a.dir);
  const std::string seconds = std::to_string(a.seconds);
  const std::string period = std::to_string(a.crypto_period_s);
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
  step(log, {"stb", "run", "--home", (dir / "stb-1002").string(), "--in", scrambled, "--out", out1002}, false, true);

  // Act 2: pay-per-view bought on a handset, through the running engine.
  const std::uint64_t event_start = unix_now() + 600;
  const std::string ppv_scrambled = (dir / "ppv-scrambled.ts").string();
  const std::string ppv1001 = (dir / "ppv-stb-1001.ts").string();
  const std::string ppv1002 = (dir / "ppv-stb-1002.ts").string();
  const std::string engine = "ipc://" + (dir / "engine.sock").string();
  const std::string link1002 = "ipc://" + (dir / "stb-1002-link.sock").string();
  const std::string headend_home = (dir / "headend").string();
  const std::string wallet_home = (dir / "wallet-alice").string();
  const std::string room_stb = (dir / "stb-1003").string();
  std::printf("\n-- pay-per-view --\n");
  step(log, {"entitlement", "event", "add", "--home", ent, "--id", "7", "--service", "1", "--start",
             std::to_string(event_start), "--duration", "2h", "--title", "Usher Cup Final", "--price", "12.50",
             "--currency", "EUR"});
  // For acts 3 and 4: a credit line for STB 1001, a room STB 1003 (offers only: its guest's credit
  // comes with the stay), and a second event; the EMMs go out with the act 2 broadcast.
  step(log, {"stb", "init", "--home", room_stb, "--id", "1003", "--operator", ent + "/operator.pub"});
  step(log, {"entitlement", "device", "add", "--home", ent, "--stb-file", room_stb + "/stb.pub"});
  step(log, {"entitlement", "credit", "--home", ent, "--stb", "1001", "--limit", "20.00", "--currency", "EUR"});
  step(log, {"entitlement", "credit", "--home", ent, "--stb", "1003", "--limit", "0", "--currency", "EUR"});
  step(log, {"entitlement", "event", "add", "--home", ent, "--id", "8", "--service", "1", "--start",
             std::to_string(event_start + 3 * 3600), "--duration", "2h", "--title", "Usher Cup Replay", "--price", "9.90",
             "--currency", "EUR"});
  step(log, {"headend", "init", "--home", headend_home, "--id", "1", "--operator", ent + "/operator.pub"});
  step(log, {"entitlement", "headend", "add", "--home", ent, "--file", headend_home + "/headend.pub"});
  {
    Background serve(log, {"entitlement", "serve", "--home", ent, "--bind", engine});
    Background link(log, {"stb", "link", "--home", (dir / "stb-1002").string(), "--bind", link1002});
    step(log, {"wallet", "init", "--home", wallet_home, "--account", "alice", "--currency", "EUR", "--engine", engine,
               "--operator", ent + "/operator.pub"});
    step(log, {"wallet", "topup", "--home", wallet_home, "--amount", "20.00"});
    step(log, {"wallet", "buy", "--home", wallet_home, "--event", "7", "--stb", "1002", "--link", link1002});
    step(log, {"headend", "run", "--engine", engine, "--home", headend_home, "--in", source, "--out", ppv_scrambled,
               "--crypto-period", period, "--start-time", std::to_string(event_start + 60)});
  }
  step(log, {"stb", "run", "--home", (dir / "stb-1002").string(), "--in", ppv_scrambled, "--out", ppv1002});
  step(log, {"stb", "run", "--home", (dir / "stb-1001").string(), "--in", ppv_scrambled, "--out", ppv1001}, false, true);
  step(log, {"stb", "run", "--home", room_stb, "--in", ppv_scrambled, "--out", (dir / "ppv-stb-1003.ts").string()}, false, true);

  // Act 3: impulse purchases on STB 1001's credit, settled through the handset (F4).
  std::printf("\n-- impulse purchase, settled through the handset --\n");
  const std::string billing_home = (dir / "billing").string();
  const std::string billing = "ipc://" + (dir / "billing.sock").string();
  const std::string link1001 = "ipc://" + (dir / "stb-1001-link.sock").string();
  const std::string link1003 = "ipc://" + (dir / "stb-1003-link.sock").string();
  const std::string stb1001 = (dir / "stb-1001").string();
  bool settlement_ok = false;
  bool hotel_ok = false;
  // Billing's keys go to the operator as billing.pub and come back certified: no home is shared.
  const std::string billing_cert = (dir / "billing-1.cert").string();
  step(log, {"billing", "init", "--home", billing_home, "--operator", ent + "/operator.pub", "--engine", engine});
  step(log, {"entitlement", "billing", "add", "--home", ent, "--public-file", billing_home + "/billing.pub", "--out", billing_cert});
  step(log, {"billing", "certify", "--home", billing_home, "--certificate", billing_cert});
  {
    Background serve(log, {"entitlement", "serve", "--home", ent, "--bind", engine});
    Background bill(log, {"billing", "serve", "--home", billing_home, "--bind", billing});
    Background link(log, {"stb", "link", "--home", stb1001, "--bind", link1001});
    Background room_link(log, {"stb", "link", "--home", room_stb, "--bind", link1003});
    step(log, {"stb", "buy", "7", "--home", stb1001}, true);
    const auto refused = step(log, {"stb", "buy", "8", "--home", stb1001}, true, true);
    step(log, {"wallet", "topup", "--home", wallet_home, "--amount", "30.00"});
    step(log, {"wallet", "pair", "--home", wallet_home, "--link", link1001, "--code", pairing_code_of(stb1001)});
    const auto relayed = step(log, {"wallet", "relay", "--home", wallet_home, "--stb", "1001", "--link", link1001, "--billing", billing}, true);
    const auto bought = step(log, {"stb", "buy", "8", "--home", stb1001}, true, true);
    step(log, {"stb", "history", "--home", stb1001}, true);
    step(log, {"billing", "statement", "--home", billing_home, "--stb", "1001"}, true);
    settlement_ok = !refused.ok && relayed.output.find("1 purchase settled, paid 12.50 EUR") != std::string::npos && bought.ok;

    // Act 4: a hotel room (F6).
    std::printf("\n-- hotel --\n");
    step(log, {"billing", "hotel", "config", "--home", billing_home, "--credit", "50.00", "--currency", "EUR"});
    step(log, {"billing", "hotel", "room", "add", "--home", billing_home, "--room", "102", "--stb", "1003", "--link", link1003});
    const auto vacant = step(log, {"stb", "buy", "7", "--home", room_stb}, true, true);
    step(log, {"billing", "hotel", "checkin", "--home", billing_home, "--room", "102", "--guest-id", "12345", "--name",
               "Koehler, Andreas", "--report-to", billing},
         true);
    step(log, {"stb", "buy", "7", "--home", room_stb}, true);
    const auto out = step(log, {"billing", "hotel", "checkout", "--home", billing_home, "--room", "102"}, true);
    const auto after = step(log, {"stb", "history", "--home", room_stb}, true);
    hotel_ok = !vacant.ok && out.output.find("12.50 EUR") != std::string::npos && out.output.find("room STB cleared") != std::string::npos &&
               after.output.find("vacant") != std::string::npos;
  }

  struct Row {
    const char* name;
    std::string path;
    DecodeReport r;
  };
  std::vector<Row> rows{{"source", source, {}},
                        {"scrambled", scrambled, {}},
                        {"stb_1001_entitled", out1001, {}},
                        {"stb_1002_not_entitled", out1002, {}},
                        {"ppv_scrambled", ppv_scrambled, {}},
                        {"ppv_stb_1002_with_ticket", ppv1002, {}},
                        {"ppv_stb_1001_without_ticket", ppv1001, {}}};
  std::printf("\n%-28s %8s %14s  %s\n", "file", "frames", "decode errors", "path");
  for (auto& row : rows) {
    row.r = probe_decode(row.path);
    std::printf("%-28s %8ld %14ld  %s\n", row.name, row.r.frames, row.r.decode_errors, row.path.c_str());
  }
  const long all = rows[0].r.frames;
  const bool subscription_ok = all > 0 && rows[2].r.frames == all && rows[2].r.decode_errors == 0 && rows[1].r.frames < all &&
                               rows[3].r.frames < all;
  const bool ppv_ok = rows[5].r.frames == all && rows[5].r.decode_errors == 0 && rows[4].r.frames < all && rows[6].r.frames < all;
  const bool ok = subscription_ok && ppv_ok && settlement_ok && hotel_ok;
  std::printf("\n%s\n%s\n%s\n%s\n",
              subscription_ok ? "subscription: the subscribed STB decodes every frame; the scrambled stream and the other STB do not"
                              : "subscription: NOT as expected (see log.txt)",
              ppv_ok ? "pay-per-view: the STB with the ticket bought on the handset decodes every frame; the one without does not"
                     : "pay-per-view: NOT as expected (see log.txt)",
              settlement_ok ? "impulse purchase: refused beyond the credit line, settled once through the handset, credit freed"
                            : "impulse purchase: NOT as expected (see log.txt)",
              hotel_ok ? "hotel: vacant room refused, the guest's purchase on the folio, room cleared at check-out"
                       : "hotel: NOT as expected (see log.txt)");
  nlohmann::ordered_json summary{{"dir", dir.string()}};
  for (const auto& row : rows) {
    summary[row.name] = {{"path", row.path}, {"frames", row.r.frames}, {"decode_errors", row.r.decode_errors}};
  }
  summary["impulse_settled"] = settlement_ok;
  summary["hotel_folio"] = hotel_ok;
  summary["ok"] = ok;
  print_json_line(stdout, summary);
  return ok ? 0 : 1;
}

}  // namespace

void add_demo(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<DemoOptions>();
  auto* demo_cmd = root.add_subcommand("demo", "everything end to end on this machine with a generated stream");
  demo_cmd->footer(kDescription);
  demo_cmd->add_option("--dir", o->dir, "where its files go")->type_name("DIR")->capture_default_str();
  add_integer(*demo_cmd, "--seconds", o->seconds, "length of the generated stream (default 10)", 1, 3600);
  add_duration(*demo_cmd, "--crypto-period", o->crypto_period_s, "control word lifetime (default 2)");
  commands.on(demo_cmd, [o] {
    if (o->crypto_period_s == 0 || o->crypto_period_s > 3600) throw UsageError("--crypto-period must be from 1 s to 1 h");
    return demo(*o);
  });
}

}  // namespace usher::cli
