// Hex text for public values (public keys, ids) and the fixed-CW test file. Never for secrets in logs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace usher {

std::string to_hex(std::span<const std::uint8_t> bytes);
// Accepts upper or lower case, ignores spaces; nullopt on any other character or odd length.
std::optional<std::vector<std::uint8_t>> from_hex(std::string_view text);

}  // namespace usher
