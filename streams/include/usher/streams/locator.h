// Locator: where packets come from or go to, as written on a command line, checked before anything
// is opened.
//
//   clear.ts, /dev/stdin           a file (any text that does not start with SCHEME://)
//   -                              stdin (input) or stdout (output)
//   udp://HOST:PORT                send to HOST; receive on HOST (an address of this machine, or a
//                                  multicast group, which is joined)
//   udp://@GROUP:PORT              receive: join GROUP (udp://@:PORT listens on every interface)
//   udp://SOURCE@GROUP:PORT        receive, source-specific multicast: only SOURCE's datagrams
//   rtp://...                      the same forms, RTP (RFC 3550, MP2T payload type 33, RFC 2250)
//   udp://[ff15::1]:1234           IPv6 addresses go in brackets (also SOURCE: [2001:db8::1]@[ff35::1]:1234)
//   ...?ttl=N&localaddr=IP         TTL (hop limit) of datagrams sent, 1 to 255 (multicast default 1);
//                                  the local address: the interface that sends or joins, or the
//                                  address a sender's datagrams come from
//
// parse_locator() only reads text (no name lookup, no socket): a mistake is reported with the part
// that is wrong, and the same function serves inputs and outputs so they accept the same forms.
//
//   auto out = parse_locator("udp://239.1.1.1:5000?ttl=0", Direction::output);
//   // out.error(): Errc::invalid_argument, "bad UDP locator 'udp://239.1.1.1:5000?ttl=0' (option ttl):
//   //   ttl must be a number from 1 to 255, not '0' (use udp://HOST:PORT, ...)"
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "usher/core/result.h"

namespace usher::streams {

enum class IpTransport : std::uint8_t { udp, rtp };
enum class Direction : std::uint8_t { input, output };

// How a host part was written.
enum class HostForm : std::uint8_t {
  any,   // empty (only in "@:PORT"): every local address
  ipv4,  // dotted quad
  ipv6,  // in brackets (the brackets are not kept); may carry a %zone
  name,  // a host name, looked up when the locator is opened
};

struct IpLocator {
  IpTransport transport = IpTransport::udp;
  std::string host;  // the destination, the address to receive on, or the group
  HostForm host_form = HostForm::ipv4;
  std::uint16_t port = 0;
  bool receive_form = false;  // written with '@': "@GROUP" or "SOURCE@GROUP"
  std::string source;         // SOURCE of "SOURCE@GROUP" (empty when none)
  HostForm source_form = HostForm::ipv4;
  std::optional<std::uint8_t> ttl;  // ?ttl=
  std::string local_address;        // ?localaddr= (a numeric address)
  HostForm local_form = HostForm::ipv4;
};

struct Locator {
  enum class Kind : std::uint8_t { file, standard_stream, ip };
  Kind kind = Kind::file;
  std::string path;  // Kind::file
  IpLocator ip;      // Kind::ip
};

// Reads a locator for an input or an output (the receive forms with '@' are inputs only, ?ttl= is
// for outputs only). A refusal is Errc::invalid_argument, its message the whole sentence to show:
// "bad [UDP |RTP ]locator 'TEXT' (PART): WHY", PART naming the piece that is wrong ("port", "host",
// "group", "source", "@", "option ttl", "options", "path", "scheme", "locator").
Result<Locator> parse_locator(std::string_view text, Direction direction);

// True for text that names the network (udp:// or rtp://), whether or not it is well formed.
bool is_network_locator(std::string_view text);

}  // namespace usher::streams
