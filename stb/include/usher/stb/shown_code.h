// The codes an STB shows its viewer on screen: the local link's pairing code (`usher stb link`) and
// the request code of a purchase paid on the handset (`usher stb buy --pay-by-handset`). Each is also
// written to a file in the STB's home, readable by its owner only, so that a script (or a reader
// following README.md) can hand the handset what a viewer would read off the screen.
//
//   if (auto s = write_shown_code(home, kPurchaseCodeName, code); !s) log.warn(s.error().message);
#pragma once

#include <string>

#include "usher/core/result.h"

namespace usher::stb {

inline constexpr const char* kPairingCodeName = "pairing-code";
inline constexpr const char* kPurchaseCodeName = "purchase-code";

// Writes `code` and a newline to home/name, mode 0600, whole: written aside, then renamed into
// place, so a reader never sees half a code. Errc::storage when the file cannot be written.
Status write_shown_code(const std::string& home, const char* name, const std::string& code);

}  // namespace usher::stb
