#include "usher/streams/locator.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>

namespace usher::streams {
namespace {

constexpr std::string_view kForms =
    "use udp://HOST:PORT, udp://@GROUP:PORT, udp://SOURCE@GROUP:PORT or rtp://..., IPv6 in brackets, options "
    "?ttl=N&localaddr=IP";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The length of a URL scheme at the start of `text` followed by "://", or 0 when there is none.
std::size_t scheme_length(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) return 0;
  if (std::isalpha(static_cast<unsigned char>(text[0])) == 0) return 0;
  for (std::size_t i = 1; i < sep; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (std::isalnum(c) == 0 && c != '+' && c != '-' && c != '.') return 0;
  }
  return sep;
}

bool is_ipv4_literal(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool is_ipv6_literal(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// A refusal of one part of a locator: "(PART): WHY", which parse_locator puts after the locator it
// quotes, so that every message names the part that is wrong.
Error refuse(const std::string& part, const std::string& why) {
  return make_error(Errc::invalid_argument, "(" + part + "): " + why);
}

// Classifies a host as written (brackets already removed for IPv6), or says what is wrong with it.
Result<HostForm> classify_host(const std::string& host, bool bracketed, const std::string& part) {
  if (bracketed) {
    const auto zone = host.find('%');
    const std::string address = host.substr(0, zone);
    if (!is_ipv6_literal(address)) return refuse(part, "'" + address + "' in brackets is not an IPv6 address");
    if (zone != std::string::npos) {
      const std::string name = host.substr(zone + 1);
      const bool zone_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) != 0 || c == '_' || c == '-' || c == '.';
      });
      if (!zone_ok) return refuse(part, "'" + name + "' is not an interface name for the IPv6 zone");
    }
    return HostForm::ipv6;
  }
  if (host.find(':') != std::string::npos) {
    return refuse(part,
                   "'" + host + "' looks like an IPv6 address: write it in brackets, e.g. udp://[" + host + "]:1234");
  }
  if (host.find_first_not_of("0123456789.") == std::string::npos) {
    if (!is_ipv4_literal(host)) return refuse(part, "'" + host + "' is not an IPv4 address");
    return HostForm::ipv4;
  }
  const bool name_ok = host.size() <= 253 && std::all_of(host.begin(), host.end(), [](unsigned char c) {
                         return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_';
                       });
  if (!name_ok) return refuse(part, "'" + host + "' is neither an address nor a host name");
  return HostForm::name;
}

bool literal_is_multicast(const std::string& host, HostForm form) {
  if (form == HostForm::ipv4) {
    in_addr a{};
    inet_pton(AF_INET, host.c_str(), &a);
    return (ntohl(a.s_addr) >> 28) == 0xE;
  }
  if (form == HostForm::ipv6) {
    in6_addr a{};
    inet_pton(AF_INET6, host.substr(0, host.find('%')).c_str(), &a);
    return a.s6_addr[0] == 0xFF;
  }
  return false;
}

// Splits "HOST:PORT" or "[V6]:PORT"; host empty when absent.
Result<std::pair<std::string, bool>> split_host(std::string_view hostport, std::string& port_text,
                                                const std::string& part) {
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) return refuse(part, "'[' without its ']'");
    const std::string_view after = hostport.substr(close + 1);
    if (after.empty()) return refuse("port", "no port (write [ADDRESS]:PORT)");
    if (after.front() != ':')
      return refuse(part, "unexpected '" + std::string(after) + "' after ']' (expected :PORT)");
    port_text = std::string(after.substr(1));
    return std::pair{std::string(hostport.substr(1, close - 1)), true};
  }
  const auto colon = hostport.rfind(':');
  if (colon == std::string_view::npos) return refuse("port", "no port");
  port_text = std::string(hostport.substr(colon + 1));
  return std::pair{std::string(hostport.substr(0, colon)), false};
}

Status parse_port(const std::string& text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) {
    return refuse("port", "the port must be a decimal number, not '" + text + "'");
  }
  const long n = std::stol(text);
  if (n < 1 || n > 65535) return refuse("port", "port " + text + " is out of range (1 to 65535)");
  port = static_cast<std::uint16_t>(n);
  return ok_status();
}

Status parse_options(std::string_view query, Direction direction, IpLocator& ip) {
  bool seen_ttl = false;
  bool seen_local = false;
  while (true) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    const auto eq = item.find('=');
    const std::string key(item.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1));
    const std::string part = "option " + key;
    if (key == "ttl") {
      if (seen_ttl) return refuse(part, "ttl is given twice");
      seen_ttl = true;
      if (direction == Direction::input) return refuse(part, "ttl is for outputs (the TTL of the datagrams sent)");
      if (value.empty() || value.size() > 3 || value.find_first_not_of("0123456789") != std::string::npos ||
          std::stoi(value) < 1 || std::stoi(value) > 255) {
        return refuse(part, "ttl must be a number from 1 to 255, not '" + value + "'");
      }
      ip.ttl = static_cast<std::uint8_t>(std::stoi(value));
    } else if (key == "localaddr") {
      if (seen_local) return refuse(part, "localaddr is given twice");
      seen_local = true;
      std::string address = value;
      if (address.size() >= 2 && address.front() == '[' && address.back() == ']')
        address = address.substr(1, address.size() - 2);
      if (is_ipv4_literal(address)) {
        ip.local_form = HostForm::ipv4;
      } else if (is_ipv6_literal(address)) {
        ip.local_form = HostForm::ipv6;
      } else {
        return refuse(part, "localaddr must be an IPv4 or IPv6 address of this machine, not '" + value + "'");
      }
      ip.local_address = address;
    } else if (key.empty()) {
      return refuse("options", "an empty option (options are NAME=VALUE joined by '&')");
    } else {
      return refuse(part, "unknown option '" + key + "' (known: ttl, localaddr)");
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return ok_status();
}

bool same_family(HostForm a, HostForm b) {
  if (a == HostForm::name || b == HostForm::name || a == HostForm::any || b == HostForm::any) return true;
  return a == b;
}

Result<IpLocator> parse_ip(std::string_view rest, IpTransport transport, Direction direction) {
  IpLocator ip;
  ip.transport = transport;
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) {
    return refuse("locator", "unexpected '" + std::string(rest.substr(hash)) + "' (no fragment is defined)");
  }
  const auto question = rest.find('?');
  const std::string_view authority = rest.substr(0, question);
  if (const auto slash = authority.find('/'); slash != std::string_view::npos) {
    return refuse("path", "unexpected '" + std::string(authority.substr(slash)) +
                               "' after the port (no path is defined; options go after '?')");
  }
  if (question != std::string_view::npos) {
    USHER_CHECK(parse_options(rest.substr(question + 1), direction, ip));
  }
  std::string_view hostport = authority;
  // '@' outside brackets starts the receive forms.
  std::size_t at = std::string_view::npos;
  int depth = 0;
  for (std::size_t i = 0; i < authority.size(); ++i) {
    if (authority[i] == '[') ++depth;
    if (authority[i] == ']') --depth;
    if (authority[i] == '@' && depth == 0) {
      if (at != std::string_view::npos) return refuse("@", "more than one '@'");
      at = i;
    }
  }
  if (at != std::string_view::npos) {
    if (direction == Direction::output) {
      return refuse("@",
                     "'@' is for receiving (@GROUP joins a group, SOURCE@GROUP a source's); to send to a group "
                     "write udp://GROUP:PORT");
    }
    ip.receive_form = true;
    const std::string_view source = authority.substr(0, at);
    hostport = authority.substr(at + 1);
    if (!source.empty()) {
      std::string text(source);
      const bool bracketed = text.size() >= 2 && text.front() == '[' && text.back() == ']';
      if (bracketed) text = text.substr(1, text.size() - 2);
      USHER_TRY(ip.source_form, classify_host(text, bracketed, "source"));
      ip.source = text;
    }
  }
  std::string port_text;
  USHER_TRY(const auto split, split_host(hostport, port_text, at == std::string_view::npos ? "host" : "group"));
  const auto& [host, bracketed] = split;
  if (host.empty()) {
    if (!ip.receive_form) return refuse("host", "no host (to receive on every interface write udp://@:PORT)");
    if (!ip.source.empty()) return refuse("group", "SOURCE@ needs the group it sends to: SOURCE@GROUP:PORT");
    ip.host_form = HostForm::any;
  } else {
    USHER_TRY(ip.host_form, classify_host(host, bracketed, at == std::string_view::npos ? "host" : "group"));
    ip.host = host;
  }
  USHER_CHECK(parse_port(port_text, ip.port));
  if (!ip.source.empty()) {
    if (ip.host_form != HostForm::name && !literal_is_multicast(ip.host, ip.host_form)) {
      return refuse("group",
                     "'" + ip.host + "' is not a multicast group (SOURCE@GROUP receives a group from one source)");
    }
    if (!same_family(ip.source_form, ip.host_form)) {
      return refuse("source",
                     "the source '" + ip.source + "' and the group '" + ip.host + "' are not both IPv4 or both IPv6");
    }
    if (ip.source_form != HostForm::name && literal_is_multicast(ip.source, ip.source_form)) {
      return refuse("source", "the source '" + ip.source + "' is a multicast address (it is the sender's address)");
    }
  }
  if (!ip.local_address.empty() && !same_family(ip.local_form, ip.host_form)) {
    return refuse("option localaddr",
                   "localaddr " + ip.local_address + " and '" + ip.host + "' are not both IPv4 or both IPv6");
  }
  return ip;
}

}  // namespace

bool is_network_locator(std::string_view text) {
  const auto n = scheme_length(text);
  if (n == 0) return false;
  const auto scheme = lower(text.substr(0, n));
  return scheme == "udp" || scheme == "rtp";
}

Result<Locator> parse_locator(std::string_view text, Direction direction) {
  const std::string quoted = "'" + std::string(text) + "'";
  if (text.empty()) {
    return make_error(Errc::invalid_argument, "bad locator '' (locator): an empty locator (a file, -, udp://... or rtp://...)");
  }
  Locator locator;
  if (text == "-") {
    locator.kind = Locator::Kind::standard_stream;
    return locator;
  }
  const auto n = scheme_length(text);
  if (n == 0) {
    locator.kind = Locator::Kind::file;
    locator.path = std::string(text);
    return locator;
  }
  const auto scheme = lower(text.substr(0, n));
  if (scheme != "udp" && scheme != "rtp") {
    return make_error(Errc::invalid_argument, "bad locator " + quoted + " (scheme): unknown scheme '" +
                                                  std::string(text.substr(0, n)) +
                                                  "' (inputs and outputs are files, -, udp:// or rtp://)");
  }
  auto ip = parse_ip(text.substr(n + 3), scheme == "rtp" ? IpTransport::rtp : IpTransport::udp, direction);
  if (!ip) {
    return make_error(ip.error().code, "bad " + std::string(scheme == "rtp" ? "RTP" : "UDP") + " locator " + quoted + " " +
                                           ip.error().message + " (" + std::string(kForms) + ")");
  }
  locator.kind = Locator::Kind::ip;
  locator.ip = std::move(ip).value();
  return locator;
}

}  // namespace usher::streams
