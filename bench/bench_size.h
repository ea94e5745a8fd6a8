// The size of a benchmark that scales (boxes, purchases, queued EMMs), from an environment variable:
// CI runs each once at its small default, the closing figures set the variable to the full size.
#pragma once

#include <cstddef>
#include <cstdlib>

namespace usher::bench {

// The variable's value as a positive count; `fallback` when it is unset, empty, zero or not a number.
inline std::size_t size_from_env(const char* name, std::size_t fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  const auto n = std::strtoull(value, nullptr, 10);
  return n > 0 ? static_cast<std::size_t>(n) : fallback;
}

}  // namespace usher::bench
