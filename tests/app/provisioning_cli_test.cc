// `usher entitlement device import` and `usher entitlement grant` to many boxes, through the real
// binary: the mistakes people make with export files (each refused whole, named by file and line,
// nothing imported), the same file twice, kill -9 in the middle and the same command again (every
// box once, no second EMM), and grants to boxes that are not registered or of packages that do not
// exist. Bulk grants go as member grants (one group EMM per group, service and window, issue 11):
// what each box is granted is read from its bit in its group's member grants.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "cli_process.h"
#include "member_grants.h"
#include "synthetic_boxes.h"
#include "temp_dir.h"
#include "usher/core/hex.h"
#include "usher/entitlement/store.h"

namespace usher {
namespace {

using testing::box_file_line;
using testing::run;
using testing::synthetic_box;

constexpr std::uint64_t kFrom = 4'000'000'000;
constexpr std::uint64_t kUntil = kFrom + 30 * 86400;

std::string csv_of(std::uint32_t first, std::uint32_t count) {
  std::string text;
  for (std::uint32_t id = first; id < first + count; ++id) text += box_file_line(synthetic_box(id)) + "\n";
  return text;
}

// Runs `command` with its stderr on a pipe one page long and kills it (SIGKILL) as soon as it says it
// committed its first transaction. With one box per transaction (--batch 1) it cannot get far
// meanwhile: it blocks writing its progress lines once the page is full, before its next
// transaction, however fast or slow the machine. True when it was killed (not ended by itself).
bool kill_after_first_transaction(const std::string& command) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  (void)fcntl(fds[1], F_SETPIPE_SZ, 4096);
  const std::string shell_command = "exec " + command + " >/dev/null";
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", shell_command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string seen;
  char buf[256];
  while (seen.find("STBs done") == std::string::npos) {
    const auto n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

class ProvisioningCli : public ::testing::Test {
 public:
  void SetUp() override {
    must("entitlement init --home ent");
    must("entitlement service add --home ent --id 1 --name News");
    must("entitlement service add --home ent --id 2 --name Films");
    must("entitlement package add --home ent --id 5 --name Basic --services 1,2");
  }

  testing::Run in_dir(const std::string& args, const std::string& stdin_from = "/dev/null") {
    return run("cd " + dir.path() + " && " + testing::usher(args) + " <" + stdin_from);
  }
  std::string must(const std::string& args) {
    auto r = in_dir(args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.output;
    return r.output;
  }
  void write(const std::string& name, const std::string& text) { ASSERT_TRUE(testing::write_file(dir.file(name), text)); }
  std::size_t registered() { return entitlement::EntitlementStore::open(dir.file("ent")).value().stbs().size(); }
  // Unique EMMs queued per box but for its key EMM (the grants here are far in the future: all on
  // the carousel).
  std::map<std::uint32_t, int> emms_per_box() {
    std::map<std::uint32_t, int> out;
    auto store = entitlement::EntitlementStore::open(dir.file("ent")).value();
    std::set<std::uint64_t> on_carousel;
    for (const auto& section : store.emm_sections(kFrom)) on_carousel.insert(entitlement::peek_any_emm(section).value().sequence);
    for (const auto& q : store.queued_emms()) {
      if (q.address.type == entitlement::EmmAddressType::unique && q.topic != "keys" && on_carousel.count(q.sequence)) ++out[q.address.id];
    }
    return out;
  }
  // The member grants on the carousel, box by box.
  testing::CarouselMemberGrants member_grants() {
    auto store = entitlement::EntitlementStore::open(dir.file("ent")).value();
    return testing::carousel_member_grants(store, kFrom);
  }
  // Everything queued, by sequence number.
  std::vector<std::pair<std::uint64_t, std::string>> queue() {
    std::vector<std::pair<std::uint64_t, std::string>> out;
    for (const auto& q : entitlement::EntitlementStore::open(dir.file("ent")).value().queued_emms()) out.emplace_back(q.sequence, q.topic);
    return out;
  }

  testing::TempDir dir;
};

TEST_F(ProvisioningCli, ImportsACsvExportAndTheSameFileAgainChangesNothing) {
  write("boxes.csv", "stb_id,x25519,ed25519,account\n" + csv_of(1001, 299) + box_file_line(synthetic_box(1300, "usher-simulation", "smith")) + "\n");
  const auto first = must("entitlement device import --home ent --file boxes.csv --batch 100");
  EXPECT_NE(first.find("300 STBs added, 0 already registered (skipped)"), std::string::npos) << first;
  EXPECT_NE(first.find("usher entitlement: 100 of 300 STBs done (100 added, 0 skipped)"), std::string::npos) << first;
  const auto listed = must("entitlement device list --home ent");
  EXPECT_NE(listed.find("STB 1001\n"), std::string::npos);
  EXPECT_NE(listed.find("STB 1300\n"), std::string::npos);
  EXPECT_EQ(entitlement::EntitlementStore::open(dir.file("ent")).value().account_stbs("smith"), std::vector<std::uint32_t>{1300});

  const auto again = must("entitlement device import --home ent --file boxes.csv");
  EXPECT_NE(again.find("0 STBs added, 300 already registered (skipped)"), std::string::npos) << again;
  EXPECT_EQ(must("entitlement device list --home ent"), listed);
}

TEST_F(ProvisioningCli, ImportsJsonLinesFromStdinWhenTheFormatIsSaid) {
  std::string text;
  for (std::uint32_t id = 1; id <= 20; ++id) {
    const auto box = synthetic_box(id);
    text += R"({"stb_id":)" + std::to_string(id) + R"(,"x25519":")" + to_hex(box.stb.x25519_public) + R"(","ed25519":")" +
            to_hex(box.stb.ed25519_public) + "\"}\n";
  }
  write("boxes.export", text);
  const auto unsaid = in_dir("entitlement device import --home ent --file -", dir.file("boxes.export"));
  EXPECT_EQ(unsaid.status, 2) << unsaid.output;
  EXPECT_NE(unsaid.output.find("say --format csv or --format jsonl"), std::string::npos) << unsaid.output;
  const auto wrong = in_dir("entitlement device import --home ent --file - --format xml", dir.file("boxes.export"));
  EXPECT_EQ(wrong.status, 2) << wrong.output;
  const auto r = in_dir("entitlement device import --home ent --file - --format jsonl", dir.file("boxes.export"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("20 STBs added"), std::string::npos) << r.output;
}

// Each mistake: exit 1, the file and line named, nothing imported (not even the good lines).
TEST_F(ProvisioningCli, ABadLineRefusesTheWholeFileNamingItsLine) {
  const auto key = to_hex(synthetic_box(1).stb.x25519_public);
  const auto good = csv_of(1, 5);
  struct Case {
    const char* what;
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"a typo'd column", "stb_id,x25519,ed2519\n" + good, "boxes.csv:1: unknown column 'ed2519'"},
      {"id 0", good + "0," + key + "," + key + "\n", "boxes.csv:6: the STB id must be from 1 to 4294967295, got 0"},
      {"id past 2^32-1", good + "4294967296," + key + "," + key + "\n", "boxes.csv:6: the STB id must be from 1 to 4294967295"},
      {"a truncated last line", good + "77," + key + "," + key.substr(0, 17), "boxes.csv:6: the ed25519 key is not hex"},
      {"an id twice", good + box_file_line(synthetic_box(3)) + "\n", "boxes.csv:6: STB 3 is given twice (first on line 3)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    write("boxes.csv", c.text);
    const auto r = in_dir("entitlement device import --home ent --file boxes.csv");
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("nothing imported"), std::string::npos) << r.output;
    EXPECT_EQ(registered(), 0u);
  }
}

TEST_F(ProvisioningCli, AFileNamingARegisteredIdWithOtherKeysIsRefusedAndChangesNothing) {
  write("first.csv", csv_of(1, 10));
  must("entitlement device import --home ent --file first.csv");
  write("second.csv", csv_of(11, 10) + box_file_line(synthetic_box(4, "a box cloned elsewhere")) + "\n");
  const auto r = in_dir("entitlement device import --home ent --file second.csv");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("line 11: STB 4 is already registered with other keys"), std::string::npos) << r.output;
  EXPECT_EQ(registered(), 10u);
}

TEST_F(ProvisioningCli, AFileThatDoesNotExistIsNamed) {
  const auto r = in_dir("entitlement device import --home ent --file nothing.csv");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("cannot read nothing.csv: No such file or directory"), std::string::npos) << r.output;
  const auto g = in_dir("entitlement grant --home ent --package 5 --stbs-file nothing.txt");
  EXPECT_EQ(g.status, 1) << g.output;
  EXPECT_NE(g.output.find("cannot read nothing.txt"), std::string::npos) << g.output;
}

TEST_F(ProvisioningCli, KilledInTheMiddleThenRunAgainImportsEveryBoxOnce) {
  write("boxes.csv", csv_of(1, 1500));
  ASSERT_TRUE(kill_after_first_transaction(testing::usher("entitlement device import --home " + dir.file("ent") + " --file " +
                                                          dir.file("boxes.csv") + " --batch 1")));
  const auto before = registered();
  EXPECT_GE(before, 1u);
  EXPECT_LT(before, 1500u);
  const auto r = must("entitlement device import --home ent --file boxes.csv");
  EXPECT_NE(r.find(std::to_string(1500 - before) + " STBs added, " + std::to_string(before) + " already registered"), std::string::npos) << r;
  EXPECT_EQ(registered(), 1500u);
}

TEST_F(ProvisioningCli, GrantsToAllToARangeAndToTheBoxesOfAFile) {
  write("boxes.csv", "stb_id,x25519,ed25519\n" + csv_of(1001, 300));
  must("entitlement device import --home ent --file boxes.csv");
  const auto window = " --from " + std::to_string(kFrom) + " --until " + std::to_string(kUntil);
  const auto all = must("entitlement grant --home ent --package 5 --all" + window);
  EXPECT_NE(all.find("package 5 granted from 2096-10-02T07:06:40Z until 2096-11-01T07:06:40Z to 300 STBs; 0 already held it"),
            std::string::npos) << all;
  const auto queued = queue();
  const auto again = must("entitlement grant --home ent --package 5 --all" + window);
  EXPECT_NE(again.find("to 0 STBs; 300 already held it (skipped)"), std::string::npos) << again;
  EXPECT_EQ(queue(), queued) << "no second EMM";
  const auto range = must("entitlement grant --home ent --service 1 --stb-range 1001-1010 --from " + std::to_string(kFrom) + " --days 60");
  EXPECT_NE(range.find("service 1 granted from 2096-10-02T07:06:40Z until 2096-12-01T07:06:40Z to 10 STBs"), std::string::npos) << range;
  // The imported file itself names the boxes (its header and keys ignored).
  const auto listed = must("entitlement grant --home ent --service 2 --stbs-file boxes.csv --from " + std::to_string(kFrom) + " --days 90");
  EXPECT_NE(listed.find("to 300 STBs"), std::string::npos) << listed;
  // Each box's bit in its group's member grant of each service for the window it holds now: the
  // package's 30 days of service 1 but boxes 1001..1010 (60 days), 90 days of service 2 for all.
  // The package's member grant (both services) went with its last holder, the 30 days of service 1
  // sealed again for the boxes that still hold them. No EMM of a box's own.
  const auto carousel = member_grants();
  const auto all_boxes = testing::box_range(1001, 1300);
  auto package_boxes = all_boxes;
  for (std::uint32_t id = 1001; id <= 1010; ++id) package_boxes.erase(id);
  EXPECT_EQ(carousel.boxes.size(), 3u);
  EXPECT_EQ(carousel.boxes.at({1, kFrom, kUntil}), package_boxes);
  EXPECT_EQ(carousel.boxes.at({1, kFrom, kFrom + 60 * 86400}), testing::box_range(1001, 1010));
  EXPECT_EQ(carousel.boxes.at({2, kFrom, kFrom + 90 * 86400}), all_boxes);
  EXPECT_EQ(carousel.emms.size(), 5u);  // group 1: the three; group 2 (boxes 1257..1300): not the 60 days
  for (const auto& [at, n] : carousel.emms) EXPECT_EQ(n, 1) << "group " << at.first << " service " << at.second.service_id;
  EXPECT_TRUE(emms_per_box().empty());
  EXPECT_EQ(must("entitlement grants --home ent").find("STB 1001 service 1 2096-10-02T07:06:40Z .. 2096-12-01T07:06:40Z"), 0u);
}

TEST_F(ProvisioningCli, BulkGrantMistakesAreRefusedAndChangeNothing) {
  write("boxes.csv", csv_of(1, 10));
  must("entitlement device import --home ent --file boxes.csv");
  write("ids.txt", "1\n2\n404\n3\n405\n");
  const auto queued = queue();  // the boxes' key EMMs
  struct Case {
    std::string args;
    int status;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"--package 5 --stbs-file ids.txt", 1, "2 of 5 STBs are not registered (register them first), nothing granted: 404, 405"},
      {"--package 9 --all", 1, "no package 9"},
      {"--service 7 --all", 1, "no service 7 in the catalogue"},
      {"--package 5 --stb-range 500-600", 1, "no registered STB to grant to"},
      {"--package 5 --stb-range 9-3", 2, "--stb-range: the range 9-3 ends before it starts"},
      {"--package 5 --stb-range 0-3", 2, "--stb-range: the STB id must be from 1 to 4294967295"},
      {"--package 5", 2, "say which STBs: --stb N, --stbs-file FILE, --all or --stb-range FIRST-LAST"},
      {"--package 5 --all --stb 1", 2, "excludes"},
      {"--package 5 --all --stb-range 1-3", 2, "excludes"},
      {"--package 5 --all --batch 0", 2, "out of range"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const auto r = in_dir("entitlement grant --home ent " + c.args);
    EXPECT_EQ(r.status, c.status) << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << r.output;
  }
  EXPECT_EQ(must("entitlement grants --home ent"), "");
  EXPECT_EQ(queue(), queued);
  EXPECT_TRUE(emms_per_box().empty());
  EXPECT_TRUE(member_grants().emms.empty());
}

TEST_F(ProvisioningCli, AGrantKilledInTheMiddleThenRunAgainQueuesOneEmmPerBoxAndService) {
  write("boxes.csv", csv_of(1, 1500));
  must("entitlement device import --home ent --file boxes.csv");
  const auto command = "entitlement grant --home " + dir.file("ent") + " --package 5 --all --from " + std::to_string(kFrom) + " --until " +
                       std::to_string(kUntil);
  ASSERT_TRUE(kill_after_first_transaction(testing::usher(command + " --batch 1")));
  // What the killed run committed: whole transactions, each box's bit in both services' member grants.
  auto part = member_grants();
  const testing::GrantWindow news{1, kFrom, kUntil};
  const testing::GrantWindow films{2, kFrom, kUntil};
  const auto granted_before = part.boxes[news].size();
  EXPECT_EQ(part.boxes[films].size(), granted_before);
  EXPECT_EQ(entitlement::EntitlementStore::open(dir.file("ent")).value().grants().size(), 2 * granted_before);
  EXPECT_GE(granted_before, 1u);
  EXPECT_LT(granted_before, 1500u);
  const auto r = must(command);
  EXPECT_NE(r.find("to " + std::to_string(1500 - granted_before) + " STBs; " + std::to_string(granted_before) + " already held it"),
            std::string::npos) << r;
  // Every box's bit in its group's member grant of each service, one member grant per group (6 of
  // 256) and service, none doubled by the second run; no EMM of a box's own.
  const auto carousel = member_grants();
  EXPECT_EQ(carousel.boxes.size(), 2u);
  EXPECT_EQ(carousel.boxes.at({1, kFrom, kUntil}), testing::box_range(1, 1500));
  EXPECT_EQ(carousel.boxes.at({2, kFrom, kUntil}), testing::box_range(1, 1500));
  EXPECT_EQ(carousel.emms.size(), 12u);
  for (const auto& [at, n] : carousel.emms) EXPECT_EQ(n, 1) << "group " << at.first << " service " << at.second.service_id;
  EXPECT_TRUE(emms_per_box().empty());
  // Run once more: nothing to do, nothing queued.
  const auto queued = queue();
  EXPECT_NE(must(command).find("to 0 STBs; 1500 already held it"), std::string::npos);
  EXPECT_EQ(queue(), queued);
}

}  // namespace
}  // namespace usher
