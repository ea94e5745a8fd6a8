// Every `usher` command through the real binary: typos, out-of-range numbers and bad formats are
// refused with exit code 2, a message that names the problem (and the option meant), and nothing
// changed on disk; the spellings that work keep working; --help and --version from the same
// definitions as the parser. Issue 8's reproduced failures each have a row.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli_process.h"
#include "temp_dir.h"

namespace usher {
namespace {

using testing::run;
namespace fs = std::filesystem;

// Every file under `root` with its contents: two snapshots differ if anything was created,
// removed or written.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_directory()) {
      files[entry.path().string() + "/"] = "";
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    files[entry.path().string()] = bytes.str();
  }
  return files;
}

// An operator with services 1 and 4465 and STB 1001, made through the CLI in a fresh directory;
// commands run with that directory as the working directory, so a default home would land there.
class CliCommands : public ::testing::Test {
 public:
  void SetUp() override {
    must("entitlement init --home ent");
    must("entitlement service add --home ent --id 1 --name News");
    must("entitlement service add --home ent --id 4465 --name Films");
    must("stb init --home stb --id 1001 --operator ent/operator.pub");
    must("entitlement device add --home ent --stb-file stb/stb.pub");
  }

  testing::Run in_dir(const std::string& args) {
    return run("cd " + dir.path() + " && " + testing::usher(args) + " </dev/null");
  }
  std::string must(const std::string& args) {
    auto r = in_dir(args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.output;
    return r.output;
  }

  testing::TempDir dir;
};

struct Refused {
  const char* args;
  const char* says;  // a part of the message
  int status = 2;
};

// Runs each row; each must fail with its status and message and leave every file as it was.
void expect_refused(CliCommands& t, const testing::TempDir& dir, const std::vector<Refused>& rows) {
  for (const auto& row : rows) {
    const auto before = snapshot(dir.path());
    const auto r = t.in_dir(row.args);
    EXPECT_EQ(r.status, row.status) << "usher " << row.args << "\n" << r.output;
    EXPECT_NE(r.output.find(row.says), std::string::npos) << "usher " << row.args << "\nsaid: " << r.output << "expected: " << row.says;
    EXPECT_TRUE(snapshot(dir.path()) == before) << "usher " << row.args << " changed files";
  }
}

// The failures issue 8 reproduced, each refused and changing nothing.
TEST_F(CliCommands, IssueEightReproductionsAreRefusedAndChangeNothing) {
  expect_refused(*this, dir,
                 {
                     // Created an operator in the default place.
                     {"entitlement init --hoem ./x", "unknown option --hoem (did you mean --home?)"},
                     // Granted 30 days.
                     {"entitlement grant --home ent --stb 1001 --service 1 --day 2", "unknown option --day (did you mean --days?)"},
                     // Changed service 4465.
                     {"entitlement service price --home ent --id 70001 --per-day 2.00 --currency EUR", "'70001' is out of range"},
                     // Granted service 4464.
                     {"entitlement grant --home ent --stb 1001 --service 70000", "'70000' is out of range"},
                     // Queued an EMM with a negative expiry.
                     {"entitlement grant --home ent --stb 1001 --service 1 --days 999999999999999", "out of range"},
                     // Accepted.
                     {"stb run --home stb --in udp://127.0.0.1:99999 --out x.ts", "port 99999 is out of range", 1},
                     {"headend run --entitlement-home ent --in udp://127.0.0.1:99999 --out x.ts", "port 99999 is out of range", 1},
                     {"headend run --entitlement-home ent --in stb/stb.pub --out udp://127.0.0.1:99999", "port 99999 is out of range", 1},
                 });
  EXPECT_FALSE(fs::exists(dir.file("x")));
  EXPECT_FALSE(fs::exists(dir.file("usher-data")));

  // --days 010 is ten days, not eight.
  const auto granted = must("entitlement grant --home ent --stb 1001 --service 1 --from 0 --days 010");
  EXPECT_NE(granted.find("until 1970-01-11T00:00:00Z"), std::string::npos) << granted;

  // A flag does not take the next argument: the event is still 7 (it is not on offer, so refused).
  const auto r = in_dir("stb buy --home stb --verbose 7");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("event 7"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("which event"), std::string::npos) << r.output;
  const auto quiet = in_dir("stb buy 7 --home stb --log-level off");
  EXPECT_EQ(quiet.status, 1) << quiet.output;
  EXPECT_NE(quiet.output.find("event 7"), std::string::npos) << quiet.output;
}

// A typo and an out-of-range or badly formed value for every command, and a stray argument where
// one does not belong.
TEST_F(CliCommands, TyposRangesAndFormatsForEveryCommand) {
  expect_refused(*this, dir,
                 {
                     {"entitlemnt init", "(did you mean entitlement?)"},
                     {"stb biy 7", "(did you mean buy?)"},
                     {"entitlement servce list", "(did you mean service?)"},
                     {"--log-level loud stb history", "loud"},
                     // An option's value is never the next option, and an option is given once.
                     {"stb history --home --verbose", "--home: needs a value before --verbose"},
                     {"entitlement grant --home ent --stb 1001 --service --days 3", "--service: needs a value before --days"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days 2 --days 3", "--days"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days", "--days"},
                     // streams
                     {"streams generate --out a.ts --secnds 5", "(did you mean --seconds?)"},
                     {"streams generate --out a.ts --seconds 0", "'0' is out of range"},
                     {"streams generate --out a.ts --fps 1000", "'1000' is out of range"},
                     {"streams generate --seconds 5", "--out is required"},
                     {"streams info a.ts b.ts", "unexpected argument 'b.ts'"},
                     {"streams info --inn a.ts", "unknown option --inn"},
                     // entitlement
                     {"entitlement init --home ent2 --ca-system-id 70000", "out of range"},
                     {"entitlement init --home ent2 --ca-sytem-id 1", "(did you mean --ca-system-id?)"},
                     {"entitlement init --home ent2 extra", "unexpected argument 'extra'"},
                     {"entitlement service add --home ent --id 65536 --name X", "'65536' is out of range"},
                     {"entitlement service add --home ent --id 2 --nmae X", "(did you mean --name?)"},
                     {"entitlement service add --home ent --id 2", "--name is required"},
                     {"entitlement service price --home ent --id 1 --per-day 1.234 --currency EUR", "at most two decimals"},
                     {"entitlement service price --home ent --id 1 --per-day 2.00 --currncy EUR", "(did you mean --currency?)"},
                     {"entitlement service list --home ent extra", "unexpected argument 'extra'"},
                     {"entitlement package add --home ent --id 5 --name P --services 1,70000", "'70000' is out of range"},
                     {"entitlement package add --home ent --id 5 --name P --services 1,,2", "expects comma-separated"},
                     {"entitlement package add --home ent --id 5 --name P --servics 1", "(did you mean --services?)"},
                     {"entitlement package list --hme ent", "(did you mean --home?)"},
                     {"entitlement device add --home ent --stb-fil stb/stb.pub", "(did you mean --stb-file?)"},
                     {"entitlement device assign --home ent --stb 4294967296 --account a", "out of range"},
                     {"entitlement device list --home ent 3", "unexpected argument '3'"},
                     {"entitlement grant --home ent --stb 0 --service 1", "'0' is out of range"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days 0", "'0' is out of range"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days 36501", "out of range"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days -3", "decimal"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --days 1e3", "decimal"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --until 2026-13-01T00:00:00Z", "bad time"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --from now+5x", "bad time"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --until 99999999999999", "bad time"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --until now+2h --days 3", "excludes"},
                     {"entitlement grant --home ent --stb 1001 --service 1 --package 2", "excludes"},
                     {"entitlement grant --home ent --stb 1001", "--service N or --package P"},
                     {"entitlement revoke --home ent --stb 1001 --servce 1", "(did you mean --service?)"},
                     {"entitlement revoke --home ent --stb 1001 --package 70000", "out of range"},
                     {"entitlement grants --home ent --all", "unknown option --all"},
                     {"entitlement config --home ent --emm-repeat 5x", "bad duration"},
                     {"entitlement config --home ent --emm-rpeat 5h", "(did you mean --emm-repeat?)"},
                     {"entitlement config --home ent --emm-kbps 100001", "out of range"},
                     {"entitlement event add --home ent --id 65536 --service 1 --start now --duration 1h --title T --price 1.00 --currency EUR",
                      "out of range"},
                     {"entitlement event add --home ent --id 7 --service 1 --start now --duration 90q --title T --price 1.00 --currency EUR",
                      "bad duration"},
                     {"entitlement event add --home ent --id 7 --service 1 --start now --duration 1h --title T --price 12.505 --currency EUR",
                      "at most two decimals"},
                     {"entitlement event add --home ent --id 7 --service 1 --start now --duration 1h --title T --price 1.00 --currency EUR "
                      "--min-age 256",
                      "'256' is out of range"},
                     {"entitlement event add --home ent --id 7 --service 1 --start now --duration 1h --titel T --price 1.00 --currency EUR",
                      "(did you mean --title?)"},
                     {"entitlement event list --home ent 7", "unexpected argument '7'"},
                     {"entitlement headend add --home ent --fil h.pub", "(did you mean --file?)"},
                     {"entitlement credit --home ent --stb 1001 --limit -5 --currency EUR", "amount must look like"},
                     {"entitlement credit --home ent --stb 0 --limit 5 --currency EUR", "'0' is out of range"},
                     {"entitlement tickets --home ent 1", "unexpected argument '1'"},
                     {"entitlement ticket revoke --home ent --ticket 0", "'0' is out of range"},
                     {"entitlement ticket revoke --home ent --ticket 1 --refnd", "(did you mean --refund?)"},
                     {"entitlement serve --home ent --bnd tcp://127.0.0.1:1", "(did you mean --bind?)"},
                     // headend
                     {"headend init --home h --id 2147483648 --operator ent/operator.pub", "out of range"},
                     {"headend init --home h --id 1 --operatr ent/operator.pub", "(did you mean --operator?)"},
                     {"headend run --entitlement-home ent --in a --out b --crypto-period abc", "bad duration"},
                     {"headend run --entitlement-home ent --in a --out b --crypto-period 0", "--crypto-period must be"},
                     {"headend run --entitlement-home ent --in a --out b --emm-pid 0", "out of range"},
                     {"headend run --entitlement-home ent --in a --out b --emm-kbps 0", "out of range"},
                     {"headend run --entitlement-home ent --in a --out b --emm-kbps 100 --emm-bitrate 100000", "excludes"},
                     {"headend run --entitlement-home ent --in a --out b --emm-pid 8192", "out of range"},
                     {"headend run --entitlement-home ent --in a --out b --ecm-pid 0x2000", "out of range"},
                     {"headend run --entitlement-home ent --in a --out b --ecm-interval 5", "--ecm-interval must be"},
                     {"headend run --entitlement-home ent --in a --out b --ecm-interval 2m", "--ecm-interval must be"},
                     {"headend run --entitlement-home ent --in a --out b --ecm-interval 1x", "bad duration"},
                     {"headend run --entitlement-home ent --in a --out b --max-hold 0", "--max-hold must be from 1ms to 2s"},
                     {"headend run --entitlement-home ent --in a --out b --max-hold 3s", "--max-hold must be from 1ms to 2s"},
                     {"headend run --entitlement-home ent --in a --out b --services 1,70000", "'70000' is out of range"},
                     {"headend run --entitlement-home ent --in a --out b --idle-timeout 5x", "bad duration"},
                     {"headend run --entitlement-home ent --in a --out b --start-time yesterday", "bad time"},
                     {"headend run --entitlement-home ent --in a --out b --srvices 1", "(did you mean --services?)"},
                     // stb
                     {"stb init --home stb2 --id 0 --operator ent/operator.pub", "'0' is out of range"},
                     {"stb init --home stb2 --id 4294967296 --operator ent/operator.pub", "out of range"},
                     {"stb init --home stb2 --id 5 --operater ent/operator.pub", "(did you mean --operator?)"},
                     {"stb run --home stb --in a --out b --idl-timeout 5", "(did you mean --idle-timeout?)"},
                     {"stb run --home stb --in a --out b --idle-timeout 3q", "bad duration"},
                     {"stb run --home stb --in a --out b --max-hold 2001", "--max-hold must be from 1ms to 2s"},
                     {"stb run --home stb --in a --out b --services 1,0", "'0' is out of range"},
                     {"stb run --home stb --in a --out b --service 1", "(did you mean --services?)"},
                     {"stb buy --home stb 70000", "'70000' is out of range"},
                     {"stb buy --home stb --event 0", "'0' is out of range"},
                     {"stb buy --home stb --evnt 7", "(did you mean --event?)"},
                     {"stb buy --home stb 7 --event 7", "excludes"},
                     {"stb buy --home stb 7 8", "unexpected argument '8'"},
                     {"stb buy --home stb --event 7 --pay-by-handset --valid 10x", "bad duration"},
                     {"stb history --home stb extra", "unexpected argument 'extra'"},
                     {"stb entitlements --hme stb", "(did you mean --home?)"},
                     {"stb tickets --home stb --all", "unknown option --all"},
                     {"stb parental --home stb --pin 1234 --max-age 256", "'256' is out of range"},
                     {"stb parental --home stb --pin 1234 --max-age 12 --curent-pin 1", "(did you mean --current-pin?)"},
                     {"stb link --home stb --bnd tcp://127.0.0.1:1", "(did you mean --bind?)"},
                     // wallet
                     {"wallet init --home w --acount a --currency EUR --operator ent/operator.pub", "(did you mean --account?)"},
                     {"wallet topup --home w --amount 1.234", "at most two decimals"},
                     {"wallet topup --home w --amout 1.00", "(did you mean --amount?)"},
                     {"wallet balance --home w extra", "unexpected argument 'extra'"},
                     {"wallet card --hom w", "(did you mean --home?)"},
                     {"wallet events --home w --all", "unknown option --all"},
                     {"wallet buy --home w --event 65536 --stb 1001", "'65536' is out of range"},
                     {"wallet buy --home w --event 7 --stb 0", "'0' is out of range"},
                     {"wallet buy --home w --service 1 --days 367 --stb 1001", "'367' is out of range"},
                     {"wallet buy --home w --service 70000 --days 2 --stb 1001", "'70000' is out of range"},
                     {"wallet buy --home w --service 1 --stb 1001", "requires --days"},
                     {"wallet buy --home w --event 7 --stb 1001 --deliver-at soon", "bad time"},
                     {"wallet buy --home w --evnt 7 --stb 1001", "(did you mean --event?)"},
                     {"wallet gift --home w --event 7 --to-acount bob", "(did you mean --to-account?)"},
                     {"wallet gift --home w --event 7 --to-account bob --stb 1001", "excludes"},
                     {"wallet relay-acks --home w --lnk x", "(did you mean --link?)"},
                     {"wallet approve --home w", "CODE is required"},
                     {"wallet approve --home w CODE1 CODE2", "unexpected argument 'CODE2'"},
                     {"wallet tickets --home w --all", "unknown option --all"},
                     {"wallet relay --home w --stb 0", "'0' is out of range"},
                     {"wallet relay --home w --stb 1001 --biling x", "(did you mean --billing?)"},
                     {"wallet prepay --home w --stb 1001 --amount x", "amount must look like"},
                     {"wallet receipts --home w extra", "unexpected argument 'extra'"},
                     // billing
                     {"billing init --home b --engine-home ent --id 0", "'0' is out of range"},
                     {"billing init --home b --engine-hme ent", "(did you mean --engine-home?)"},
                     {"billing init --home b", "give --operator"},
                     {"billing certify --home b --certificate c --engine-home ent", "excludes"},
                     {"billing serve --home b --sync 0", "--sync must be"},
                     {"billing serve --home b --sync 5x", "bad duration"},
                     {"billing serve --home b --pms 127.0.0.1:99999", "out of range"},
                     {"billing pms --home b --pms 127.0.0.1:0", "out of range"},
                     {"billing pms --home b --pms nocolon", "HOST:PORT"},
                     {"billing statement --home b --stb 4294967296", "out of range"},
                     {"billing statement --home b --acount a", "(did you mean --account?)"},
                     {"billing hotel config --home b --credit 1.001 --currency EUR", "at most two decimals"},
                     {"billing hotel room add --home b --room 1 --stb 0 --link x", "'0' is out of range"},
                     {"billing hotel room add --home b --rom 1 --stb 3 --link x", "(did you mean --room?)"},
                     {"billing hotel rooms --home b extra", "unexpected argument 'extra'"},
                     {"billing hotel checkin --home b --room 1 --gest-id 1 --name N", "(did you mean --guest-id?)"},
                     {"billing hotel checkout --home b --room 1 --forc", "(did you mean --force?)"},
                     {"billing hotel folio --home b --stay 0", "'0' is out of range"},
                     {"billing hotel folio --home b --stay 1 --csv --pdf f.pdf", "excludes"},
                     {"billing hotel stays --home b 1", "unexpected argument '1'"},
                     {"billing hotel postings --home b --retry -1", "decimal"},
                     {"billing hotel postings --home b --rety 1", "(did you mean --retry?)"},
                     // demo
                     {"demo --dir d --seconds 0", "'0' is out of range"},
                     {"demo --dir d --crypto-period 0", "--crypto-period must be"},
                     {"demo --dri d", "(did you mean --dir?)"},
                 });
}

// The spellings README.md, the demo and the tests use, with the formats the issue asks for.
TEST_F(CliCommands, DocumentedSpellingsAndFormatsAreAccepted) {
  EXPECT_NE(must("entitlement service add --home ent --id 010 --name Ten").find("service 10 "), std::string::npos);
  EXPECT_NE(must("entitlement config --home ent --emm-repeat 3d").find("259200 s"), std::string::npos);
  EXPECT_NE(must("entitlement config --home ent --emm-repeat 0").find("while each entitlement lasts"), std::string::npos);
  EXPECT_NE(must("entitlement config --home ent --emm-kbps 1000").find("given none: 1000 kbit/s"), std::string::npos);
  EXPECT_NE(must("entitlement config --home ent --emm-kbps 0").find("given none: their default"), std::string::npos);
  EXPECT_NE(must("entitlement event add --home ent --id 7 --service 1 --start 2026-12-01T20:00:00Z --duration 90m --title Final "
                 "--price 12.50 --currency EUR")
                .find("for 5400 s, 12.50 EUR"),
            std::string::npos);
  EXPECT_NE(must("entitlement grant --home ent --stb=1001 --service=1 --from now --until now+3d").find("granted service 1"),
            std::string::npos);
  EXPECT_NE(must("entitlement init --home ent3 --ca-system-id 0x4B00").find("0x4b00"), std::string::npos);
  EXPECT_NE(must("entitlement credit --home ent --stb 1001 --limit 20.00 --currency EUR").find("20.00 EUR"), std::string::npos);
  EXPECT_NE(must("stb entitlements --home stb").find("STB 1001"), std::string::npos);
  EXPECT_NE(must("entitlement grants --home ent --log-level off").find("STB 1001 service 1"), std::string::npos);
}

TEST_F(CliCommands, HelpForEveryCommandAndVersion) {
  const std::vector<std::string> commands{
      "", "demo", "streams", "streams generate", "streams info", "entitlement", "entitlement init", "entitlement service",
      "entitlement service add", "entitlement service price", "entitlement service list", "entitlement package",
      "entitlement package add", "entitlement package list", "entitlement device", "entitlement device add",
      "entitlement device import", "entitlement device assign", "entitlement device list", "entitlement grant", "entitlement revoke", "entitlement grants",
      "entitlement config", "entitlement event", "entitlement event add", "entitlement event list", "entitlement headend",
      "entitlement headend add", "entitlement billing", "entitlement billing add", "entitlement credit", "entitlement tickets", "entitlement ticket", "entitlement ticket revoke",
      "entitlement serve", "headend", "headend init", "headend run", "stb", "stb init", "stb run", "stb entitlements", "stb buy",
      "stb history", "stb parental", "stb tickets", "stb messages", "stb link", "wallet", "wallet init", "wallet topup", "wallet card",
      "wallet balance", "wallet events", "wallet buy", "wallet gift", "wallet relay-acks", "wallet approve", "wallet tickets",
      "wallet relay", "wallet prepay", "wallet receipts", "billing", "billing init", "billing certify", "billing serve", "billing pms",
      "billing statement", "billing hotel", "billing hotel config", "billing hotel room", "billing hotel room add",
      "billing hotel rooms", "billing hotel checkin", "billing hotel checkout", "billing hotel folio", "billing hotel stays",
      "billing hotel postings", "billing hotel status"};
  for (const auto& command : commands) {
    const auto before = snapshot(dir.path());
    const auto r = in_dir(command + " --help");
    EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
    EXPECT_NE(r.output.find("Usage: usher" + (command.empty() ? "" : " " + command)), std::string::npos) << command << "\n" << r.output;
    EXPECT_TRUE(snapshot(dir.path()) == before) << command << " --help changed files";
  }
  // A group without its subcommand shows what it offers, as a mistake.
  for (const char* group : {"", "entitlement", "entitlement service", "billing hotel", "billing hotel room"}) {
    const auto r = in_dir(group);
    EXPECT_EQ(r.status, 2) << group;
    EXPECT_NE(r.output.find("Subcommands:"), std::string::npos) << group << "\n" << r.output;
  }
  for (const char* command : {"--version", "stb --version", "entitlement grant --version"}) {
    const auto r = in_dir(command);
    EXPECT_EQ(r.status, 0) << command;
    EXPECT_EQ(r.output, "usher " USHER_VERSION "\n") << command;
  }
}

}  // namespace
}  // namespace usher
