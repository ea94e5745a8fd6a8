// Bulk provisioning (issue 11, section 3): box files as subscriber-management systems export them,
// read and checked whole (every mistake named by line, nothing imported); bulk registration and
// bulk grants in transactions of many boxes, refused whole on a bad row, resumed by running them
// again (what was done is skipped, no second EMM). Real SQLite (and PostgreSQL in the _on_postgresql
// run), real keys, real EMMs opened with each box's own key or its group's key (bulk grants go as
// member grants, one per group, service and window, since issue 11).
#include "usher/entitlement/provisioning.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "member_grants.h"
#include "postgres_server.h"
#include "synthetic_boxes.h"
#include "temp_dir.h"
#include "usher/core/hex.h"

namespace usher::entitlement {
namespace {

using testing::box_file_line;
using testing::synthetic_box;

constexpr std::uint64_t kFrom = 4'000'000'000;
constexpr std::uint64_t kUntil = kFrom + 30 * 86400;

std::string csv_of(std::uint32_t first, std::uint32_t count) {
  std::string text;
  for (std::uint32_t id = first; id < first + count; ++id) text += box_file_line(synthetic_box(id)) + "\n";
  return text;
}

std::string hex_of(const crypto::PublicKey& key) { return to_hex(key); }

// ---- Box files ----

TEST(StbFile, CsvWithAHeaderInAnyOrderCommentsBlankLinesAndCrlf) {
  const auto a = synthetic_box(1001);
  const auto b = synthetic_box(1002);
  const std::string text = "# exported by the SMS\r\naccount,stb_id,ed25519,x25519\r\n\r\nsmith," + std::to_string(a.stb.stb_id) + "," +
                           hex_of(a.stb.ed25519_public) + "," + hex_of(a.stb.x25519_public) + "\r\n\"jones, m\",1002," +
                           hex_of(b.stb.ed25519_public) + "," + hex_of(b.stb.x25519_public);
  const auto file = parse_stb_file(text, StbFileFormat::csv);
  ASSERT_TRUE(file.problems.empty()) << file.problems[0].message;
  ASSERT_EQ(file.rows.size(), 2u);
  EXPECT_EQ(file.rows[0].stb.stb_id, 1001u);
  EXPECT_EQ(file.rows[0].stb.x25519_public, a.stb.x25519_public);
  EXPECT_EQ(file.rows[0].stb.ed25519_public, a.stb.ed25519_public);
  EXPECT_EQ(file.rows[0].account, "smith");
  EXPECT_EQ(file.rows[0].line, 4u);
  EXPECT_EQ(file.rows[1].account, "jones, m");
  EXPECT_EQ(file.rows[1].line, 5u);
}

TEST(StbFile, CsvWithoutAHeaderIsIdKeysAndAnOptionalAccount) {
  const auto file = parse_stb_file(box_file_line(synthetic_box(7)) + "\n" + box_file_line(synthetic_box(8, "usher-simulation", "acme")) + "\n",
                                   StbFileFormat::csv);
  ASSERT_TRUE(file.problems.empty());
  ASSERT_EQ(file.rows.size(), 2u);
  EXPECT_EQ(file.rows[0].account, "");
  EXPECT_EQ(file.rows[1].account, "acme");
}

// Each mistake people make in an export, named with its line; the good lines around it are read.
TEST(StbFile, EveryBadLineIsNamedWithItsLineNumber) {
  const auto good = box_file_line(synthetic_box(5));
  const auto key = hex_of(synthetic_box(5).stb.x25519_public);
  struct Case {
    const char* what;
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"id 0", "0," + key + "," + key, "from 1 to 4294967295"},
      {"id past 32 bits", "4294967296," + key + "," + key, "from 1 to 4294967295"},
      {"id with a sign", "-3," + key + "," + key, "decimal"},
      {"id not a number", "abc," + key + "," + key, "decimal"},
      {"key cut short", "9," + key + "," + key.substr(0, 40), "64 hex digits"},
      {"key not hex", "9," + key + "," + std::string(64, 'g'), "not hex"},
      {"too few fields", "9," + key, "got 2 fields"},
      {"too many fields", "9," + key + "," + key + ",acct,extra", "got 5 fields"},
      {"quote not closed", "9," + key + "," + key + ",\"acct", "not closed"},
      {"control character in the account", "9," + key + "," + key + ",a\tb\x01", "control character"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto file = parse_stb_file(good + "\n" + c.line + "\n", StbFileFormat::csv);
    ASSERT_EQ(file.problems.size(), 1u);
    EXPECT_EQ(file.problems[0].line, 2u);
    EXPECT_NE(file.problems[0].message.find(c.expected), std::string::npos) << file.problems[0].message;
    EXPECT_EQ(file.rows.size(), 1u);
  }
}

TEST(StbFile, ATruncatedLastLineIsRefused) {
  const auto text = csv_of(1, 3);
  const auto file = parse_stb_file(text.substr(0, text.size() - 21), StbFileFormat::csv);
  ASSERT_EQ(file.problems.size(), 1u);
  EXPECT_EQ(file.problems[0].line, 3u);
  EXPECT_NE(file.problems[0].message.find("64 hex digits"), std::string::npos);
}

TEST(StbFile, ATypoedColumnInTheHeaderIsRefusedAndNamed) {
  const auto file = parse_stb_file("stb_id,x2519,ed25519\n" + csv_of(1, 2), StbFileFormat::csv);
  ASSERT_EQ(file.problems.size(), 1u);
  EXPECT_EQ(file.problems[0].line, 1u);
  EXPECT_NE(file.problems[0].message.find("unknown column 'x2519'"), std::string::npos) << file.problems[0].message;
  const auto missing = parse_stb_file("stb_id,x25519,account\n", StbFileFormat::csv);
  ASSERT_EQ(missing.problems.size(), 1u);
  EXPECT_NE(missing.problems[0].message.find("no column ed25519"), std::string::npos);
}

TEST(StbFile, AnIdGivenTwiceNamesBothLines) {
  const auto file = parse_stb_file(csv_of(1, 3) + box_file_line(synthetic_box(2)) + "\n", StbFileFormat::csv);
  ASSERT_EQ(file.problems.size(), 1u);
  EXPECT_EQ(file.problems[0].line, 4u);
  EXPECT_NE(file.problems[0].message.find("STB 2 is given twice (first on line 2)"), std::string::npos) << file.problems[0].message;
}

TEST(StbFile, ManyBadLinesAreCountedNotAllListed) {
  std::string text;
  for (int i = 0; i < 150; ++i) text += "0,00,00\n";
  const auto file = parse_stb_file(text, StbFileFormat::csv);
  ASSERT_EQ(file.problems.size(), StbFile::kMaxProblems + 1);
  EXPECT_NE(file.problems.back().message.find("and 50 more"), std::string::npos);
}

TEST(StbFile, JsonLines) {
  const auto a = synthetic_box(4242);
  const std::string good = R"({"stb_id":4242,"x25519":")" + hex_of(a.stb.x25519_public) + R"(","ed25519":")" + hex_of(a.stb.ed25519_public) +
                           R"(","account":"smith"})";
  const auto file = parse_stb_file(good + "\n\n", StbFileFormat::jsonl);
  ASSERT_TRUE(file.problems.empty()) << file.problems[0].message;
  ASSERT_EQ(file.rows.size(), 1u);
  EXPECT_EQ(file.rows[0].stb.stb_id, 4242u);
  EXPECT_EQ(file.rows[0].stb.ed25519_public, a.stb.ed25519_public);
  EXPECT_EQ(file.rows[0].account, "smith");

  const auto x = hex_of(a.stb.x25519_public);
  struct Case {
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases{
      {R"({"stb_id":1,"x2519":")" + x + R"(","ed25519":")" + x + "\"}", "unknown field \"x2519\""},
      {R"({"stb_id":0,"x25519":")" + x + R"(","ed25519":")" + x + "\"}", "from 1 to 4294967295"},
      {R"({"stb_id":4294967296,"x25519":")" + x + R"(","ed25519":")" + x + "\"}", "from 1 to 4294967295"},
      {R"({"stb_id":-1,"x25519":")" + x + R"(","ed25519":")" + x + "\"}", "from 1 to 4294967295"},
      {R"({"stb_id":1.5,"x25519":")" + x + R"(","ed25519":")" + x + "\"}", "whole number"},
      {R"({"stb_id":"1","x25519":")" + x + R"(","ed25519":")" + x + "\"}", "whole number"},
      {R"({"stb_id":1,"x25519":")" + x + "\"}", "no \"ed25519\" field"},
      {R"({"stb_id":1,"x25519":7,"ed25519":")" + x + "\"}", "must be a string"},
      {R"({"stb_id":1,"x25519":")" + x.substr(0, 30), "not a JSON line"},
      {"[1,2,3]", "must be an object"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    const auto bad = parse_stb_file(good + "\n" + c.line + "\n", StbFileFormat::jsonl);
    ASSERT_EQ(bad.problems.size(), 1u);
    EXPECT_EQ(bad.problems[0].line, 2u);
    EXPECT_NE(bad.problems[0].message.find(c.expected), std::string::npos) << bad.problems[0].message;
  }
}

TEST(StbFile, FormatFromTheNameAndIdListsAndRanges) {
  EXPECT_EQ(stb_file_format_for("boxes.csv"), StbFileFormat::csv);
  EXPECT_EQ(stb_file_format_for("boxes.jsonl"), StbFileFormat::jsonl);
  EXPECT_EQ(stb_file_format_for("boxes.ndjson"), StbFileFormat::jsonl);
  EXPECT_FALSE(stb_file_format_for("-").has_value());
  EXPECT_FALSE(stb_file_format_for("boxes.txt").has_value());

  EXPECT_EQ(parse_stb_id_list("# ids\n3\n1\r\n\n2\n3\n").value(), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_EQ(parse_stb_id_list("stb_id,x25519,ed25519\n" + csv_of(10, 2)).value(), (std::vector<std::uint32_t>{10, 11}));
  const auto bad = parse_stb_id_list("1\n2\n0\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("line 3"), std::string::npos);

  EXPECT_EQ(parse_stb_range("100-199").value(), (std::pair<std::uint32_t, std::uint32_t>{100, 199}));
  EXPECT_FALSE(parse_stb_range("199-100").ok());
  EXPECT_FALSE(parse_stb_range("0-10").ok());
  EXPECT_FALSE(parse_stb_range("10").ok());
  EXPECT_FALSE(parse_stb_range("1-4294967296").ok());
}

// ---- The store ----

class Provisioning : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.emplace(EntitlementStore::create(dir_.file("ent"), 0x4AFF, testing::store_database_url()).value());
    ASSERT_TRUE(store_->add_service(1, "News").ok());
    ASSERT_TRUE(store_->add_service(2, "Films").ok());
    ASSERT_TRUE(store_->add_package(5, "Basic", {1, 2}).ok());
  }
  EntitlementStore& store() { return *store_; }

  std::vector<StbRow> rows(std::uint32_t first, std::uint32_t count) {
    std::vector<StbRow> out;
    for (std::uint32_t id = first; id < first + count; ++id) out.push_back(synthetic_box(id));
    return out;
  }
  // The unique EMMs queued per box but for its key EMM (queued at registration), each opened with
  // the box's own key (all of them: granted far in the future, so every one is on the carousel).
  std::map<std::uint32_t, std::vector<EmmContent>> emms() {
    std::map<std::uint32_t, std::vector<EmmContent>> out;
    std::set<std::uint64_t> key_emms;
    for (const auto& q : store().queued_emms()) {
      if (q.address.type == EmmAddressType::unique && q.topic == "keys") key_emms.insert(q.sequence);
    }
    for (const auto& section : store().emm_sections(kFrom)) {
      const auto any = peek_any_emm(section).value();
      if (any.address.type != EmmAddressType::unique || key_emms.count(any.sequence)) continue;
      const auto header = peek_emm(section).value();
      const auto keys = testing::synthetic_box_keys(header.stb_id);
      const auto key = derive_emm_key(keys.x25519_private, store().operator_public(), 0x4AFF, header.stb_id).value();
      auto emm = decode_emm(section, key);
      EXPECT_TRUE(emm.ok()) << "STB " << header.stb_id << ": " << emm.error().message;
      if (emm) out[header.stb_id].push_back(std::move(*emm));
    }
    return out;
  }
  testing::CarouselMemberGrants member_grants() { return testing::carousel_member_grants(store(), kFrom); }
  // Everything queued, by sequence number: what a refused call must leave as it was.
  std::vector<std::pair<std::uint64_t, std::string>> queue() {
    std::vector<std::pair<std::uint64_t, std::string>> out;
    for (const auto& q : store().queued_emms()) out.emplace_back(q.sequence, q.topic);
    return out;
  }

  testing::TempDir dir_;
  std::optional<EntitlementStore> store_;
};

TEST_F(Provisioning, RegistersEveryBoxAndTheSameRowsAgainChangeNothing) {
  auto boxes = rows(1001, 250);
  boxes[3].account = "smith";
  std::vector<EntitlementStore::BulkCounts> progress;
  const auto counts = store().register_stbs(boxes, 100, [&](const auto& c) {
    progress.push_back(c);
    return true;
  });
  ASSERT_TRUE(counts.ok()) << counts.error().message;
  EXPECT_EQ(counts->added, 250u);
  EXPECT_EQ(counts->skipped, 0u);
  ASSERT_EQ(progress.size(), 3u);  // after each transaction
  EXPECT_EQ(progress[0].added, 100u);
  const auto registered = store().stbs();
  ASSERT_EQ(registered.size(), 250u);
  EXPECT_EQ(registered[3].x25519_public, boxes[3].stb.x25519_public);
  EXPECT_EQ(registered[3].ed25519_public, boxes[3].stb.ed25519_public);
  EXPECT_EQ(store().account_stbs("smith"), std::vector<std::uint32_t>{1004});

  const auto again = store().register_stbs(boxes, 100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->added, 0u);
  EXPECT_EQ(again->skipped, 250u);
  EXPECT_EQ(store().stbs().size(), 250u);
  EXPECT_EQ(store().stb_ids(1100, 1102), (std::vector<std::uint32_t>{1100, 1101, 1102}));
}

// A box registered one at a time, then named by an import with the same keys: skipped.
TEST_F(Provisioning, ABoxRegisteredBeforeWithTheSameKeysIsSkipped) {
  ASSERT_TRUE(store().register_stb(synthetic_box(7).stb).ok());
  const auto counts = store().register_stbs(rows(5, 5));
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->added, 4u);
  EXPECT_EQ(counts->skipped, 1u);
}

TEST_F(Provisioning, ARowWithOtherKeysForARegisteredIdRefusesTheWholeImport) {
  ASSERT_TRUE(store().register_stbs(rows(1, 3)).ok());
  auto boxes = rows(4, 10);
  boxes[6] = synthetic_box(2, "another seed");  // the id of a registered box, with other keys
  boxes[6].line = 7;
  const auto refused = store().register_stbs(boxes, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::invalid_argument);
  EXPECT_NE(refused.error().message.find("line 7: STB 2 is already registered with other keys"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("nothing registered"), std::string::npos);
  EXPECT_EQ(store().stbs().size(), 3u);
  EXPECT_EQ(store().stb(2)->x25519_public, synthetic_box(2).stb.x25519_public);
}

TEST_F(Provisioning, IdZeroTwiceInTheListOrAnUnusableKeyRefuseTheWholeImport) {
  struct Case {
    const char* what;
    std::function<void(std::vector<StbRow>&)> spoil;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"id 0", [](auto& b) { b[4].stb.stb_id = 0; }, "row 5: STB id 0 is not an id"},
      {"id twice", [](auto& b) { b[4].stb.stb_id = b[1].stb.stb_id; }, "row 5: STB 101 is given twice (first at row 2)"},
      // The all-zero point has a degenerate shared secret with every key: no EMM could reach it.
      {"low-order key", [](auto& b) { b[4].stb.x25519_public = {}; }, "row 5: STB 104 has an unusable X25519 public key"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto boxes = rows(100, 200);
    c.spoil(boxes);
    const auto refused = store().register_stbs(boxes, 7);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find(c.expected), std::string::npos) << refused.error().message;
    EXPECT_TRUE(store().stbs().empty());
  }
}

// Stopped after the first transaction (as Ctrl-C stops the command): what is committed stays, and
// the same call again registers the rest, each box once.
TEST_F(Provisioning, AnInterruptedImportIsResumedByRunningItAgain) {
  const auto boxes = rows(1, 500);
  const auto first = store().register_stbs(boxes, 100, [](const auto&) { return false; });
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->added, 100u);
  EXPECT_EQ(store().stbs().size(), 100u);
  const auto rest = store().register_stbs(boxes, 100);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->added, 400u);
  EXPECT_EQ(rest->skipped, 100u);
  EXPECT_EQ(store().stbs().size(), 500u);
}

TEST_F(Provisioning, GrantsAPackageToManyBoxesWithEmmsEachBoxOpens) {
  ASSERT_TRUE(store().register_stbs(rows(1001, 300)).ok());
  const auto ids = store().stb_ids();
  const auto services = store().package_services(5).value();
  const auto counts = store().grant_many(ids, services, kFrom, kUntil, 128);
  ASSERT_TRUE(counts.ok()) << counts.error().message;
  EXPECT_EQ(counts->added, 300u);
  EXPECT_EQ(counts->skipped, 0u);
  const auto grants = store().grants();
  ASSERT_EQ(grants.size(), 600u);
  for (const auto& g : grants) {
    EXPECT_EQ(g.not_before, kFrom);
    EXPECT_EQ(g.not_after, kUntil);
    EXPECT_FALSE(g.revoked);
  }
  // Since issue 11: one member grant per group of 256 carrying both services of the package (not
  // one EMM per box and service, nor one per group and service), sealed under the group key, with
  // every granted box's bit set and each service's key.
  const auto carousel = member_grants();
  ASSERT_EQ(store().groups().size(), 2u);
  EXPECT_EQ(carousel.boxes.size(), 2u);
  EXPECT_EQ(carousel.boxes.at({1, kFrom, kUntil}), testing::box_range(1001, 1300));
  EXPECT_EQ(carousel.boxes.at({2, kFrom, kUntil}), testing::box_range(1001, 1300));
  EXPECT_EQ(carousel.emms.size(), 4u);  // groups 1 and 2, services 1 and 2
  EXPECT_EQ(carousel.sequences.size(), 2u) << "one group EMM per group, both services in it";
  for (const auto& [at, n] : carousel.emms) EXPECT_EQ(n, 1) << "group " << at.first << " service " << at.second.service_id;
  EXPECT_TRUE(emms().empty()) << "no unique EMM per box";
  // Each box opens its group's member grants: its key EMM, under its own key, gives it that group key.
  for (const std::uint32_t stb : {1001u, 1256u, 1257u, 1300u}) {
    SCOPED_TRACE("STB " + std::to_string(stb));
    const auto membership = store().group_of(stb).value();
    const auto keys = testing::synthetic_box_keys(stb);
    const auto key = derive_emm_key(keys.x25519_private, store().operator_public(), 0x4AFF, stb).value();
    int opened = 0;
    for (const auto& q : store().queued_emms()) {
      if (q.address.type != EmmAddressType::unique || q.address.id != stb || q.topic != "keys") continue;
      const auto emm = decode_emm(q.section, key);
      ASSERT_TRUE(emm.ok()) << emm.error().message;
      const auto* group = std::get_if<EmmGroupKey>(&emm->items.at(0));
      ASSERT_NE(group, nullptr);
      EXPECT_EQ(group->group_id, membership.group_id);
      EXPECT_EQ(group->position, membership.position);
      EXPECT_TRUE(group->key == store().group_key(membership.group_id).value().key);
      ++opened;
    }
    EXPECT_EQ(opened, 1);
  }
  // A single grant afterwards takes the next number of the operator-wide counter, after every
  // member grant: the bulk path kept the counter.
  const auto next = store().next_emm_sequence();
  EXPECT_GT(next, *carousel.sequences.rbegin());
  ASSERT_TRUE(store().grant(1001, 1, kFrom, kUntil + 86400).ok());
  const auto after = emms();
  ASSERT_EQ(after.size(), 1u);
  ASSERT_EQ(after.at(1001).size(), 1u);
  EXPECT_EQ(after.at(1001)[0].sequence, next);
  const auto* grant = std::get_if<EmmGrant>(&after.at(1001)[0].items.at(0));
  ASSERT_NE(grant, nullptr);
  EXPECT_EQ(grant->service_id, 1);
  EXPECT_TRUE(grant->service_key == store().service_key(1).value().key);
  EXPECT_EQ(grant->not_after, kUntil + 86400);
}

TEST_F(Provisioning, TheSameGrantAgainIsSkippedWithNoSecondEmmAndANewWindowIsNot) {
  ASSERT_TRUE(store().register_stbs(rows(1, 50)).ok());
  const auto ids = store().stb_ids();
  const std::vector<std::uint16_t> news{1};
  const testing::GrantWindow window{1, kFrom, kUntil};
  ASSERT_TRUE(store().grant_many(ids, news, kFrom, kUntil).ok());
  const auto first = member_grants();
  EXPECT_EQ(first.emms.size(), 1u);
  EXPECT_EQ(first.boxes.at(window), testing::box_range(1, 50));

  ASSERT_TRUE(store().revoke(7, 1).ok());  // a revoked grant is granted again
  auto without_7 = testing::box_range(1, 50);
  without_7.erase(7);
  EXPECT_EQ(member_grants().boxes.at(window), without_7) << "the revoke clears box 7's bit";
  std::uint64_t revoke_sequence = 0;
  for (const auto& q : store().queued_emms()) {
    if (q.address.type == EmmAddressType::unique && q.address.id == 7 && q.topic != "keys") revoke_sequence = q.sequence;
  }
  EXPECT_NE(revoke_sequence, 0u) << "box 7's revoke";

  const auto again = store().grant_many(ids, news, kFrom, kUntil);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->added, 1u);
  EXPECT_EQ(again->skipped, 49u);
  // Still one member grant for the group and service: sealed again, after the revoke, with box 7's
  // bit back; no EMM of its own for any box (box 1's grant is not sent a second time).
  const auto regranted = member_grants();
  EXPECT_EQ(regranted.emms.size(), 1u);
  EXPECT_EQ(regranted.boxes.at(window), testing::box_range(1, 50));
  EXPECT_GT(*regranted.sequences.begin(), revoke_sequence);
  EXPECT_EQ(emms().count(1), 0u);

  // The same grant once more: every box skipped, nothing queued.
  const auto before = queue();
  const auto third = store().grant_many(ids, news, kFrom, kUntil);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->added, 0u);
  EXPECT_EQ(third->skipped, 50u);
  EXPECT_EQ(queue(), before);

  // A new window is not skipped: a member grant of it for every box (and the old window's, which
  // no box holds any more, off the carousel).
  const auto renewed = store().grant_many(ids, news, kUntil, kUntil + 30 * 86400);
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(renewed->added, 50u);
  const auto after = member_grants();
  EXPECT_EQ(after.boxes.at({1, kUntil, kUntil + 30 * 86400}), testing::box_range(1, 50));
  EXPECT_EQ(after.boxes.count(window), 0u);
  EXPECT_EQ(after.emms.size(), 1u);
  EXPECT_GT(*after.sequences.begin(), *regranted.sequences.rbegin());

  // A renewal of some of the boxes only: the old window's member grant stays as it was until it
  // ends (the others still hold it), the renewed boxes' bits with it: their newer, longer grant
  // overrides it on each box whatever the order a box meets them in, and sealing it again would
  // double a renewal's EMMs.
  std::vector<std::uint32_t> first_twenty;
  for (std::uint32_t id = 1; id <= 20; ++id) first_twenty.push_back(id);
  const auto longer = kUntil + 60 * 86400;
  ASSERT_TRUE(store().grant_many(first_twenty, news, kUntil, longer).ok());
  const auto partly = member_grants();
  EXPECT_EQ(partly.boxes.at({1, kUntil, longer}), testing::box_range(1, 20));
  EXPECT_EQ(partly.boxes.at({1, kUntil, kUntil + 30 * 86400}), testing::box_range(1, 50));
  EXPECT_EQ(partly.emms.size(), 2u);
  EXPECT_TRUE(partly.sequences.contains(*after.sequences.begin())) << "the 30 days' member grant is not sealed again";

  // A window that ends earlier is another matter: the member grants that would outlast it are
  // sealed again without the boxes that moved.
  std::vector<std::uint32_t> first_ten;
  for (std::uint32_t id = 1; id <= 10; ++id) first_ten.push_back(id);
  ASSERT_TRUE(store().grant_many(first_ten, news, kUntil, kUntil + 10 * 86400).ok());
  const auto last = member_grants();
  EXPECT_EQ(last.boxes.at({1, kUntil, kUntil + 10 * 86400}), testing::box_range(1, 10));
  EXPECT_EQ(last.boxes.at({1, kUntil, longer}), testing::box_range(11, 20));
  EXPECT_EQ(last.boxes.at({1, kUntil, kUntil + 30 * 86400}), testing::box_range(21, 50));
}

TEST_F(Provisioning, AnInterruptedGrantIsResumedWithOneEmmPerBoxAndService) {
  ASSERT_TRUE(store().register_stbs(rows(1, 400)).ok());
  const auto ids = store().stb_ids();
  const auto services = store().package_services(5).value();
  const auto first = store().grant_many(ids, services, kFrom, kUntil, 100, [](const auto&) { return false; });
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->added, 100u);
  const auto part = member_grants();
  EXPECT_EQ(part.boxes.at({1, kFrom, kUntil}), testing::box_range(1, 100));
  EXPECT_EQ(part.boxes.at({2, kFrom, kUntil}), testing::box_range(1, 100));
  const auto rest = store().grant_many(ids, services, kFrom, kUntil, 100);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->added, 300u);
  EXPECT_EQ(rest->skipped, 100u);
  // Every box's bit in its group's member grant of each service, one member grant per group and
  // service (the ones of the interrupted run sealed again, not doubled), no EMM per box.
  const auto carousel = member_grants();
  EXPECT_EQ(carousel.boxes.size(), 2u);
  EXPECT_EQ(carousel.boxes.at({1, kFrom, kUntil}), testing::box_range(1, 400));
  EXPECT_EQ(carousel.boxes.at({2, kFrom, kUntil}), testing::box_range(1, 400));
  EXPECT_EQ(carousel.emms.size(), 4u);  // groups 1 and 2, services 1 and 2
  EXPECT_EQ(carousel.sequences.size(), 2u) << "one group EMM per group, both services in it";
  for (const auto& [at, n] : carousel.emms) EXPECT_EQ(n, 1) << "group " << at.first << " service " << at.second.service_id;
  EXPECT_TRUE(emms().empty());
  // Run once more: nothing to do, nothing queued.
  const auto before = queue();
  const auto again = store().grant_many(ids, services, kFrom, kUntil, 100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->added, 0u);
  EXPECT_EQ(again->skipped, 400u);
  EXPECT_EQ(queue(), before);
}

TEST_F(Provisioning, AGrantToUnregisteredBoxesIsRefusedWithTheirIdsAndChangesNothing) {
  ASSERT_TRUE(store().register_stbs(rows(1, 10)).ok());
  const auto before = queue();  // the boxes' key EMMs
  std::vector<std::uint32_t> ids{1, 2, 3, 77, 4, 78};
  const std::vector<std::uint16_t> news{1};
  const auto refused = store().grant_many(ids, news, kFrom, kUntil);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_found);
  EXPECT_NE(refused.error().message.find("2 of 6 STBs are not registered"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("77, 78"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(store().grants().empty());
  EXPECT_EQ(queue(), before);
  EXPECT_TRUE(emms().empty());
  EXPECT_TRUE(member_grants().emms.empty());
}

TEST_F(Provisioning, AGrantOfAnUnknownServiceOrABadWindowIsRefusedAndChangesNothing) {
  ASSERT_TRUE(store().register_stbs(rows(1, 10)).ok());
  const auto before = queue();  // the boxes' key EMMs
  const auto ids = store().stb_ids();
  const std::vector<std::uint16_t> unknown{1, 9};
  EXPECT_EQ(store().grant_many(ids, unknown, kFrom, kUntil).error().code, Errc::not_found);
  const std::vector<std::uint16_t> news{1};
  EXPECT_EQ(store().grant_many(ids, news, kUntil, kFrom).error().code, Errc::invalid_argument);
  EXPECT_EQ(store().grant_many(ids, news, kFrom, kLatestGrantEnd + 1).error().code, Errc::invalid_argument);
  EXPECT_EQ(store().grant_many(ids, {}, kFrom, kUntil).error().code, Errc::invalid_argument);
  EXPECT_TRUE(store().grants().empty());
  EXPECT_EQ(queue(), before);
  EXPECT_TRUE(emms().empty());
  EXPECT_TRUE(member_grants().emms.empty());
}

}  // namespace
}  // namespace usher::entitlement
