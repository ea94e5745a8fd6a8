// The --metrics endpoint on arbitrary bytes (anything can connect to its port): the request parser
// and the whole answer, and HOST:PORT of the option. Every answer is a complete HTTP/1.0 response;
// only a GET or HEAD of /metrics sees the page.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "usher/core/metrics.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  const std::string page = "usher_fuzz_total 1\n";
  const auto answer = usher::MetricsServer::respond(bytes, [&] { return page; });
  if (answer.rfind("HTTP/1.0 ", 0) != 0 || answer.find("\r\n\r\n") == std::string::npos) __builtin_trap();
  const auto request = usher::parse_http_request(bytes);
  const bool scraped =
      request && request->path == "/metrics" && (request->method == "GET" || request->method == "HEAD");
  if (scraped != (answer.rfind("HTTP/1.0 200 OK\r\n", 0) == 0)) __builtin_trap();
  if (request && usher::http_head_end(bytes) == 0) __builtin_trap();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto where = usher::parse_host_port(text); where && where->port == 0) __builtin_trap();
  return 0;
}
