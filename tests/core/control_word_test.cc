#include "usher/core/control_word.h"

#include <gtest/gtest.h>

#include <array>
#include <fstream>

#include "temp_dir.h"
#include "usher/core/hex.h"

namespace usher {
namespace {

TEST(ControlWord, RandomOnesHaveDvbChecksums) {
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(ControlWord::random().checksums_ok());
  std::array<std::uint8_t, 8> b{1, 2, 3, 7, 4, 5, 6, 0};
  EXPECT_FALSE(ControlWord(std::span<const std::uint8_t, 8>(b)).checksums_ok());
}

TEST(CwFile, ReadsEvenOddAndRefusesGarbage) {
  testing::TempDir dir;
  {
    std::ofstream f(dir.file("cw.txt"));
    f << "# test\n0102030604050611\n1112134614151650\n";
  }
  auto cws = read_cw_file(dir.file("cw.txt"));
  ASSERT_TRUE(cws.ok());
  EXPECT_EQ(to_hex(cws->even.bytes()), "0102030604050611");
  EXPECT_EQ(to_hex(cws->odd.bytes()), "1112134614151650");
  {
    std::ofstream f(dir.file("bad.txt"));
    f << "0102\n";
  }
  auto bad = read_cw_file(dir.file("bad.txt"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bad.txt:1"), std::string::npos);
  EXPECT_FALSE(read_cw_file(dir.file("missing.txt")).ok());
}

}  // namespace
}  // namespace usher
