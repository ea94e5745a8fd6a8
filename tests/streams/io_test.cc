#include "usher/streams/io.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <thread>

#include "synthetic_stream.h"
#include "temp_dir.h"

namespace usher::streams {
namespace {

TEST(Io, FileRoundTrip) {
  testing::TempDir dir;
  testing::SyntheticMuxOptions o;
  o.seconds = 0.5;
  const auto packets = testing::make_synthetic_mux(o);
  write_ts_file(dir.file("a.ts"), packets);
  const auto back = read_ts_file(dir.file("a.ts"));
  ASSERT_EQ(back.size(), packets.size());
  EXPECT_EQ(std::memcmp(back.data(), packets.data(), packets.size() * sizeof(TsPacket)), 0);
}

// Issue 8: `--out` naming the input truncated it to 0 bytes before a packet was read.
TEST(Io, OutputThatIsTheInputIsRefusedByInodeNotByName) {
  testing::TempDir dir;
  testing::SyntheticMuxOptions o;
  o.seconds = 0.2;
  write_ts_file(dir.file("in.ts"), testing::make_synthetic_mux(o));
  ASSERT_EQ(::link(dir.file("in.ts").c_str(), dir.file("same.ts").c_str()), 0);
  for (const auto& out : {dir.file("in.ts"), dir.file("same.ts"), dir.file("./in.ts")}) {
    EXPECT_THROW(check_output_is_not_input(dir.file("in.ts"), out), std::runtime_error) << out;
  }
  write_ts_file(dir.file("other.ts"), testing::make_synthetic_mux(o));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), dir.file("other.ts")));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), dir.file("new.ts")));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), "udp://127.0.0.1:5000"));
  EXPECT_NO_THROW(check_output_is_not_input("-", "-"));  // a terminal or pipes, not one regular file
}

TEST(Io, DeferredFileSinkCreatesItsFileAtTheFirstPacket) {
  testing::TempDir dir;
  SinkOptions options;
  options.open_on_first_write = true;
  {
    auto sink = open_sink(dir.file("never.ts"), options);
    sink->write({});
    sink->close();
  }
  EXPECT_NE(::access(dir.file("never.ts").c_str(), F_OK), 0);
  auto sink = open_sink(dir.file("written.ts"), options);
  const TsPacket packet = TsPacket::null_packet();
  sink->write(std::span(&packet, 1));
  sink->close();
  EXPECT_EQ(read_ts_file(dir.file("written.ts")).size(), 1u);
}

TEST(Io, MissingFileSaysWhich) {
  try {
    open_source("/nonexistent/usher.ts");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/usher.ts"), std::string::npos);
  }
}

TEST(Io, UdpLoopbackUnicast) {
  testing::SyntheticMuxOptions o;
  o.seconds = 0.2;
  const auto packets = testing::make_synthetic_mux(o);
  auto source = open_source("udp://127.0.0.1:47391", {std::chrono::milliseconds(500)});
  std::thread sender([&] {
    auto sink = open_sink("udp://127.0.0.1:47391", {false});
    for (std::size_t i = 0; i < packets.size(); i += 7) {
      sink->write(std::span(packets).subspan(i, std::min<std::size_t>(7, packets.size() - i)));
      if (i % 700 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    sink->close();
  });
  std::vector<TsPacket> got;
  while (source->read(got, 64)) {
  }
  sender.join();
  ASSERT_EQ(got.size(), packets.size());
  EXPECT_EQ(std::memcmp(got.data(), packets.data(), packets.size() * sizeof(TsPacket)), 0);
}

TEST(Io, BadUdpLocatorIsExplained) {
  EXPECT_THROW(open_sink("udp://127.0.0.1"), std::runtime_error);
}

// Issue 8: udp://...:99999 was accepted (the port went to getaddrinfo, which wrapped it). Each of
// these is refused before any socket is opened, and the message says what is wrong.
TEST(Io, UdpLocatorsAreStrict) {
  struct Row {
    const char* locator;
    const char* says;
  };
  for (const Row& row : {Row{"udp://127.0.0.1:99999", "out of range"}, Row{"udp://127.0.0.1:65536", "out of range"},
                         Row{"udp://127.0.0.1:0", "out of range"}, Row{"udp://127.0.0.1:", "decimal"},
                         Row{"udp://127.0.0.1:12a4", "decimal"}, Row{"udp://127.0.0.1:0x10", "decimal"},
                         Row{"udp://127.0.0.1:-5", "decimal"}, Row{"udp://:5000", "no host"},
                         Row{"udp://239.1.1.1:5000?tll=4", "unknown option 'tll'"}, Row{"udp://239.1.1.1:5000/x", "no path"},
                         Row{"udp://127.0.0.1", "no port"}}) {
    for (const bool as_source : {true, false}) {
      try {
        if (as_source) (void)open_source(row.locator, {std::chrono::milliseconds(10)});
        else (void)open_sink(row.locator, {false});
        ADD_FAILURE() << row.locator << " was accepted";
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(row.says), std::string::npos) << row.locator << ": " << e.what();
      }
    }
  }
  // The edges of the range are fine.
  EXPECT_NO_THROW((void)open_sink("udp://127.0.0.1:65535", {false}));
  EXPECT_NO_THROW((void)open_sink("udp://127.0.0.1:1", {false}));
}

}  // namespace
}  // namespace usher::streams
