// usher_synthetic_boxes N [FIRST_ID] [--jsonl]: writes a box file of N synthetic boxes (ids FIRST_ID
// onward, default 1000001; keys derived from the ids, tests/support/synthetic_boxes.h) on stdout, as
// a subscriber-management system would export them, for timing `usher entitlement device import`
// at scale (scripts/time-provisioning.sh). CSV by default, JSON lines with --jsonl.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "synthetic_boxes.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: usher_synthetic_boxes N [FIRST_ID] [--jsonl]\n");
    return 2;
  }
  const auto n = std::strtoull(argv[1], nullptr, 10);
  std::uint64_t first = 1'000'001;
  bool jsonl = false;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--jsonl") {
      jsonl = true;
    } else {
      first = std::strtoull(argv[i], nullptr, 10);
    }
  }
  if (n == 0 || first == 0 || first + n - 1 > 0xFFFFFFFFULL) {
    std::fprintf(stderr, "usher_synthetic_boxes: N and FIRST_ID must give ids from 1 to 4294967295\n");
    return 2;
  }
  constexpr std::size_t kBlock = 10'000;
  const unsigned threads = std::max(1U, std::thread::hardware_concurrency());
  for (std::uint64_t start = 0; start < n; start += kBlock) {
    const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, n - start));
    std::vector<std::string> lines(count);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (std::size_t i = t; i < count; i += threads) {
          const auto row = usher::testing::synthetic_box(static_cast<std::uint32_t>(first + start + i));
          lines[i] = jsonl ? "{\"stb_id\":" + std::to_string(row.stb.stb_id) + ",\"x25519\":\"" + usher::to_hex(row.stb.x25519_public) +
                                 "\",\"ed25519\":\"" + usher::to_hex(row.stb.ed25519_public) + "\"}"
                           : usher::testing::box_file_line(row);
        }
      });
    }
    for (auto& w : workers) w.join();
    for (const auto& line : lines) std::printf("%s\n", line.c_str());
  }
  return 0;
}
