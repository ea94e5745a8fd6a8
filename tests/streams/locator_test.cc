#include "usher/streams/locator.h"

#include <gtest/gtest.h>

namespace usher::streams {
namespace {

Locator must_parse(const std::string& text, Direction direction) {
  auto parsed = parse_locator(text, direction);
  if (!parsed) {
    ADD_FAILURE() << text << ": " << parsed.error().message;
    return {};
  }
  return std::move(parsed).value();
}

TEST(Locator, FilesAndStandardStreams) {
  for (const char* path : {"clear.ts", "./a:b.ts", "/tmp/x.ts", "udp.ts", "dir/udp:/x"}) {
    const auto l = must_parse(path, Direction::input);
    EXPECT_EQ(l.kind, Locator::Kind::file) << path;
    EXPECT_EQ(l.path, path);
  }
  EXPECT_EQ(must_parse("-", Direction::output).kind, Locator::Kind::standard_stream);
}

TEST(Locator, EveryNetworkForm) {
  struct Row {
    const char* text;
    Direction direction;
    IpTransport transport;
    const char* host;
    HostForm host_form;
    std::uint16_t port;
    bool receive_form;
    const char* source;
  };
  const auto in = Direction::input;
  const auto out = Direction::output;
  for (const Row& row : {
           Row{"udp://127.0.0.1:5000", in, IpTransport::udp, "127.0.0.1", HostForm::ipv4, 5000, false, ""},
           Row{"udp://127.0.0.1:5000", out, IpTransport::udp, "127.0.0.1", HostForm::ipv4, 5000, false, ""},
           Row{"UDP://239.1.1.1:1234", out, IpTransport::udp, "239.1.1.1", HostForm::ipv4, 1234, false, ""},
           Row{"udp://@239.1.1.1:1234", in, IpTransport::udp, "239.1.1.1", HostForm::ipv4, 1234, true, ""},
           Row{"udp://@:1234", in, IpTransport::udp, "", HostForm::any, 1234, true, ""},
           Row{"udp://10.0.0.1@232.1.1.1:1234", in, IpTransport::udp, "232.1.1.1", HostForm::ipv4, 1234, true,
               "10.0.0.1"},
           Row{"rtp://127.0.0.1:5004", out, IpTransport::rtp, "127.0.0.1", HostForm::ipv4, 5004, false, ""},
           Row{"rtp://@239.1.1.1:5004", in, IpTransport::rtp, "239.1.1.1", HostForm::ipv4, 5004, true, ""},
           Row{"udp://[ff15::1]:1234", out, IpTransport::udp, "ff15::1", HostForm::ipv6, 1234, false, ""},
           Row{"udp://[::1]:5000", in, IpTransport::udp, "::1", HostForm::ipv6, 5000, false, ""},
           Row{"rtp://[2001:db8::1]@[ff35::1]:1234", in, IpTransport::rtp, "ff35::1", HostForm::ipv6, 1234, true,
               "2001:db8::1"},
           Row{"udp://[fe80::1%eth0]:5000", out, IpTransport::udp, "fe80::1%eth0", HostForm::ipv6, 5000, false, ""},
           Row{"udp://localhost:65535", out, IpTransport::udp, "localhost", HostForm::name, 65535, false, ""},
       }) {
    SCOPED_TRACE(row.text);
    const auto l = must_parse(row.text, row.direction);
    ASSERT_EQ(l.kind, Locator::Kind::ip);
    EXPECT_EQ(l.ip.transport, row.transport);
    EXPECT_EQ(l.ip.host, row.host);
    EXPECT_EQ(l.ip.host_form, row.host_form);
    EXPECT_EQ(l.ip.port, row.port);
    EXPECT_EQ(l.ip.receive_form, row.receive_form);
    EXPECT_EQ(l.ip.source, row.source);
  }
}

TEST(Locator, Options) {
  auto l = must_parse("udp://239.1.1.1:1234?ttl=16&localaddr=10.0.0.2", Direction::output);
  EXPECT_EQ(l.ip.ttl, 16);
  EXPECT_EQ(l.ip.local_address, "10.0.0.2");
  l = must_parse("rtp://@[ff15::1]:1234?localaddr=[::1]", Direction::input);
  EXPECT_EQ(l.ip.local_address, "::1");
  EXPECT_EQ(l.ip.local_form, HostForm::ipv6);
  l = must_parse("udp://[ff15::1]:1234?localaddr=::1&ttl=255", Direction::output);
  EXPECT_EQ(l.ip.ttl, 255);
  l = must_parse("udp://@:1234?localaddr=127.0.0.1", Direction::input);
  EXPECT_EQ(l.ip.local_address, "127.0.0.1");
}

// Each mistake is refused before anything is opened, naming the part that is wrong.
TEST(Locator, MistakesNameThePartThatIsWrong) {
  struct Row {
    const char* text;
    Direction direction;
    const char* part;
    const char* says;
  };
  const auto in = Direction::input;
  const auto out = Direction::output;
  for (const Row& row : {
           Row{"", in, "locator", "empty"},
           Row{"srt://1.2.3.4:5000", in, "scheme", "unknown scheme 'srt'"},
           Row{"udp://127.0.0.1", out, "port", "no port"},
           Row{"udp://127.0.0.1:99999", out, "port", "out of range"},
           Row{"udp://127.0.0.1:0", in, "port", "out of range"},
           Row{"udp://127.0.0.1:12a4", out, "port", "decimal"},
           Row{"udp://[::1]", out, "port", "no port"},
           Row{"udp://[::1]5000", out, "host", "after ']'"},
           Row{"udp://:5000", out, "host", "no host"},
           Row{"udp://::1:5000", out, "host", "in brackets"},
           Row{"udp://[::1:5000", out, "host", "without its ']'"},
           Row{"udp://[::g]:5000", out, "host", "not an IPv6 address"},
           Row{"udp://[::1%]:5000", out, "host", "interface name"},
           Row{"udp://1.2.3.400:5000", out, "host", "not an IPv4 address"},
           Row{"udp://bad host:5000", out, "host", "neither an address nor a host name"},
           Row{"udp://@239.1.1.1:5000", out, "@", "for receiving"},
           Row{"udp://a@b@232.1.1.1:5000", in, "@", "more than one"},
           Row{"udp://10.0.0.1@10.0.0.2:5000", in, "group", "not a multicast group"},
           Row{"udp://10.0.0.1@:5000", in, "group", "needs the group"},
           Row{"udp://[::1]@232.1.1.1:5000", in, "source", "not both IPv4 or both IPv6"},
           Row{"udp://239.0.0.1@232.1.1.1:5000", in, "source", "is a multicast address"},
           Row{"udp://1.2.3.4.5@232.1.1.1:5000", in, "source", "not an IPv4 address"},
           Row{"udp://239.1.1.1:5000?ttl=0", out, "option ttl", "1 to 255"},
           Row{"udp://239.1.1.1:5000?ttl=256", out, "option ttl", "1 to 255"},
           Row{"udp://239.1.1.1:5000?ttl=", out, "option ttl", "1 to 255"},
           Row{"udp://239.1.1.1:5000?ttl=4&ttl=5", out, "option ttl", "twice"},
           Row{"udp://239.1.1.1:5000?ttl=4", in, "option ttl", "for outputs"},
           Row{"udp://239.1.1.1:5000?tll=4", out, "option tll", "unknown option 'tll'"},
           Row{"udp://239.1.1.1:5000?localaddr=eth0", out, "option localaddr", "IPv4 or IPv6 address"},
           Row{"udp://[ff15::1]:5000?localaddr=127.0.0.1", out, "option localaddr", "not both IPv4 or both IPv6"},
           Row{"udp://239.1.1.1:5000?", out, "options", "empty option"},
           Row{"udp://239.1.1.1:5000/x", out, "path", "no path"},
           Row{"udp://239.1.1.1:5000#x", out, "locator", "fragment"},
           Row{"rtp://127.0.0.1", in, "port", "no port"},
       }) {
    SCOPED_TRACE(row.text);
    auto parsed = parse_locator(row.text, row.direction);
    ASSERT_FALSE(parsed.ok()) << "accepted";
    const auto& e = parsed.error();
    EXPECT_EQ(e.code, Errc::invalid_argument);
    // The part named is the one the row expects, right after the quoted locator.
    EXPECT_NE(e.message.find("locator '" + std::string(row.text) + "' (" + row.part + "): "), std::string::npos)
        << e.message;
    EXPECT_NE(e.message.find(row.says), std::string::npos) << e.message;
  }
}

TEST(Locator, NetworkLocatorsAreRecognisedWhateverTheirMistakes) {
  EXPECT_TRUE(is_network_locator("udp://127.0.0.1:5000"));
  EXPECT_TRUE(is_network_locator("rtp://nonsense"));
  EXPECT_TRUE(is_network_locator("RTP://x"));
  EXPECT_FALSE(is_network_locator("clear.ts"));
  EXPECT_FALSE(is_network_locator("-"));
  EXPECT_FALSE(is_network_locator("srt://1.2.3.4:5"));
}

}  // namespace
}  // namespace usher::streams
